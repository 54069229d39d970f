"""The canonical tables every source is mapped onto (see DESIGN.md).

`conform_table` turns a source's frame into the canonical column names and dtypes and raises a
`SchemaError` that names the table and column when it cannot; or, for the user's own files,
keeps a row whose value cannot be read with that cell empty and the text in its `unparsed` cell,
for validation to hold the row back with the reason. Extra columns a source carries (e.g.
MovieLens occupation) are kept after the canonical ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

# the names are defined once, in recfusion.config; EVENT_TYPES is re-exported for the cleaners
from recfusion.config import EVENT_TYPES as EVENT_TYPES
from recfusion.config import TABLES

SPLITS = ("train", "val", "test")
# what makes an event: prepare drops rows missing one of these, and rows repeating all four
EVENT_KEY = ("user_id", "item_id", "event_type", "timestamp")
# the column, last in a table conformed with unreadable="mark", that holds a JSON object
# {column: text as read} of the values of its row that could not take their column's type
UNPARSED = "unparsed"
EPOCH_NS = {"s": 10**9, "ms": 10**6}  # nanoseconds in an epoch number's unit


class SchemaError(ValueError):
    """A table does not fit the canonical schema."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "timestamp"
    required: bool  # the column must be present (values may still be null where nullable)
    nullable: bool


SCHEMA: dict[str, tuple[Column, ...]] = {
    "users": (
        Column("user_id", "str", True, False),
        Column("age", "int", False, True),
        Column("gender", "str", False, True),
        Column("region", "str", False, True),
        Column("signup_ts", "timestamp", False, True),
    ),
    "items": (
        Column("item_id", "str", True, False),
        Column("title", "str", True, True),
        Column("category", "str", True, True),
        Column("brand", "str", False, True),
        Column("price", "float", False, True),
        Column("created_ts", "timestamp", False, True),
        Column("in_stock", "bool", False, False),
    ),
    "events": (
        Column("user_id", "str", True, True),
        Column("item_id", "str", True, True),
        Column("event_type", "str", True, True),
        Column("timestamp", "timestamp", True, True),
        Column("value", "float", False, True),
        Column("session_id", "str", False, True),
        Column("split", "str", False, True),
    ),
    "queries": (
        Column("user_id", "str", False, True),
        Column("query", "str", True, True),
        Column("timestamp", "timestamp", True, True),
        Column("clicked_item_id", "str", False, True),
        Column("session_id", "str", False, True),
    ),
}


def canonical_columns(table: str) -> list[str]:
    """The canonical column names of `table`, in order."""
    return [c.name for c in SCHEMA[table]]


def empty_table(table: str) -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes of `table`."""
    return conform_table(table, pd.DataFrame({c: [] for c in canonical_columns(table)}))


def conform_table(
    table: str,
    df: pd.DataFrame,
    timestamp_unit: str = "s",
    keep_extra: bool = True,
    unreadable: Literal["raise", "mark"] = "raise",
) -> pd.DataFrame:
    """Returns `df` with canonical columns (missing optional ones added) and dtypes.

    Args:
        table: one of TABLES.
        df: the source frame, already renamed to canonical column names.
        timestamp_unit: how numeric or text timestamps are read: "s", "ms" or "iso".
        keep_extra: keep non-canonical columns after the canonical ones.
        unreadable: what a value that cannot take its column's type does: "raise" a
            SchemaError, or "mark" its row: the cell becomes null (`in_stock`, which has no
            null, True) and the text goes into the row's UNPARSED cell, added as the last
            column (null in rows whose values all cast).

    Returns:
        A new frame; `df` is not modified.

    Raises:
        SchemaError: a required column is missing, a column cannot take its canonical type
            (unreadable="raise"), or `df` has a column named UNPARSED (unreadable="mark").
    """
    if table not in SCHEMA:
        raise SchemaError(f"unknown table '{table}' (tables: {', '.join(TABLES)})")
    missing = [c.name for c in SCHEMA[table] if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(
            f"{table}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns)) or 'no columns'}"
        )
    if unreadable == "mark" and UNPARSED in df.columns:
        raise SchemaError(
            f"{table}: column '{UNPARSED}' is reserved for values that cannot be read; rename yours"
        )
    out = {}
    unread: dict[str, np.ndarray] = {}  # column -> rows whose value did not cast
    for col in SCHEMA[table]:
        if col.name not in df.columns:
            out[col.name] = _default(col, len(df))
        elif unreadable == "raise":
            out[col.name] = _cast(table, col, df[col.name], timestamp_unit)
        else:
            out[col.name], bad = _cast_or_mark(col, df[col.name], timestamp_unit)
            if bad.any():
                unread[col.name] = bad
    result = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    if keep_extra:
        for name in df.columns:
            if name not in result.columns:
                result[name] = df[name].to_numpy()
    if unreadable == "mark":
        result[UNPARSED] = _unparsed_cells(df, unread)
    return result


def _default(col: Column, n: int) -> pd.Series:
    if col.kind == "bool":
        return pd.Series(np.ones(n, dtype=bool))
    return _cast("", col, pd.Series([None] * n, dtype=object), "s")


def _cast(table: str, col: Column, s: pd.Series, unit: str) -> pd.Series:
    try:
        return _cast_strictly(col, s, unit)
    except (ValueError, TypeError, OverflowError) as e:
        bad = _first_bad_value(s, col.kind, unit)
        raise SchemaError(
            f"{table}: column '{col.name}' cannot be read as {col.kind}"
            + (f" (e.g. value {bad!r})" if bad is not None else "")
            + f": {e}"
        ) from e


def _cast_strictly(col: Column, s: pd.Series, unit: str) -> pd.Series:
    """`s` as `col`'s kind; raises ValueError, TypeError or OverflowError if a value does not
    cast."""
    if col.kind == "str":
        return _to_str(s)
    if col.kind == "int":
        return pd.to_numeric(s, errors="raise").astype("Int64")
    if col.kind == "float":
        return pd.to_numeric(s, errors="raise").astype("float64")
    if col.kind == "bool":
        return _to_bool(s)
    return to_timestamp(s, unit)


def _cast_or_mark(col: Column, s: pd.Series, unit: str) -> tuple[pd.Series, np.ndarray]:
    """`s` as `col`'s kind with the values that do not cast left null (bool: True), and a
    boolean array marking them. A column whose values all cast takes the strict path, so good
    data gives the same table whichever `unreadable` is asked for."""
    try:
        return _cast_strictly(col, s, unit), np.zeros(len(s), dtype=bool)
    except (ValueError, TypeError, OverflowError):
        pass
    given = s.notna().to_numpy()
    if col.kind == "str":  # cannot fail: _to_str writes any value as text
        return _to_str(s), np.zeros(len(s), dtype=bool)
    if col.kind in ("int", "float"):
        number = pd.to_numeric(s, errors="coerce")
        if col.kind == "int":  # 30.5 is not an age; 1e30 does not fit Int64
            number = number.where((number % 1 == 0) & (number.abs() < 2**63))
            return number.astype("Int64"), given & number.isna().to_numpy()
        return number.astype("float64"), given & number.isna().to_numpy()
    if col.kind == "bool":
        values = _bool_values(s)
        bad = ~values.map(lambda v: isinstance(v, bool)).to_numpy(dtype=bool)
        return values.where(~bad, True).astype(bool), bad
    stamps = _timestamps_or_nat(s, unit)
    return stamps, given & stamps.isna().to_numpy()


def _timestamps_or_nat(s: pd.Series, unit: str) -> pd.Series:
    """`to_timestamp` value by value: NaT where a value is not a timestamp. With unit s or
    ms, number-like text (a CSV column holding one bad cell is read as text) is epoch time."""
    number = pd.to_numeric(s, errors="coerce") if unit in ("s", "ms") else None
    if number is None or number.isna().all():
        out = pd.to_datetime(s, utc=True, errors="coerce", format="mixed")
    else:
        text = s.where(number.isna())
        # datetime64[ns] ends in 2262: a larger epoch number (9.2e9 s) is no timestamp, and
        # pandas raises OverflowError for it even with errors="coerce"
        number = number.where(number.abs() < (2**63 - 1) / EPOCH_NS[unit])
        out = pd.to_datetime(number, unit=unit, utc=True, errors="coerce")
        from_text = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        out = out.where(number.notna(), from_text)
    return out.dt.tz_localize(None).astype("datetime64[ns]")


def _unparsed_cells(df: pd.DataFrame, unread: dict[str, np.ndarray]) -> pd.Series:
    """The UNPARSED column: per row, a JSON object {column: text as read} of the values in
    `unread`, or None."""
    cells = np.full(len(df), None, dtype=object)
    any_bad = np.zeros(len(df), dtype=bool)
    for bad in unread.values():
        any_bad |= bad
    rows = np.flatnonzero(any_bad)
    # the texts of the bad rows, column by column (one cell at a time took 10 us a cell)
    texts = {c: df[c].iloc[rows].map(str).to_numpy() for c in unread}
    flags = {c: bad[rows] for c, bad in unread.items()}
    for k, row in enumerate(rows):
        found = {c: texts[c][k] for c in unread if flags[c][k]}
        cells[row] = json.dumps(found, ensure_ascii=False)
    return pd.Series(cells, dtype=object)


def _to_str(s: pd.Series) -> pd.Series:
    given = s.dropna()
    if pd.api.types.is_float_dtype(s) and given.mod(1).eq(0).all() and given.abs().lt(2**63).all():
        # ids read from CSV as floats (because of a blank) must not become "12.0"
        s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), None)
    return out.map(lambda v: v if v is None else str(v)).astype(object)


def _to_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(True).astype(bool)
    out = _bool_values(s)
    bad = out[~out.map(lambda v: isinstance(v, bool))]
    if len(bad):
        raise ValueError(f"not a boolean: {bad.iloc[0]!r}")
    return out.astype(bool)


def _bool_values(s: pd.Series) -> pd.Series:
    """true/false, 1/0, yes/no (any case) as booleans, missing as True; other values as given."""
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(True).astype(object)
    mapping = {"true": True, "false": False, "yes": True, "no": False}
    mapping |= {"1": True, "0": False, "1.0": True, "0.0": False}  # 1.0: a CSV 0/1 with a blank
    given = s.astype(object).where(s.notna(), None)  # a blank CSV cell (NaN) is missing
    lowered = given.map(lambda v: v if v is None or isinstance(v, bool) else str(v).strip().lower())
    return lowered.map(lambda v: True if v is None or v is True else mapping.get(v, v))


def to_timestamp(s: pd.Series, unit: str = "s") -> pd.Series:
    """Parses epoch numbers (`unit` s or ms) or ISO text into tz-naive UTC datetime64[ns]."""
    if pd.api.types.is_datetime64_any_dtype(s):
        out = pd.to_datetime(s, utc=True)
    elif unit in ("s", "ms") and pd.api.types.is_numeric_dtype(s):
        out = pd.to_datetime(s, unit=unit, utc=True)
    else:
        out = pd.to_datetime(s, utc=True, errors="raise", format="mixed")
    return out.dt.tz_localize(None).astype("datetime64[ns]")


def _first_bad_value(s: pd.Series, kind: str, unit: str) -> object | None:
    for v in s.dropna().head(10_000):
        try:
            if kind in ("int", "float"):
                float(v)
            elif kind == "timestamp":
                to_timestamp(pd.Series([v]), unit)
        except (ValueError, TypeError, OverflowError):
            return v
    return None
