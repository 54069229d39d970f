"""Serves the deployments `make ui` offers: training (a form), promotion (a review), and a weekly
retraining whose schedule is off until someone turns it on in the UI.

Training deployments take one run at a time (more are queued), since they share one checkout.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.promotion import promotion
from flows.training import training
from recfusion.config_parse import read_yaml
from recfusion.orchestration.dvc_stage import project_dir
from recfusion.orchestration.overrides import form_defaults

ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployments() -> list:
    """The deployments; the training form shows params.yaml's current values as its defaults
    (read when `make ui` starts)."""
    defaults = {**form_defaults(read_yaml(project_dir() / "params.yaml")), "overrides": {}}
    return [
        training.to_deployment("train", concurrency_limit=ONE_AT_A_TIME, parameters=defaults,
                               description="Run the pipeline; the form overrides params.yaml."),
        promotion.to_deployment("promote", description="Review a staged version for production."),
        training.to_deployment("retrain-weekly", cron="0 3 * * 1", paused=True,
                               concurrency_limit=ONE_AT_A_TIME, parameters=defaults,
                               description="Scheduled retraining (off by default)."),
    ]  # fmt: skip


if __name__ == "__main__":
    serve(*deployments())
