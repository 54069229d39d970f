"""Stage `validate_prepared`: the prepared splits against expectations/prepared.json.

Checks that train / val / test do not leak across the temporal cuts, that every id outside the
train vocabularies is flagged cold-start (and only those), and that the category shares and
event-type mix of test drift from train by less than `validation.max_drift_kl`.
Reads data/prepared/; writes reports/validation/prepared/ (Data Docs, summary.json,
summary.md, summary.html). Any failure stops the run: these are the pipeline's own outputs, so there is
nothing to quarantine.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_json, read_table
from recfusion.data.schema import SPLITS
from recfusion.paths import PREPARED_DIR, SUITES_DIR, VALIDATION_REPORTS
from recfusion.stages.entry import StageStopped, guarded, stage_config
from recfusion.validation.gx_runner import GXValidator
from recfusion.validation.report import find_docs_page, suite_summary, write_summary
from recfusion.validation.suites import PREPARED_SUITE, load_suite, partition, prepared_frame

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


def run(
    cfg: Config,
    splits: dict[str, pd.DataFrame],
    items: pd.DataFrame,
    vocabularies: dict[str, list[str]],
    cuts: dict[str, str],
    docs_dir: Path = DOCS_DIR,
    suites_dir: Path = SUITES_DIR,
) -> dict[str, Any]:
    """Validates the prepared splits; returns the summary (its `stopped` says whether to stop)."""
    frame = prepared_frame(splits, items, set(vocabularies["user_id"]),
                           set(vocabularies["item_id"]))  # fmt: skip
    train = frame[frame["split"] == "train"]
    params = {
        **cut_parameters(frame, cuts),
        "train_category_partition": partition(train["category_l1"]),
        "train_event_partition": partition(train["event_type"]),
        "max_drift_kl": cfg.validation.max_drift_kl,
    }
    outcome = GXValidator(docs_dir).validate(load_suite(PREPARED_SUITE, suites_dir), frame, params)
    page = find_docs_page(docs_dir, PREPARED_SUITE)
    suite = suite_summary(outcome, frame, None, page, cfg.validation.example_rows)
    reasons = [f"prepared: {f['expectation']} failed (observed {f['observed']})"
               for f in suite["failed"]]  # fmt: skip
    return {
        "on_failure": "stop",
        "success": outcome.success,
        "stopped": not outcome.success,
        "stop_reasons": reasons,
        "docs_index": str(docs_dir / "index.html"),
        "suites": {PREPARED_SUITE: suite},
    }


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    splits = {name: read_table(PREPARED_DIR / f"{name}.parquet") for name in SPLITS}
    items = read_table(PREPARED_DIR / "items.parquet")
    vocab = {
        name: (PREPARED_DIR / "vocab" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        for name in ("user_id", "item_id")
    }
    cuts = read_json(PREPARED_DIR / "summary.json")["cuts"]
    summary = run(cfg, splits, items, vocab, cuts)
    write_summary("Validation of the prepared splits", summary, DOCS_DIR)
    if summary["stopped"]:
        raise StageStopped(
            "validation of the prepared splits stopped the run:\n"
            + "\n".join(f"  - {r}" for r in summary["stop_reasons"])
            + f"\n  review: {DOCS_DIR / 'summary.html'} (or summary.md) and the Data Docs"
        )
    log.info("validate_prepared: passed; reports in %s", DOCS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
