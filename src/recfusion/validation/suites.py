"""Expectation suites (expectations/*.json) and the derived columns some of them check.

A suite is GX Core 1.x JSON: {"name", "expectations": [{"type", "kwargs", "meta"}], "meta"}.
Each expectation's `meta.level` says what a failure means: "row" failures name the bad rows
(quarantinable), "table" failures are about the table as a whole and always stop the run.

Referential checks (an event's user exists, an id outside the vocabulary is flagged cold-start)
are expressed as boolean `ref_*` columns added here and expected to be true: this keeps
million-entry id sets out of the suite and out of the Data Docs. So is "every value could be
read" (`ref_values_parsed`: the row's `schema.UNPARSED` cell, which the files source fills, is
empty). Messages name the column a `ref_*` column is about, never the `ref_*` column itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfusion.data.io import DataFileError, read_json
from recfusion.data.schema import UNPARSED
from recfusion.paths import SUITES_DIR

RAW_SUITES = ("users", "items", "events", "queries")  # validated in this order
PREPARED_SUITE = "prepared"
REF_PARSED = "ref_values_parsed"  # every table: the row's values could all be read
# referential columns of the raw suites: ref column -> (the column it checks, the table that
# column must be found in)
REFERENCES = {
    "ref_user_known": ("user_id", "users"),
    "ref_item_known": ("item_id", "items"),
    "ref_clicked_item_known": ("clicked_item_id", "items"),
}


@dataclass(frozen=True)
class Suite:
    name: str
    expectations: list[dict[str, Any]]
    meta: dict[str, Any]

    def level(self, index: int) -> str:
        return str(self.expectations[index].get("meta", {}).get("level", "table"))


def load_suite(name: str, suites_dir: Path = SUITES_DIR) -> Suite:
    """Reads and checks one suite file.

    Raises:
        DataFileError: the file is missing, not JSON, or an expectation lacks `type` / a valid
            `meta.level`.
    """
    path = suites_dir / f"{name}.json"
    raw = read_json(path)
    expectations = raw.get("expectations")
    if raw.get("name") != name or not isinstance(expectations, list):
        raise DataFileError(f'{path}: needs "name": "{name}" and a list of expectations')
    for i, exp in enumerate(expectations):
        level = exp.get("meta", {}).get("level")
        if "type" not in exp or level not in ("row", "table"):
            raise DataFileError(f"{path}: expectation {i} needs a type and meta.level row|table")
    return Suite(name, expectations, raw.get("meta", {}))


def add_reference_columns(
    table: str, df: pd.DataFrame, known: dict[str, pd.Series]
) -> pd.DataFrame:
    """`df` with the boolean `ref_*` columns its suite expects (a new frame).

    Args:
        table: one of RAW_SUITES.
        df: the table.
        known: validated id columns so far: {"users": user_id series, "items": item_id series}.
    """
    parsed = df[UNPARSED].isna() if UNPARSED in df.columns else True
    refs: dict[str, pd.Series | bool] = {REF_PARSED: parsed}
    if table == "events":
        if "user_id" in df.columns:
            refs["ref_user_known"] = df["user_id"].isin(known["users"])
        if "item_id" in df.columns:
            refs["ref_item_known"] = df["item_id"].isin(known["items"])
    if table == "queries" and "clicked_item_id" in df.columns:
        clicked = df["clicked_item_id"]
        refs["ref_clicked_item_known"] = clicked.isna() | clicked.isin(known["items"])
    # a missing key column gets no reference column: the suite's column check reports it
    return df.assign(**refs)


def prepared_frame(
    splits: dict[str, pd.DataFrame],
    items: pd.DataFrame,
    vocab_users: set[str],
    vocab_items: set[str],
) -> pd.DataFrame:
    """The prepared splits as one frame with `split`, `category_l1` and the vocabulary checks."""
    frames = [df.assign(split=name) for name, df in splits.items()]
    ev = pd.concat(frames, ignore_index=True)
    dept = items.set_index("item_id")["category_l1"]
    ev = ev.assign(category_l1=ev["item_id"].map(dept).fillna("unknown"))
    in_users = ev["user_id"].isin(vocab_users).to_numpy()
    in_items = ev["item_id"].isin(vocab_items).to_numpy()
    return ev.assign(
        ref_user_in_vocab_or_cold=in_users != ev["cold_user"].to_numpy(dtype=bool),
        ref_item_in_vocab_or_cold=in_items != ev["cold_item"].to_numpy(dtype=bool),
    )


def partition(values: pd.Series) -> dict[str, list]:
    """A categorical GX partition object: the distinct values and their shares."""
    shares = values.astype(str).value_counts(normalize=True).sort_index()
    if shares.empty:
        return {"values": ["<empty>"], "weights": [1.0]}
    weights = np.round(shares.to_numpy(dtype=float), 12)
    weights = weights / weights.sum()
    return {"values": shares.index.tolist(), "weights": weights.tolist()}
