"""The canonical tables every source is mapped onto (see DESIGN.md).

`conform_table` turns a source's frame into the canonical column names and dtypes and raises a
`SchemaError` that names the table and column when it cannot. Extra columns a source carries
(e.g. MovieLens occupation) are kept after the canonical ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# the names are defined once, in recfusion.config; EVENT_TYPES is re-exported for the cleaners
from recfusion.config import EVENT_TYPES as EVENT_TYPES
from recfusion.config import TABLES

SPLITS = ("train", "val", "test")


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
    table: str, df: pd.DataFrame, timestamp_unit: str = "s", keep_extra: bool = True
) -> pd.DataFrame:
    """Returns `df` with canonical columns (missing optional ones added) and dtypes.

    Args:
        table: one of TABLES.
        df: the source frame, already renamed to canonical column names.
        timestamp_unit: how numeric or text timestamps are read: "s", "ms" or "iso".
        keep_extra: keep non-canonical columns after the canonical ones.

    Returns:
        A new frame; `df` is not modified.

    Raises:
        SchemaError: a required column is missing or a column cannot take its canonical type.
    """
    if table not in SCHEMA:
        raise SchemaError(f"unknown table '{table}' (tables: {', '.join(TABLES)})")
    missing = [c.name for c in SCHEMA[table] if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(
            f"{table}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns)) or 'no columns'}"
        )
    out = {}
    for col in SCHEMA[table]:
        if col.name in df.columns:
            out[col.name] = _cast(table, col, df[col.name], timestamp_unit)
        else:
            out[col.name] = _default(col, len(df))
    result = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    if keep_extra:
        for name in df.columns:
            if name not in result.columns:
                result[name] = df[name].to_numpy()
    return result


def _default(col: Column, n: int) -> pd.Series:
    if col.kind == "bool":
        return pd.Series(np.ones(n, dtype=bool))
    return _cast("", col, pd.Series([None] * n, dtype=object), "s")


def _cast(table: str, col: Column, s: pd.Series, unit: str) -> pd.Series:
    try:
        if col.kind == "str":
            return _to_str(s)
        if col.kind == "int":
            return pd.to_numeric(s, errors="raise").astype("Int64")
        if col.kind == "float":
            return pd.to_numeric(s, errors="raise").astype("float64")
        if col.kind == "bool":
            return _to_bool(s)
        return to_timestamp(s, unit)
    except (ValueError, TypeError) as e:
        bad = _first_bad_value(s, col.kind, unit)
        raise SchemaError(
            f"{table}: column '{col.name}' cannot be read as {col.kind}"
            + (f" (e.g. value {bad!r})" if bad is not None else "")
            + f": {e}"
        ) from e


def _to_str(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s) and s.dropna().mod(1).eq(0).all():
        # ids read from CSV as floats (because of a blank) must not become "12.0"
        s = s.astype("Int64")
    out = s.astype(object).where(s.notna(), None)
    return out.map(lambda v: v if v is None else str(v)).astype(object)


def _to_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.fillna(True).astype(bool)
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    lowered = s.map(lambda v: v if v is None or isinstance(v, bool) else str(v).strip().lower())
    out = lowered.map(lambda v: True if v is None or v is True else mapping.get(v, v))
    bad = out[~out.map(lambda v: isinstance(v, bool))]
    if len(bad):
        raise ValueError(f"not a boolean: {bad.iloc[0]!r}")
    return out.astype(bool)


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
        except (ValueError, TypeError):
            return v
    return None
