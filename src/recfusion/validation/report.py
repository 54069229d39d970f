"""The one-page validation summary (JSON and Markdown) beside the Data Docs."""

from __future__ import annotations

import html
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


_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em}"
    ".pass{color:#176f2c}.fail{color:#b00020;font-weight:bold}code{background:#f3f3f3}"
)


def to_html(title: str, summary: dict[str, Any]) -> str:
    """A self-contained page with the same content as `to_markdown`; it links each suite's
    Data Docs page and, like them (see offline.py), needs nothing from the network."""
    e = html.escape
    verdict = (
        "PASSED" if summary["success"] else ("STOPPED" if summary["stopped"] else "QUARANTINED")
    )
    css = "pass" if summary["success"] else "fail"
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}: <span class='{css}'>{verdict}</span></h1>",
        f"<p>On failure: <code>{e(summary['on_failure'])}</code>. "
        "Full GX Data Docs: <a href='index.html'>index.html</a>.</p>",
    ]
    if summary.get("stop_reasons"):
        out.append("<h2>Why the run stopped</h2><ul>")
        out += [f"<li>{e(r)}</li>" for r in summary["stop_reasons"]]
        out.append("</ul>")
    out.append(
        "<table><tr><th>suite</th><th>result</th><th>rows in</th><th>clean</th>"
        "<th>quarantined</th><th>failed expectations</th></tr>"
    )
    for name, s in summary["suites"].items():
        link = f"<a href='{e(s['docs'])}'>{e(name)}</a>" if s.get("docs") else e(name)
        result = (
            "<span class='pass'>pass</span>" if s["success"] else "<span class='fail'>FAIL</span>"
        )
        failed = ", ".join(e(f["expectation"]) for f in s["failed"]) or "-"
        cells = [link, result] + [e(str(s.get(k, "-"))) for k in
                                  ("rows_in", "rows_clean", "rows_quarantined")]  # fmt: skip
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, failed]) + "</tr>")
    out.append("</table>")
    for name, s in summary["suites"].items():
        for f in s["failed"]:
            out.append(f"<h2>{e(name)}: {e(f['expectation'])}</h2>")
            out.append(f"<p>Why it matters: {e(f['why'])}<br>Level: {e(f['level'])}; observed: "
                       f"<code>{e(str(f['observed']))}</code>"
                       + (f"; error: {e(f['error'])}" if f["error"] else "") + "</p>")  # fmt: skip
            if f["examples"]:
                cols = list(f["examples"][0])
                out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
                for r in f["examples"]:
                    out.append("<tr>" + "".join(f"<td>{e(str(r[c]))}</td>" for c in cols) + "</tr>")
                out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_summary(title: str, summary: dict[str, Any], docs_dir: Path) -> None:
    """summary.json, summary.md and summary.html beside the Data Docs."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    (docs_dir / "summary.md").write_text(to_markdown(title, summary), encoding="utf-8")
    (docs_dir / "summary.html").write_text(to_html(title, summary), encoding="utf-8")
