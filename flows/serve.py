"""Serves the deployments `make ui` offers: training (a form), promotion (a review), and a weekly
retraining whose schedule is off until someone turns it on in the UI.

Training deployments take one run at a time (more are queued), since they share one checkout.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.promotion import promotion
from flows.training import training

ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployments() -> list:
    return [
        training.to_deployment("train", concurrency_limit=ONE_AT_A_TIME,
                               description="Run the pipeline; the form overrides params.yaml."),
        promotion.to_deployment("promote", description="Review a staged version for production."),
        training.to_deployment("retrain-weekly", cron="0 3 * * 1", paused=True,
                               concurrency_limit=ONE_AT_A_TIME,
                               description="Scheduled retraining (off by default)."),
    ]  # fmt: skip


if __name__ == "__main__":
    serve(*deployments())
