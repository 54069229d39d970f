"""The one-page validation summary (JSON and Markdown) beside the Data Docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from recfusion.validation.gx_runner import SuiteOutcome
from recfusion.validation.quarantine import TableDecision, expectation_label


def suite_summary(
    outcome: SuiteOutcome,
    df: pd.DataFrame,
    decision: TableDecision | None,
    docs_page: str | None,
    example_rows: int,
) -> dict[str, Any]:
    """Pass or fail, each failed expectation with its observed value and a few bad rows."""
    failed = []
    for o in outcome.failed:
        examples = df.loc[df.index.isin(o.unexpected_index[:example_rows])].head(example_rows)
        failed.append(
            {
                "expectation": expectation_label(o),
                "level": o.level,
                "why": o.why,
                "observed": o.observed,
                "unexpected_count": len(o.unexpected_index),
                "error": o.error,
                "examples": json.loads(examples.to_json(orient="records", date_format="iso")),
            }
        )
    summary: dict[str, Any] = {
        "success": outcome.success,
        "evaluated": len(outcome.outcomes),
        "failed": failed,
        "docs": docs_page,
    }
    if decision is not None:
        summary.update(
            rows_in=decision.rows_in,
            rows_clean=len(decision.clean),
            rows_quarantined=len(decision.quarantined),
            rows_conserved=decision.conserved,
        )
    return summary


def find_docs_page(docs_dir: Path, suite: str) -> str | None:
    """The newest validation page of `suite` in the Data Docs, relative to `docs_dir`."""
    pages = sorted((docs_dir / "validations" / suite).rglob("*.html"))
    return str(pages[-1].relative_to(docs_dir)) if pages else None


def to_markdown(title: str, summary: dict[str, Any]) -> str:
    """A Markdown page a reviewer reads first; it links the Data Docs for detail."""
    verdict = (
        "PASSED" if summary["success"] else ("STOPPED" if summary["stopped"] else "QUARANTINED")
    )
    lines = [
        f"# {title}: {verdict}",
        "",
        f"On failure: `{summary['on_failure']}`. Data Docs: [index.html](index.html).",
        "",
    ]
    if summary.get("stop_reasons"):
        lines += ["## Why the run stopped", ""]
        lines += [f"- {r}" for r in summary["stop_reasons"]] + [""]
    header = "| suite | result | rows in | clean | quarantined | failed expectations |"
    lines += [header, "|---|---|---|---|---|---|"]
    for name, s in summary["suites"].items():
        names = ", ".join(f["expectation"] for f in s["failed"]) or "-"
        link = f"[{name}]({s['docs']})" if s.get("docs") else name
        lines.append(
            f"| {link} | {'pass' if s['success'] else 'FAIL'} | {s.get('rows_in', '-')} | "
            f"{s.get('rows_clean', '-')} | {s.get('rows_quarantined', '-')} | {names} |"
        )
    for name, s in summary["suites"].items():
        for f in s["failed"]:
            lines += [
                "",
                f"## {name}: {f['expectation']}",
                "",
                f"- why it matters: {f['why']}",
                f"- level: {f['level']}; observed: `{f['observed']}`"
                + (f"; error: {f['error']}" if f["error"] else ""),
            ]
            if f["examples"]:
                cols = list(f["examples"][0])
                lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in f["examples"]]
    return "\n".join(lines) + "\n"
