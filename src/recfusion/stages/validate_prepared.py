"""Stage `validate_prepared`: the prepared splits against expectations/prepared.json.

Checks that train / val / test do not leak across the temporal cuts, that every id outside the
train vocabularies is flagged cold-start (and only those), and that the category shares and
event-type mix of test drift from train by less than `validation.max_drift_kl`.
Reads data/prepared/ (splits, items, the user and item vocabularies, the cuts in summary.json)
and expectations/prepared.json; writes reports/validation/prepared/ (Data Docs, summary.json,
summary.md, summary.html) and reports/validation_prepared.json (the outcome as DVC metrics; the
training stages depend on it). Any failure stops the run: these are the pipeline's own outputs, so
there is nothing to quarantine. GX's Checkpoint builds the Data Docs site as it validates, so
`run` writes that one folder (`docs_dir`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_json, read_table, write_json
from recfusion.data.schema import SPLITS
from recfusion.paths import PREPARED_DIR, REPORTS_DIR, SUITES_DIR, VALIDATION_REPORTS
from recfusion.stages.entry import StageStopped, guarded, stage_config
from recfusion.validation.gx_runner import GXValidator
from recfusion.validation.report import find_docs_page, suite_summary, write_summary
from recfusion.validation.suites import (
    PREPARED_SUITE,
    Suite,
    load_suite,
    partition,
    prepared_frame,
)

log = logging.getLogger(__name__)
DOCS_DIR = VALIDATION_REPORTS / "prepared"


def cut_parameters(frame: pd.DataFrame, cuts: dict[str, str]) -> dict[str, Any]:
    """The temporal cuts; for other split methods bounds that every event meets, because
    those methods mix times across splits by design."""
    if cuts:
        return {
            "val_cut": pd.Timestamp(cuts["val_cut"]).to_pydatetime(),
            "test_cut": pd.Timestamp(cuts["test_cut"]).to_pydatetime(),
        }
    ts = frame["timestamp"]
    return {
        "val_cut": (ts.max() + pd.Timedelta(seconds=1)).to_pydatetime(),
        "test_cut": ts.min().to_pydatetime(),
    }


@dataclass(frozen=True)
class PreparedInputs:
    splits: dict[str, pd.DataFrame]  # train / val / test events
    items: pd.DataFrame  # the prepared catalogue
    vocabularies: dict[str, list[str]]  # "user_id" and "item_id": the train vocabularies
    cuts: dict[str, str]  # the temporal cuts ({} for other split methods)
    suite: Suite  # expectations/prepared.json


@dataclass(frozen=True)
class PreparedValidation:
    summary: dict[str, Any]  # as summary.json: pass / fail, failed expectations, stop reasons

    @property
    def stopped(self) -> bool:
        return bool(self.summary["stopped"])


def read_suite(suites_dir: Path = SUITES_DIR) -> Suite:
    """The prepared splits' suite.

    Raises:
        DataFileError: the suite file is missing or malformed.
    """
    return load_suite(PREPARED_SUITE, suites_dir)


def read_inputs(folder: Path = PREPARED_DIR, suites_dir: Path = SUITES_DIR) -> PreparedInputs:
    """prepare's outputs in `folder` and the suite in `suites_dir`."""
    splits = {name: read_table(folder / f"{name}.parquet") for name in SPLITS}
    items = read_table(folder / "items.parquet")
    vocab = {
        name: (folder / "vocab" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        for name in ("user_id", "item_id")
    }
    cuts = read_json(folder / "summary.json")["cuts"]
    return PreparedInputs(splits, items, vocab, cuts, read_suite(suites_dir))


def run(cfg: Config, inputs: PreparedInputs, docs_dir: Path = DOCS_DIR) -> PreparedValidation:
    """Validates the prepared splits (`stopped` says whether to stop the run). GX writes the
    Data Docs site into `docs_dir` as it goes."""
    frame = prepared_frame(inputs.splits, inputs.items, set(inputs.vocabularies["user_id"]),
                           set(inputs.vocabularies["item_id"]))  # fmt: skip
    train = frame[frame["split"] == "train"]
    params = {
        **cut_parameters(frame, inputs.cuts),
        "train_category_partition": partition(train["category_l1"]),
        "train_event_partition": partition(train["event_type"]),
        "max_drift_kl": cfg.validation.max_drift_kl,
    }
    outcome = GXValidator(docs_dir).validate(inputs.suite, frame, params)
    page = find_docs_page(docs_dir, PREPARED_SUITE)
    suite = suite_summary(
        outcome,
        frame,
        None,
        page,
        cfg.validation.example_rows,
        show_examples=cfg.privacy.show_examples,
    )
    reasons = [f"prepared: {f['expectation']} failed (observed {f['observed']})"
               for f in suite["failed"]]  # fmt: skip
    summary = {
        "on_failure": "stop",
        "success": outcome.success,
        "stopped": not outcome.success,
        "stop_reasons": reasons,
        "docs_index": str(docs_dir / "index.html"),
        "suites": {PREPARED_SUITE: suite},
    }
    return PreparedValidation(summary)


def write_outputs(result: PreparedValidation, docs_dir: Path = DOCS_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """summary.json, summary.md and summary.html beside the Data Docs, and
    reports/validation_prepared.json: the outcome without run times, which the training stages
    depend on, so `dvc repro` never trains on splits that were not validated."""
    write_summary("Validation of the prepared splits", result.summary, docs_dir)
    suite = result.summary["suites"][PREPARED_SUITE]
    write_json(
        {
            "success": result.summary["success"],
            "evaluated": suite["evaluated"],
            "failed": len(suite["failed"]),
        },
        reports_dir / "validation_prepared.json",
    )


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    result = run(cfg, read_inputs())
    write_outputs(result)
    if result.stopped:
        raise StageStopped(
            "validation of the prepared splits stopped the run:\n"
            + "\n".join(f"  - {r}" for r in result.summary["stop_reasons"])
            + f"\n  review: {DOCS_DIR / 'summary.html'} (or summary.md) and the Data Docs"
        )
    log.info("validate_prepared: passed; reports in %s", DOCS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
