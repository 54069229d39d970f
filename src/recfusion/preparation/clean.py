"""Cleaning by declared policy, with a ledger so that no row disappears unexplained.

Every function takes a frame and a `Ledger`, returns a new frame (inputs are not modified) and
records, per table, the rows in, each reason rows were dropped for, the values filled and the
rows out. `Ledger.check` raises if in != out + dropped for any table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recfusion.config import MissingConfig
from recfusion.data.schema import EVENT_KEY, EVENT_TYPES

UNKNOWN = "unknown"


@dataclass
class TableCount:
    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    filled: Counter = field(default_factory=Counter)  # column -> values filled

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": int(sum(self.dropped.values())),
            "filled": dict(sorted(self.filled.items())),
        }


@dataclass
class Ledger:
    tables: dict[str, TableCount] = field(default_factory=dict)

    def start(self, table: str, df: pd.DataFrame) -> TableCount:
        self.tables[table] = TableCount(rows_in=len(df))
        return self.tables[table]

    def check(self) -> None:
        """Raises RuntimeError when a table's rows in != rows out + rows dropped."""
        for name, t in self.tables.items():
            if t.rows_in != t.rows_out + sum(t.dropped.values()):
                raise RuntimeError(
                    f"{name}: {t.rows_in} rows in but {t.rows_out} out + "
                    f"{sum(t.dropped.values())} dropped; rows were lost without a reason"
                )

    def as_dict(self) -> dict:
        return {name: t.as_dict() for name, t in self.tables.items()}


def drop_rows(df: pd.DataFrame, mask: pd.Series | np.ndarray, reason: str, t: TableCount):
    """`df` without the rows where `mask` is true, counted under `reason`."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n:
        t.dropped[reason] += n
        return df.loc[~mask]
    return df


def _fill_or_drop_categorical(
    df: pd.DataFrame, column: str, policy: str, t: TableCount
) -> pd.DataFrame:
    if column not in df.columns:
        return df
    missing = df[column].isna() | (df[column].astype(str).str.strip() == "")
    if policy == "drop":
        return drop_rows(df, missing, f"missing_{column}", t)
    if missing.any():
        t.filled[column] += int(missing.sum())
        df = df.assign(**{column: df[column].where(~missing, UNKNOWN)})
    return df


def _dedup_ids(df: pd.DataFrame, id_col: str, t: TableCount) -> pd.DataFrame:
    df = drop_rows(df, df[id_col].isna(), f"missing_{id_col}", t)
    return drop_rows(df, df[id_col].duplicated(keep="first"), f"duplicate_{id_col}", t)


def clean_users(users: pd.DataFrame, policy: MissingConfig, ledger: Ledger) -> pd.DataFrame:
    """Drops rows without or with a repeated user_id; fills or drops missing demographics."""
    t = ledger.start("users", users)
    df = _dedup_ids(users, "user_id", t)
    if df["age"].isna().any():
        missing = df["age"].isna()
        if policy.numeric == "drop":
            df = drop_rows(df, missing, "missing_age", t)
        else:
            median = df["age"].median()
            fill = int(round(median)) if pd.notna(median) else 0
            t.filled["age"] += int(missing.sum())
            df = df.assign(age=df["age"].fillna(fill))
    for column in ("gender", "region"):
        df = _fill_or_drop_categorical(df, column, policy.categorical, t)
    t.rows_out = len(df)
    return df.reset_index(drop=True)


def clean_items(items: pd.DataFrame, policy: MissingConfig, ledger: Ledger) -> pd.DataFrame:
    """Drops rows without or with a repeated item_id or with a negative price; fills or drops
    missing category, brand and price (price by the category's median, then the global one)."""
    t = ledger.start("items", items)
    df = _dedup_ids(items, "item_id", t)
    df = drop_rows(df, df["price"].notna() & (df["price"] < 0), "negative_price", t)
    if df["title"].isna().any():
        t.filled["title"] += int(df["title"].isna().sum())
        df = df.assign(title=df["title"].fillna(""))
    for column in ("category", "brand"):
        df = _fill_or_drop_categorical(df, column, policy.categorical, t)
    missing = df["price"].isna()
    if missing.any():
        if policy.numeric == "drop":
            df = drop_rows(df, missing, "missing_price", t)
        else:
            if df["price"].notna().any():
                by_cat = df.groupby("category")["price"].transform("median")
                fill = by_cat.fillna(df["price"].median())
            else:  # a source without prices (MovieLens): 0 everywhere, counted as filled
                fill = pd.Series(0.0, index=df.index)
            t.filled["price"] += int(missing.sum())
            df = df.assign(price=df["price"].fillna(fill))
    t.rows_out = len(df)
    return df.reset_index(drop=True)


def clean_events(
    events: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    dedup: bool,
    ledger: Ledger,
) -> pd.DataFrame:
    """Drops events with missing keys, unknown event types, unknown users or items, and (when
    `dedup`) exact duplicates (same user, item, type and timestamp)."""
    t = ledger.start("events", events)
    df = events
    for column in EVENT_KEY:
        df = drop_rows(df, df[column].isna(), f"missing_{column}", t)
    df = drop_rows(df, ~df["event_type"].isin(EVENT_TYPES), "bad_event_type", t)
    df = drop_rows(df, ~df["user_id"].isin(users["user_id"]), "unknown_user", t)
    df = drop_rows(df, ~df["item_id"].isin(items["item_id"]), "unknown_item", t)
    if dedup:
        df = drop_rows(df, df.duplicated(subset=list(EVENT_KEY), keep="first"), "duplicate", t)
    t.rows_out = len(df)
    return df.reset_index(drop=True)


def clean_queries(queries: pd.DataFrame, items: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
    """Drops queries with empty text or no timestamp, or whose clicked item is unknown."""
    t = ledger.start("queries", queries)
    df = queries
    text = df["query"].fillna("").astype(str).str.strip()
    df = drop_rows(df, text == "", "empty_query", t)
    df = drop_rows(df, df["timestamp"].isna(), "missing_timestamp", t)
    clicked = df["clicked_item_id"]
    df = drop_rows(df, clicked.notna() & ~clicked.isin(items["item_id"]), "unknown_clicked_item", t)
    t.rows_out = len(df)
    return df.reset_index(drop=True)
