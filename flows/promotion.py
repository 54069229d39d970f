"""Promotion flow: show a staged version's gate report, wait for a reviewer, then move
`production` (approve) or mark the version rejected (reject). Both land in the registry history
(`recfusion registry history`)."""

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from recfusion.config import load_config
from recfusion.orchestration.dvc_stage import project_dir
from recfusion.orchestration.reports import review_markdown
from recfusion.registry import moves
from recfusion.registry.tracking import connect, resolve_uri


class Review(RunInput):
    approve: bool  # true: into production; false: reject the version
    comment: str = ""  # why (recorded in the registry history)
    reviewer: str = ""  # who decides (recorded; defaults to the account running the flow)


def review_prompt(model_name: str, version: str) -> str:
    """What the reviewer reads above the approve / reject form."""
    return (
        f"**Review {model_name} version {version}.** Approve moves the `production` alias "
        f"to version {version} (the current champion is archived; `recfusion registry "
        f"rollback` undoes it). Reject marks version {version} rejected. Both are recorded "
        "in `recfusion registry history` with your name and comment."
    )


@flow(name="recfusion-promotion")
def promotion(version: str, timeout_hours: float = 24.0) -> str:
    """Pauses for a review of `version` (which must have passed the gate: status staging).

    Args:
        version: the registered model version to review, as `recfusion registry list` shows it
            (e.g. "3"); only a version the gate moved to staging can be approved here.
        timeout_hours: how long the run waits for the review before it fails.
    """
    root = project_dir()
    rc = load_config(root / "params.yaml").registry
    uri = resolve_uri(rc.tracking_uri, root)
    client = connect(uri)
    status = moves.status_of(client, rc.model_name, version)
    if status != "staging":
        raise moves.RegistryError(f"version {version} has status '{status}': only a version that "
                                  "passed the gate (staging) is reviewed here; see `recfusion "
                                  "registry promote --force`")  # fmt: skip
    tags = client.get_model_version(rc.model_name, version).tags
    create_markdown_artifact(review_markdown(rc.model_name, version, tags),
                             key=f"review-version-{version}")  # fmt: skip
    log = get_run_logger()
    log.info("waiting for a review of %s version %s (resume the run with approve / reject)",
             rc.model_name, version)  # fmt: skip
    form = Review.with_initial_data(description=review_prompt(rc.model_name, version))
    review = pause_flow_run(wait_for_input=form, timeout=int(timeout_hours * 3600),
                            poll_interval=2)  # fmt: skip
    who = review.reviewer or None
    reason = f"review: {review.comment}" if review.comment else "review"
    if review.approve:
        moves.promote(client, rc.model_name, version, "production", reason, uri,
                      user=who)  # fmt: skip
        log.info("version %s approved into production", version)
        return "production"
    moves.review_reject(client, rc.model_name, version, review.comment or "rejected in review",
                        uri, user=who)  # fmt: skip
    log.info("version %s rejected in review", version)
    return "rejected"
