"""MLflow tracking: the connection check, run contents (params, metrics) and lineage tags.

Pure helpers turn the config and the evaluation report into MLflow params and metrics; the
lineage reads git and dvc.lock. Metric names use `_at_` for `@`, which MLflow does not allow.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from recfusion.config import Config, to_plain

# outputs whose dvc.lock hashes tie a run to its data and models
LINEAGE_OUTS = ("data/raw", "data/validated", "data/prepared", "models/retrieval",
                "models/ranking", "models/tags", "models/fusion")  # fmt: skip
FLOW_RUN_ENV = ("RECFUSION_FLOW_RUN_ID", "PREFECT__FLOW_RUN_ID")
FLOW_RUN_NAME_ENV = "RECFUSION_FLOW_RUN_NAME"  # set by flows/training.py for its stages
# The MLflow 3 UI's experiment-type switch writes this tag (source: the UI bundle's
# setExperimentTag key "mlflow.experimentKind", mlflow/demo/generators/traces.py). Checked in
# MLflow 3.17: a fresh browser still opens the experiment on the GenAI overview (the sidebar
# switch is a browser preference), so recfusion's links carry ?workflowType=machine_learning
# (orchestration/reports.CLASSIC_VIEW).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_KIND = "custom_model_development"
# registry descriptions are String(5000) columns in MLflow's SQL stores
MAX_DESCRIPTION = 5000


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached; nothing was logged or registered."""


def resolve_uri(tracking_uri: str, root: Path) -> str:
    """A relative SQLite store (sqlite:///mlflow.db) made absolute under project `root`; other
    URIs unchanged. Stages run in the project root; a flow or server may not."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            return f"sqlite:///{(root / path).resolve()}"
    return tracking_uri


def connect(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`, checked by one cheap request.

    Raises:
        TrackingUnavailable: the store cannot be reached or opened, with the URI and the cause.
    """
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise TrackingUnavailable(f"tracking store {tracking_uri}: folder {folder} does not "
                                      "exist (set registry.tracking_uri in params.yaml)")  # fmt: skip
    # fail in seconds, not after MLflow's default minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # logs, not a terminal
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - any failure here means the store is unusable
        raise TrackingUnavailable(f"tracking store {tracking_uri} is unreachable: "
                                  f"{type(e).__name__}: {str(e)[:300]}") from e  # fmt: skip
    return client


_SPELLED = {"@": "_at_", "+": "plus", "<": "lt", ">": "gt", ":": "."}


def metric_name(name: str) -> str:
    """A name MLflow accepts for a metric or param: `ndcg@10` -> `ndcg_at_10`,
    `age_band=50+` -> `age_band_50plus`; other characters outside [\\w.- /] become `_`."""
    spelled = "".join(_SPELLED.get(ch, ch) for ch in name)
    return re.sub(r"[^\w.\- /]", "_", spelled)


def flat_params(cfg: Config) -> dict[str, str]:
    """Every params.yaml value as `section.key` -> string (MLflow params)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[metric_name(prefix)] = str(value)[:6000]

    walk("", to_plain(cfg))  # lists, not tuples: str() as params.yaml shows them
    return out


def run_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics from reports/metrics.json: the packaged method's metrics unprefixed, every
    source's and method's as `<kind>.<name>.<metric>`, NDCG@10 slices, bootstrap bounds, and
    each search variant's as `search.<variant>.<metric>`."""
    packaged = report["packaged"]
    out = {metric_name(m): float(v) for m, v in report["methods"][packaged].items()}
    for method, values in report["methods"].items():
        for m, v in values.items():
            out[f"{metric_name(method)}.{metric_name(m)}"] = float(v)
    for attribute, s in report["slices"][packaged].items():
        if "groups" in s:
            for group, v in s["groups"].items():
                out[metric_name(f"slice.{attribute}.{group}.ndcg_at_10")] = float(v)
            out[f"slice.{attribute}.gap"] = float(s["gap"])
        else:
            out[f"slice.{attribute}.ndcg_at_10"] = float(s["ndcg"])
    b = report["bootstrap_vs_best_source"][packaged]
    out["gain_vs_best_source.low"] = float(b["ci_low"])
    out["gain_vs_best_source.high"] = float(b["ci_high"])
    for variant, values in report.get("search", {}).get("variants", {}).items():
        for m, v in values.items():
            out[f"search.{variant}.{metric_name(m)}"] = float(v)
    return out


PIPELINE_OUTPUTS_IN_GIT = ("dvc.lock", "reports")  # what `dvc repro` rewrites in the git tree


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def lock_hashes(lock_file: Path) -> dict[str, str]:
    """Output path -> md5 from dvc.lock, for the outputs in LINEAGE_OUTS."""
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    out = {}
    for stage in lock.get("stages", {}).values():
        for o in stage.get("outs", []):
            if o.get("path") in LINEAGE_OUTS:
                out[o["path"]] = str(o.get("md5", ""))
    return out


def git_state(root: Path) -> tuple[str, bool]:
    """The commit checked out in `root` ("unknown" outside git) and whether code or params
    differ from it (tracked files only)."""
    commit = _git(root, "rev-parse", "HEAD")
    # the pipeline's own outputs kept in git (dvc.lock, reports/) change with every run and say
    # nothing about the code that ran
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(exclude){p}" for p in PIPELINE_OUTPUTS_IN_GIT)))  # fmt: skip
    return commit or "unknown", dirty


def lineage_tags(root: Path, cfg: Config, validation: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags tying a run and a model version to code, data, validation and orchestration."""
    commit, dirty = git_state(root)
    tags = {
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "data.source": cfg.ingest.source,
        "data.version": "",
    }
    for path, md5 in lock_hashes(root / "dvc.lock").items():
        tags[f"dvc.{path}"] = md5
    tags["data.version"] = tags.get("dvc.data/raw", "unknown")
    if cfg.ingest.source == "synthetic":
        tags["data.source"] = f"synthetic:{cfg.ingest.synthetic.size}"
    if validation is not None:
        quarantined = sum(s.get("rows_quarantined", 0) for s in validation["suites"].values())
        tags["gx.success"] = str(bool(validation["success"])).lower()
        tags["gx.rows_quarantined"] = str(quarantined)
        failed = sorted(n for n, s in validation["suites"].items() if not s["success"])
        tags["gx.failed_suites"] = ",".join(failed) or "none"
    for var in FLOW_RUN_ENV:
        if os.environ.get(var):
            tags["prefect.flow_run_id"] = os.environ[var]
            break
    if os.environ.get(FLOW_RUN_NAME_ENV):
        tags["prefect.flow_run_name"] = os.environ[FLOW_RUN_NAME_ENV]
    return tags


def run_name(tags: Mapping[str, str], fusion_method: str) -> str:
    """The MLflow run's name, saying what ran: the Prefect flow run (by name, else id) or
    `dvc repro`, then the commit (`+dirty` with uncommitted changes) and the fusion method,
    e.g. `dvc repro 1a2b3c4d+dirty fusion=cascade`."""
    if tags.get("prefect.flow_run_name"):
        what = f"prefect {tags['prefect.flow_run_name']}"
    elif tags.get("prefect.flow_run_id"):
        what = f"prefect flow run {tags['prefect.flow_run_id'][:8]}"
    else:
        what = "dvc repro"
    commit = tags.get("git.commit", "unknown")[:8]
    dirty = "+dirty" if tags.get("git.dirty") == "true" else ""
    return f"{what} {commit}{dirty} fusion={fusion_method}"


def fit_description(text: str, where: str, limit: int = MAX_DESCRIPTION) -> str:
    """`text` as a registry description: whole if it fits in `limit` characters, else cut at a
    line end with a note saying the full text is at `where`."""
    if len(text) <= limit:
        return text
    note = f"\n\n(truncated to fit MLflow's description limit; the full text is {where})\n"
    cut = text[: limit - len(note)]
    return cut[: cut.rfind("\n") + 1 or len(cut)].rstrip() + note


def describe_version(client: MlflowClient, name: str, version: str, card: str, run_id: str) -> None:
    """The model card as the version's description, and the registered model's description a
    line naming the version whose card is the latest."""
    where = f"reports/model_card.md in run {run_id}'s artifacts"
    client.update_model_version(name, version, description=fit_description(card, where))
    client.update_registered_model(
        name,
        description=f"recfusion recommender. Latest model card: version {version}'s "
        f"description (also {where}).",
    )


def show_as_classic(client: MlflowClient, experiment_id: str) -> None:
    """Tags `experiment_id` as a model-training experiment (custom_model_development), the type
    the UI's own switch would record; see EXPERIMENT_KIND_TAG for what it does not change."""
    tags = client.get_experiment(experiment_id).tags
    if tags.get(EXPERIMENT_KIND_TAG) != CLASSIC_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_KIND)
