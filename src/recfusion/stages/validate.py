"""Stage `validate`: the raw tables against the GX suites in expectations/.

Reads data/raw/ (the tables, and source.json for the user's column names) and
expectations/{users,items,events,queries}.json; writes
- reports/validation/raw/: Data Docs (index.html links every suite and run), summary.json and
  summary.html and summary.md (pass / fail per suite, failed expectations, observed values,
  example bad rows; neither these pages nor the Data Docs need a network);
- data/validated/<table>.parquet: the rows that go on;
- data/quarantine/<table>.parquet: rows held back, with a `reason` column (quarantine mode);
- reports/validation.json: DVC metrics (rows in / clean / quarantined per table).

`validation.on_failure: stop` stops on any failed expectation; `quarantine` holds back the
rows that break row-level expectations (a value the files source could not read among them)
and stops only on table-level failures or when a table has more bad rows than
`validation.max_bad_row_frac`. A stop exits non-zero, saying per failed expectation what is
wrong in the user's column names with a few bad values, the params key and limit involved and
what to change, and the report's path; it writes no data, so nothing downstream runs, and its
reports count rows as "would be quarantined".

GX's Checkpoints build the Data Docs site as they validate, so `run` writes that one folder
(`docs_dir`); everything else is written by `write_outputs`.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recfusion.config import Config, ValidationConfig
from recfusion.data.io import read_json, read_table, write_json, write_table
from recfusion.data.schema import TABLES
from recfusion.paths import (
    QUARANTINE_DIR,
    RAW_DIR,
    REPORTS_DIR,
    SUITES_DIR,
    VALIDATED_DIR,
    VALIDATION_REPORTS,
)
from recfusion.stages.entry import StageStopped, guarded, stage_config
from recfusion.validation.gx_runner import GXValidator, SuiteOutcome
from recfusion.validation.messages import Terms
from recfusion.validation.quarantine import TableDecision, decide
from recfusion.validation.report import find_docs_page, suite_summary, write_summary
from recfusion.validation.suites import RAW_SUITES, Suite, add_reference_columns, load_suite

log = logging.getLogger(__name__)
DOCS_DIR = VALIDATION_REPORTS / "raw"
# the params key behind each suite parameter, for messages ("now" is the clock)
PARAMETER_KEYS = {
    "max_rows": "validation.max_rows",
    "rating_min": "validation.rating_min",
    "rating_max": "validation.rating_max",
    "duplicate_mostly": "validation.max_duplicate_frac",
    "max_query_chars": "validation.max_query_chars",
    "max_title_chars": "validation.max_title_chars",
    "max_text_chars": "validation.max_text_chars",
    **{f"min_rows_{t}": f"validation.min_rows.{t}" for t in RAW_SUITES},
}


class ValidationFailed(StageStopped):
    """Validation stopped the run; the message names each reason and the report."""


@dataclass(frozen=True)
class RawInputs:
    tables: dict[str, pd.DataFrame]  # the canonical tables
    suites: dict[str, Suite]  # table -> its suite
    source: dict[str, Any] = field(default_factory=dict)  # data/raw/source.json; {} if absent


@dataclass(frozen=True)
class ValidationResult:
    decisions: dict[str, TableDecision]
    summary: dict[str, Any]

    @property
    def stopped(self) -> bool:
        return bool(self.summary["stop_reasons"])


def expectation_parameters(vc: ValidationConfig, now: pd.Timestamp) -> dict[str, Any]:
    """Values for the suites' {"$PARAMETER": ...} placeholders."""
    return {
        "now": now.to_pydatetime(),
        "max_rows": vc.max_rows,
        "rating_min": vc.rating_min,
        "rating_max": vc.rating_max,
        "duplicate_mostly": 1.0 - vc.max_duplicate_frac,
        "max_query_chars": vc.max_query_chars,
        "max_title_chars": vc.max_title_chars,
        "max_text_chars": vc.max_text_chars,
        **{f"min_rows_{t}": vc.min_rows[t] for t in RAW_SUITES},
    }


def read_suites(suites_dir: Path = SUITES_DIR) -> dict[str, Suite]:
    """The suite of each raw table.

    Raises:
        DataFileError: a suite file is missing or malformed.
    """
    return {name: load_suite(name, suites_dir) for name in RAW_SUITES}


def read_inputs(folder: Path = RAW_DIR, suites_dir: Path = SUITES_DIR) -> RawInputs:
    """The canonical tables in `folder` (ingest's by default), its source.json (which names
    the user's columns) if there is one, and the suites in `suites_dir`."""
    tables = {name: read_table(folder / f"{name}.parquet") for name in TABLES}
    source = folder / "source.json"
    return RawInputs(tables, read_suites(suites_dir), read_json(source) if source.is_file() else {})


def run(
    cfg: Config,
    inputs: RawInputs,
    docs_dir: Path = DOCS_DIR,
    now: pd.Timestamp | None = None,
) -> ValidationResult:
    """Validates users, items, events and queries in that order; events and queries are
    checked against the users and items that passed. Does not modify the tables; GX writes the
    Data Docs site into `docs_dir` as it goes, after removing the site of an earlier run (it
    shows this run only).

    Args:
        now: the time "in the future" is judged against (default: the clock).
    """
    vc = cfg.validation
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    params = expectation_parameters(vc, now)
    terms = Terms.of_source(inputs.source, PARAMETER_KEYS)
    shutil.rmtree(docs_dir, ignore_errors=True)
    validator = GXValidator(docs_dir)
    decisions: dict[str, TableDecision] = {}
    checked: dict[str, tuple[pd.DataFrame, SuiteOutcome]] = {}
    known: dict[str, pd.Series] = {}
    for name in RAW_SUITES:
        df = add_reference_columns(name, inputs.tables[name].reset_index(drop=True), known)
        outcome = validator.validate(inputs.suites[name], df, params)
        decisions[name] = decide(name, df, outcome, vc.on_failure, vc.max_bad_row_frac, terms)
        checked[name] = (df, outcome)
        if name == "users":
            known["users"] = decisions[name].clean["user_id"]
        if name == "items":
            known["items"] = decisions[name].clean["item_id"]
    stop_reasons = [r for d in decisions.values() for r in d.stop_reasons]
    suites: dict[str, Any] = {}
    for name, (df, outcome) in checked.items():
        d, page = decisions[name], find_docs_page(docs_dir, name)
        suites[name] = suite_summary(
            outcome,
            df,
            d,
            page,
            vc.example_rows,
            terms,
            written=not stop_reasons,
            show_examples=cfg.privacy.show_examples,
        )
        held = "would be quarantined" if stop_reasons else "quarantined"
        result = "pass" if outcome.success else "FAIL"
        counts = (d.rows_in, len(d.clean), len(d.quarantined))
        log.info("validate %s: %s, %d rows in, %d clean, %d %s", name, result, *counts, held)
    summary = {
        "on_failure": vc.on_failure,
        "success": all(s["success"] for s in suites.values()),
        "stopped": bool(stop_reasons),
        "stop_reasons": stop_reasons,
        "rows_conserved": all(d.conserved for d in decisions.values()),
        "docs_index": str(docs_dir / "index.html"),
        "suites": suites,
    }
    if not summary["rows_conserved"]:  # a bug, never expected: refuse to go on
        raise RuntimeError("validation lost rows: rows in != clean + quarantined")
    return ValidationResult(decisions, summary)


def write_outputs(result: ValidationResult, docs_dir: Path = DOCS_DIR,
                  reports_dir: Path = REPORTS_DIR, validated_dir: Path = VALIDATED_DIR,
                  quarantine_dir: Path = QUARANTINE_DIR) -> None:  # fmt: skip
    """The summary beside the Data Docs and reports/validation.json; the clean and the
    quarantined rows only when validation did not stop the run."""
    write_summary("Validation of the raw tables", result.summary, docs_dir)
    counts = ("rows_in", "rows_clean", "rows_quarantined", "rows_would_be_quarantined")
    write_json(
        {
            "success": result.summary["success"],
            "stopped": result.summary["stopped"],
            **{
                f"{name}_{k}": s[k]
                for name, s in result.summary["suites"].items()
                for k in counts
                if k in s
            },
        },
        reports_dir / "validation.json",
    )
    if result.stopped:
        return
    for name, d in result.decisions.items():
        write_table(d.clean, validated_dir / f"{name}.parquet")
        write_table(d.quarantined, quarantine_dir / f"{name}.parquet")


def stop_message(result: ValidationResult, docs_dir: Path = DOCS_DIR) -> str:
    """What stopped the run, one line per reason, and where the report is."""
    held = sum(s.get("rows_would_be_quarantined", 0) for s in result.summary["suites"].values())
    rows = f"{held:,} row would be" if held == 1 else f"{held:,} rows would be"
    lines = [f"validation stopped the run; nothing was written ({rows} quarantined):"]
    lines += [f"  - {r}" for r in result.summary["stop_reasons"]]
    lines.append(f"  review: {docs_dir / 'summary.html'} (or summary.md) and the Data Docs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    result = run(cfg, read_inputs())
    write_outputs(result)
    if result.stopped:
        raise ValidationFailed(stop_message(result))
    log.info("validate: reports in %s", DOCS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
