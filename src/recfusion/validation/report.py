"""The one-page validation summary (JSON and Markdown) beside the Data Docs."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfusion.data.schema import UNPARSED
from recfusion.validation.gx_runner import SuiteOutcome
from recfusion.validation.messages import Terms, cut, expectation_label, failure_message
from recfusion.validation.quarantine import TableDecision, without_unread_cells
from recfusion.validation.suites import REF_PARSED, REFERENCES

EXAMPLE_CHARS = 80  # a longer text in an example row is cut (a 100 KB title stays out)
ROW = "row"  # a redacted example's row number: 1-based, in the table as checked


def suite_summary(
    outcome: SuiteOutcome,
    df: pd.DataFrame,
    decision: TableDecision | None,
    docs_page: str | None,
    example_rows: int,
    terms: Terms | None = None,
    written: bool = True,
    show_examples: bool = False,
) -> dict[str, Any]:
    """Pass or fail, each failed expectation with its observed value and a few bad rows.

    Args:
        outcome: the suite's results.
        df: the frame it checked.
        decision: the quarantine decision on `df` (raw tables), or None.
        docs_page: the suite's Data Docs page.
        example_rows: bad rows shown per failed expectation.
        terms: when given, each failed expectation gets a `message` in the user's terms.
        written: whether the decision's rows were written; if not (the run stopped), the rows
            it holds back count as `rows_would_be_quarantined` and `rows_quarantined` is 0.
        show_examples: an example is the whole bad row (`privacy.show_examples: true`), or
            only its row number and the column(s) the expectation checks: a summary goes to
            MLflow with the Data Docs, and a bad row of the users table is a person.
    """
    failed = []
    # a value that could not be read is reported by the parse check, not as the empty cell too
    for o in filter(None, (without_unread_cells(o, df) for o in outcome.failed)):
        examples = df.loc[df.index.isin(o.unexpected_index[:example_rows])].head(example_rows)
        examples = examples.drop(columns=REF_PARSED, errors="ignore")  # UNPARSED says more
        if not show_examples:
            examples = redacted(examples, o.kwargs)
        records = json.loads(examples.to_json(orient="records", date_format="iso"))
        entry = {
            "expectation": expectation_label(o),
            "level": o.level,
            "why": o.why,
            "observed": o.observed,
            "unexpected_count": len(o.unexpected_index),
            "error": o.error,
            "examples": [
                {k: cut(v, EXAMPLE_CHARS) if isinstance(v, str) else v for k, v in r.items()}
                for r in records
            ],
        }
        if terms is not None:
            entry["message"] = failure_message(outcome.suite, o, df, terms)
        failed.append(entry)
    summary: dict[str, Any] = {
        "success": outcome.success,
        "evaluated": len(outcome.outcomes),
        "failed": failed,
        "docs": docs_page,
    }
    if decision is not None:
        held = len(decision.quarantined)
        summary.update(
            rows_in=decision.rows_in,
            rows_clean=len(decision.clean),
            rows_quarantined=held if written else 0,
            rows_conserved=decision.conserved,
        )
        if not written:
            summary["rows_would_be_quarantined"] = held
    return summary


def redacted(examples: pd.DataFrame, kwargs: dict[str, Any]) -> pd.DataFrame:
    """`examples` cut to a ROW number and the columns an expectation with `kwargs` checks (a
    `ref_*` column's by the column it is about, the parse check's by the text that did not
    parse); a table-level expectation keeps the row number only."""
    checked = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", []))
    shown = []
    for c in checked:
        if c in REFERENCES:
            c = REFERENCES[c][0]
        elif c == REF_PARSED:
            c = UNPARSED
        if c in examples.columns and c not in shown:
            shown.append(c)
    rows = [int(i) + 1 if isinstance(i, int | np.integer) else str(i) for i in examples.index]
    return examples[shown].assign(**{ROW: rows})[[ROW, *shown]]


def quarantined_cell(s: dict[str, Any]) -> Any:
    """The quarantined count of a suite's summary, written or (the run stopped) not."""
    return s.get("rows_would_be_quarantined", s.get("rows_quarantined", "-"))


def quarantined_header(summary: dict[str, Any]) -> str:
    return "would be quarantined (none written)" if summary["stopped"] else "quarantined"


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
    header = f"| suite | result | rows in | clean | {quarantined_header(summary)} | failed expectations |"
    lines += [header, "|---|---|---|---|---|---|"]
    for name, s in summary["suites"].items():
        names = ", ".join(f["expectation"] for f in s["failed"]) or "-"
        link = f"[{name}]({s['docs']})" if s.get("docs") else name
        lines.append(
            f"| {link} | {'pass' if s['success'] else 'FAIL'} | {s.get('rows_in', '-')} | "
            f"{s.get('rows_clean', '-')} | {quarantined_cell(s)} | {names} |"
        )
    for name, s in summary["suites"].items():
        for f in s["failed"]:
            lines += [
                "",
                f"## {name}: {f['expectation']}",
                "",
                *([f"- what is wrong: {f['message']}"] if f.get("message") else []),
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
        f"<th>{e(quarantined_header(summary))}</th><th>failed expectations</th></tr>"
    )
    for name, s in summary["suites"].items():
        link = f"<a href='{e(s['docs'])}'>{e(name)}</a>" if s.get("docs") else e(name)
        result = (
            "<span class='pass'>pass</span>" if s["success"] else "<span class='fail'>FAIL</span>"
        )
        failed = ", ".join(e(f["expectation"]) for f in s["failed"]) or "-"
        counts = [s.get("rows_in", "-"), s.get("rows_clean", "-"), quarantined_cell(s)]
        cells = [link, result] + [e(str(c)) for c in counts]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, failed]) + "</tr>")
    out.append("</table>")
    for name, s in summary["suites"].items():
        for f in s["failed"]:
            out.append(f"<h2>{e(name)}: {e(f['expectation'])}</h2>")
            if f.get("message"):
                out.append(f"<p>What is wrong: {e(f['message'])}</p>")
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
