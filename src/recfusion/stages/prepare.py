"""Stage `prepare`: clean, normalise, build vocabularies and split.

The events are cleaned in partitions of users on the configured engine (`engine`: here, or a
Dask cluster); the outputs are the same either way.

Reads data/validated/ (the rows that passed validation); writes data/prepared/:
- train.parquet, val.parquet, test.parquet: events with `cold_user` / `cold_item` flags;
- users.parquet, items.parquet: cleaned tables with normalised features and `is_cold`;
- queries.parquet: the cleaned query log with a `split` column;
- vocab/<name>.txt: one entry a line (ids from train; categories, brands, tokens from the
  catalogue); features.json: normalisation statistics;
- summary.json: rows in, dropped per reason, filled per column and out, per table and split.
Also reports/prepare.json, a few headline counts that DVC tracks as metrics.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_table, write_json, write_table
from recfusion.data.schema import SPLITS, TABLES
from recfusion.engine import Engine, LocalEngine, open_engine
from recfusion.paths import PREPARED_DIR, REPORTS_DIR, VALIDATED_DIR
from recfusion.preparation.clean import (
    Ledger,
    clean_items,
    clean_queries,
    clean_users,
)
from recfusion.preparation.partitions import clean_events_on
from recfusion.preparation.split import mark_cold, split_events, split_queries
from recfusion.preparation.vocab import add_item_features, add_user_features, build_vocabularies
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    splits: dict[str, pd.DataFrame]  # train / val / test events
    users: pd.DataFrame
    items: pd.DataFrame
    queries: pd.DataFrame
    vocabularies: dict[str, list[str]]
    features: dict
    summary: dict


def run(cfg: Config, tables: dict[str, pd.DataFrame], engine: Engine | None = None) -> Prepared:
    """Cleans and splits the canonical tables; does not modify `tables`. The events are cleaned
    in partitions of users on `engine` (None: here, in one piece); the result is the same.

    Raises:
        ValueError: a split cannot be made (see `split_events`).
        RuntimeError: rows were lost without a recorded reason (a bug, never expected).
    """
    pc = cfg.prepare
    ledger = Ledger()
    users = clean_users(tables["users"], pc.missing, ledger)
    items = clean_items(tables["items"], pc.missing, ledger)
    events = clean_events_on(
        engine or LocalEngine(), tables["events"], users, items, pc.dedup_events, ledger
    )
    queries = clean_queries(tables["queries"], items, ledger)
    ledger.check()

    result = split_events(events, pc.split, cfg.seed)
    warm_users, warm_items, events = mark_cold(events, result.labels)
    events = events.drop(columns=["split"])
    splits = {
        name: events.loc[result.labels == name].sort_values("timestamp", kind="stable")
        .reset_index(drop=True)
        for name in SPLITS
    }  # fmt: skip
    queries = queries.assign(
        split=split_queries(queries, result.cuts, pc.split.val_frac, pc.split.test_frac)
    )

    users, user_stats = add_user_features(users)
    items, item_stats = add_item_features(items, pc.price_buckets)
    users = users.assign(is_cold=~users["user_id"].isin(warm_users))
    items = items.assign(is_cold=~items["item_id"].isin(warm_items))
    vocabularies = build_vocabularies(splits["train"], users, items, pc.min_token_count)

    summary = {
        "split_method": pc.split.method,
        "cuts": result.cuts,
        "tables": ledger.as_dict(),
        "splits": {
            name: {
                "events": len(df),
                "users": int(df["user_id"].nunique()),
                "items": int(df["item_id"].nunique()),
                "cold_user_events": int(df["cold_user"].sum()),
                "cold_item_events": int(df["cold_item"].sum()),
            }
            for name, df in splits.items()
        },
        "queries": {name: int((queries["split"] == name).sum()) for name in SPLITS},
        "cold_users": int(users["is_cold"].sum()),
        "cold_items": int(items["is_cold"].sum()),
        "vocabulary_sizes": {name: len(v) for name, v in vocabularies.items()},
    }
    total_out = sum(len(df) for df in splits.values())
    if total_out != ledger.tables["events"].rows_out:
        raise RuntimeError(
            f"split lost events: {ledger.tables['events'].rows_out} cleaned, {total_out} split"
        )
    return Prepared(splits, users, items, queries, vocabularies,
                    {**user_stats, **item_stats}, summary)  # fmt: skip


def read_inputs(folder: Path = VALIDATED_DIR) -> dict[str, pd.DataFrame]:
    """The canonical tables in `folder` (validate's clean rows by default)."""
    return {name: read_table(folder / f"{name}.parquet") for name in TABLES}


def write_outputs(prepared: Prepared, out_dir: Path = PREPARED_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """Writes every output listed in the module docstring."""
    for name, df in prepared.splits.items():
        write_table(df, out_dir / f"{name}.parquet")
    write_table(prepared.users, out_dir / "users.parquet")
    write_table(prepared.items, out_dir / "items.parquet")
    write_table(prepared.queries, out_dir / "queries.parquet")
    for name, values in prepared.vocabularies.items():
        path = out_dir / "vocab" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")
    write_json(prepared.features, out_dir / "features.json")
    write_json(prepared.summary, out_dir / "summary.json")
    s = prepared.summary
    write_json(
        {
            "events_train": s["splits"]["train"]["events"],
            "events_val": s["splits"]["val"]["events"],
            "events_test": s["splits"]["test"]["events"],
            "rows_dropped": sum(t["dropped_total"] for t in s["tables"].values()),
            "cold_users": s["cold_users"],
            "cold_items": s["cold_items"],
        },
        reports_dir / "prepare.json",
    )


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    with open_engine(cfg.engine) as engine:  # a LocalCluster starts while the tables are read
        prepared = run(cfg, read_inputs(), engine)
    write_outputs(prepared)
    log.info("prepare: %s", {k: v["events"] for k, v in prepared.summary["splits"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
