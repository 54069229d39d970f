"""Tables and links for the orchestrator's UI, built from the pipeline's report files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# a table artifact renders each cell as Markdown: "-" would be a bullet and "__none__" in a GX
# path bold "none", so empty cells say n/a and paths are code
EMPTY = "n/a"


def validation_rows(summary: Mapping[str, Any], docs_dir: Path, root: Path | None = None
                    ) -> list[dict[str, Any]]:  # fmt: skip
    """One row per GX suite: success, expectations failed, rows in / clean / quarantined, and the
    path of the suite's Data Docs page (relative to `root` when given), as code."""
    rows = []
    for suite, s in summary["suites"].items():
        page = docs_dir / s["docs"] if s.get("docs") else docs_dir / "index.html"
        shown = page.relative_to(root) if root is not None and page.is_relative_to(root) else page
        rows.append({
            "suite": suite,
            "success": bool(s["success"]),
            "failed expectations": ", ".join(f["expectation"] for f in s.get("failed", []))
            or "none",
            "rows in": s.get("rows_in", EMPTY),
            "clean": s.get("rows_clean", EMPTY),
            "quarantined": s.get("rows_quarantined", EMPTY),
            "data docs": f"`{shown.as_posix()}`",
        })  # fmt: skip
    return rows


STAGE_STATUS = {
    "ran": "ran",
    "skipped": "skipped: up to date (DVC found no changed dependency)",
    "failed": "FAILED (see the task's log)",
}


def stage_rows(outcomes: Sequence[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """One row per stage of a run, in order: what it did (ran, skipped as up to date, failed)
    and its wall time in seconds (a skipped stage's is DVC's check)."""
    return [{"stage": name, "status": STAGE_STATUS[status], "seconds": round(seconds, 1)}
            for name, status, seconds in outcomes]  # fmt: skip


def metric_rows(gate: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: the candidate, production on the same test users, and the delta."""
    production = gate.get("production") or {}
    rows = []
    for metric, value in gate["candidate"].items():
        old = production.get(metric)
        rows.append({"metric": metric, "candidate": round(value, 4),
                     "production": EMPTY if old is None else round(old, 4),
                     "delta": EMPTY if old is None else round(value - old, 4)})  # fmt: skip
    return rows


def gate_markdown(gate: Mapping[str, Any], report: str) -> str:
    """The gate's outcome first, then the full gate report."""
    verdict = "passed" if gate["passed"] else "was REJECTED"
    head = f"**Version {gate['version']} {verdict}** -> `{gate['outcome']}`"
    reasons = "".join(f"\n- {r}" for r in gate.get("reasons", []))
    return f"{head}{reasons}\n\n{report}"


# MLflow 3.17's UI opens an experiment on its GenAI overview unless the browser's sidebar switch
# says "Model training" (localStorage) or the URL carries this query; no tag or server setting
# changes it, so every link recfusion gives carries it
CLASSIC_VIEW = "?workflowType=machine_learning"


def mlflow_links(register: Mapping[str, Any], ui: str) -> dict[str, str]:
    """Links into the MLflow UI for the run, the run's copy of the evaluation report (its artifact
    viewer: the report as this run made it, where a working copy's file is overwritten by the
    next run) and the registered version."""
    ui = ui.rstrip("/")
    run = f"{ui}/#/experiments/{register['experiment_id']}/runs/{register['run_id']}"
    version = f"{ui}/#/models/{register['model_name']}/versions/{register['version']}"
    return {
        "run": run + CLASSIC_VIEW,
        "evaluation": f"{run}/artifactPath/reports/evaluation.html{CLASSIC_VIEW}",
        "version": version + CLASSIC_VIEW,
    }


def review_markdown(name: str, version: str, tags: Mapping[str, str]) -> str:
    """What a reviewer reads: the gate's checks (from the version's tags) and its lineage."""
    checks = [tags[k] for k in sorted(tags) if k.startswith("gate.check.")]
    lineage = [f"- {k}: {tags[k]}" for k in sorted(tags)
               if k.startswith(("git.", "data.", "gx.", "dvc."))]  # fmt: skip
    return "\n".join([
        f"# Review {name} version {version}",
        f"Gate: **{'passed' if tags.get('gate.passed') == 'true' else 'not passed'}**", "",
        *[f"- {c}" for c in checks], "", "## Lineage", *lineage, "",
        "Resume this run with `approve` true or false, a comment and your name.",
    ])  # fmt: skip
