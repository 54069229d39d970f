"""Stage `register`: one MLflow run for the pipeline, and the packaged recommender registered as a
new version with alias `candidate`.

Reads reports/metrics.json, reports/evaluation.html, reports/plots/, reports/validation/, dvc.lock
and the recommender's files (params.yaml and models/: fitted state only, no data/prepared; MLflow
runs the input example through the model, which reads the online store). The run gets every param,
the evaluation's metrics, the lineage tags (git commit and dirty flag, dvc.lock hashes of data
and models, data source and version, GX result, Prefect flow run id) and artifacts (the Data
Docs zipped, the evaluation report and plots, the model card); the pyfunc model is logged with
its signature and an input example, then registered with tag status=candidate.
Writes reports/register.json (run id, model version, URIs) and reports/model_card.md.

`run` decides what to log (params, metrics, tags, the model card of whichever version the
registry assigns, the input example); `write_outputs` logs it and writes the card once the
version is known. The tracking store is checked before anything is logged or written; a
failure after the version was created deletes that version again, so a retry starts clean.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from recfusion.config import Config, RegistryConfig
from recfusion.data.io import read_json, write_json
from recfusion.evaluation.metric_names import ordered
from recfusion.paths import REPORTS_DIR, VALIDATION_REPORTS
from recfusion.registry.gate import promote_command
from recfusion.registry.moves import mark_candidate
from recfusion.registry.tracking import (
    TrackingUnavailable,
    connect,
    describe_version,
    flat_params,
    lineage_tags,
    run_metrics,
    run_name,
    show_as_classic,
)
from recfusion.serving.pyfunc import log_recommender, snapshot_workspace
from recfusion.stages.entry import guarded, stage_config, stops_on

log = logging.getLogger(__name__)
ROOT = Path(".")  # the workspace: the project root
ARTIFACTS_DIR = Path("mlartifacts")  # run artifacts of a SQLite store, next to mlflow.db
# the input example's user: a made-up id (the logged example is readable by anyone who can read
# the registry, so it names no customer); no model knows it, so it shows the cold-start answer
EXAMPLE_USER = "example-user"
EXAMPLE_QUERY = "waterproof boots"  # a search row in the input example


@dataclass(frozen=True)
class RegisterInputs:
    report: dict[str, Any]  # reports/metrics.json
    lineage: dict[str, str]  # git, dvc.lock hashes, data source and version, GX result, flow run


@dataclass(frozen=True)
class Registration:
    """What to log: one MLflow run, and the model registered from it."""

    registry: RegistryConfig  # where to log and register
    run_name: str
    params: dict[str, str]  # every configuration key, flattened
    metrics: dict[str, float]  # the evaluation's metrics, flattened
    tags: dict[str, str]  # the run's and the version's tags (lineage)
    model_card: Callable[[str], str]  # reports/model_card.md of the version the registry assigns
    input_example: pd.DataFrame  # logged with the model; MLflow runs it through the model


def experiment_id(client: MlflowClient, rc: RegistryConfig, root: Path) -> str:
    """The pipeline's experiment, created on first use (artifacts beside a SQLite store), set to
    open in the MLflow UI's classic training view rather than the GenAI overview."""
    found = client.get_experiment_by_name(rc.experiment)
    if found is not None:
        exp = str(found.experiment_id)
    else:
        location = None
        if rc.tracking_uri.startswith("sqlite:///"):
            location = (root / ARTIFACTS_DIR).resolve().as_uri()
        exp = str(client.create_experiment(rc.experiment, artifact_location=location))
    show_as_classic(client, exp)
    return exp


def search_lines(search: dict[str, Any]) -> str:
    """The model card's search table (empty without labelled test queries)."""
    if not search.get("test_queries"):
        return ""
    rows = "\n".join(f"| {v} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} |"
                     for v, m in search["variants"].items())  # fmt: skip
    return (
        f"\n## Search ({search['test_queries']} held-out queries with a click)\n"
        f"| variant | NDCG@10 | MRR@10 |\n|---|---|---|\n{rows}\n"
    )


def model_card(cfg: Config, report: dict[str, Any], tags: dict[str, str], version: str) -> str:
    """A Markdown model card: which version the model is, what it is, what it was trained on,
    how well it does (metrics in `metric_names.ordered` order) and what happens to it next."""
    p = report["packaged"]
    m = report["methods"][p]
    b = report["bootstrap_vs_best_source"][p]
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in ordered(m).items())
    name = cfg.registry.model_name
    return f"""# recfusion model card

**Version**: {name} version {version}, registered with alias `candidate`.
**Next step**: stage `gate` scores version {version} against production on the same test users
and writes reports/gate.md: it moves the version to staging (to production with
registry.gate.auto_promote: production) or rejects it with the reasons. A version in staging goes
to production after review: `{promote_command(version)}`.

**Model**: fused recommender, method `{cfg.fusion.method}` over the sources
{", ".join(cfg.fusion.sources)} (two-tower retrieval, DCN ranking and interest-tag features).
**Use**: personalised top-k recommendations with a reason per item, for users known to the
training data; unknown users get popular in-stock items. Rows with a `query` are searches:
BM25 and a TFRS query tower fused by RRF, ordered for the user's taste by the ranking model.

**Data**: {tags["data.source"]} (raw data md5 {tags["data.version"]}); validation passed:
{tags.get("gx.success", "unknown")}, rows quarantined: {tags.get("gx.rows_quarantined", "unknown")}.
**Code**: git {tags["git.commit"]} (uncommitted changes: {tags["git.dirty"]}).

## Test metrics ({report["test_users"]} users; train and validation items excluded)
| metric | value |
|---|---|
{rows}

NDCG@10 against the best single source ({report["best_source"]}): mean difference
{b["mean_diff"]:+.4f}, 95% paired-bootstrap interval [{b["ci_low"]:+.4f}, {b["ci_high"]:+.4f}].
{search_lines(report.get("search", {}))}
## Limitations
- Scores are relative within one user's list, not probabilities.
- Slices (cold-start, long-tail, demographic groups) are in the evaluation report; groups
  under 20 users are too small to judge.
- The model knows the items of its training catalogue only; new items need a retrain.
"""


def input_example() -> pd.DataFrame:
    """A recommendation, one with an item excluded, and a search, for a made-up user."""
    # every row has every column: MLflow's schema check refuses a column missing in some rows
    return pd.DataFrame({"user_id": [EXAMPLE_USER] * 3, "k": [5, 3, 5],
                         "query": ["", "", EXAMPLE_QUERY], "exclude": [[], [], []]})  # fmt: skip


def read_inputs(cfg: Config, root: Path = ROOT) -> RegisterInputs:
    """The evaluation's report and the lineage of the workspace `root`."""
    report = read_json(root / REPORTS_DIR / "metrics.json")
    summary = root / VALIDATION_REPORTS / "raw" / "summary.json"
    lineage = lineage_tags(root, cfg, read_json(summary) if summary.is_file() else None)
    return RegisterInputs(report, lineage)


def run(cfg: Config, inputs: RegisterInputs) -> Registration:
    """What to log: params, metrics, tags, the model card and the input example."""
    tags = inputs.lineage
    return Registration(
        registry=cfg.registry,
        run_name=run_name(tags, cfg.fusion.method),
        params=flat_params(cfg),
        metrics=run_metrics(inputs.report),
        tags=tags,
        model_card=partial(model_card, cfg, inputs.report, tags),
        input_example=input_example(),
    )


def write_outputs(registration: Registration, root: Path = ROOT) -> dict[str, Any]:
    """Logs the run and registers the model (alias `candidate`); writes reports/model_card.md
    and reports/register.json, and returns what the latter records.

    Raises:
        TrackingUnavailable: the tracking store cannot be reached (nothing was written).
    """
    rc = registration.registry
    client = connect(rc.tracking_uri)
    mlflow.set_tracking_uri(rc.tracking_uri)
    mlflow.set_registry_uri(rc.tracking_uri)
    card = root / REPORTS_DIR / "model_card.md"
    exp = experiment_id(client, rc, root)
    tags = registration.tags
    version = None
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(experiment_id=exp, run_name=registration.run_name, tags=tags) as active,
    ):
        run_id = active.info.run_id
        try:
            mlflow.log_params(registration.params)
            mlflow.log_metrics(registration.metrics)
            for name in ("evaluation.html", "metrics.json"):
                mlflow.log_artifact(str(root / REPORTS_DIR / name), "reports")
            mlflow.log_artifacts(str(root / REPORTS_DIR / "plots"), "reports/plots")
            docs = shutil.make_archive(str(Path(tmp) / "data_docs"), "zip",
                                       root / VALIDATION_REPORTS)  # fmt: skip
            mlflow.log_artifact(docs, "reports")
            workspace = snapshot_workspace(root, Path(tmp) / "workspace")
            info = log_recommender(workspace, registration.input_example)
            mv = mlflow.register_model(info.model_uri, rc.model_name, tags=tags)
            version = str(mv.version)
            mark_candidate(client, rc.model_name, version, rc.tracking_uri)
            card.write_text(registration.model_card(version), encoding="utf-8")
            mlflow.log_artifact(str(card), "reports")
            describe_version(client, rc.model_name, version, card.read_text("utf-8"), run_id)
        except Exception:
            if version is not None:  # no half-registered version: a retry starts clean
                client.delete_model_version(rc.model_name, version)
            raise
    record = {"tracking_uri": rc.tracking_uri, "experiment_id": exp, "run_id": run_id,
              "model_name": rc.model_name, "version": version, "model_uri": info.model_uri,
              "registered_uri": f"models:/{rc.model_name}/{version}"}  # fmt: skip
    write_json(record, root / REPORTS_DIR / "register.json")
    return record


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    registration = run(cfg, read_inputs(cfg))
    with stops_on(TrackingUnavailable, "nothing was registered, retry when it is back"):
        record = write_outputs(registration)
    log.info("register: run %s, %s version %s @candidate", record["run_id"],
             record["model_name"], record["version"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
