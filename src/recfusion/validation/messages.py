"""What a failed expectation means, in the user's terms: stop messages and quarantine reasons.

A stop message names the table, how many rows fail out of how many, the columns by the user's
own names (a files source's column map, read back from data/raw/source.json; a derived `ref_*`
column by the column it checks), up to MAX_SHOWN_VALUES bad values (the user's own data, inside
the project), the params key behind a limit and its value, and what to change; last, in
brackets, the expectation as the Data Docs name it. The files source's own errors never show a
value (data/files.py); these messages are about data that was read and may.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recfusion.data.schema import SCHEMA, UNPARSED
from recfusion.validation.gx_runner import ExpectationOutcome
from recfusion.validation.suites import REF_PARSED, REFERENCES

MAX_SHOWN_VALUES = 5  # bad values, or rows, a message shows
MAX_VALUE_CHARS = 40  # a longer shown value is cut and its length given
KIND_NAMES = {
    "int": "whole number",
    "float": "number",
    "bool": "true/false value",
    "timestamp": "timestamp",
    "str": "text",
}


@dataclass(frozen=True)
class Terms:
    """What a message needs besides the failed expectation."""

    source: str = ""  # the source that wrote data/raw (files, movielens, synthetic); "" unknown
    # table -> {canonical column: the user's name for it}, from ingest.files.columns
    yours: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    timestamp_unit: str | None = None  # files source: ingest.files.timestamp_unit
    keys: Mapping[str, str] = field(default_factory=dict)  # suite parameter -> its params key

    @classmethod
    def of_source(cls, source: Mapping[str, Any], keys: Mapping[str, str]) -> Terms:
        """The terms of data/raw/source.json's record `source` ({} when there is none)."""
        name = str(source.get("source", ""))
        if name != "files":
            return cls(name, {}, None, keys)
        params = source.get("params") or {}
        columns = params.get("columns") or {}
        yours = {t: {canonical: mine for mine, canonical in m.items()} for t, m in columns.items()}
        return cls(name, yours, params.get("timestamp_unit"), keys)

    def column(self, table: str, name: str) -> str:
        """'item_id', or 'item_id' (your 'sku') when the user's file calls it sku."""
        mine = self.yours.get(table, {}).get(name)
        return f"'{name}'" + (f" (your '{mine}')" if mine and mine != name else "")

    def origin(self, table: str) -> str:
        """Where `table` comes from, for a fix: ingest.files.items, or the source's name."""
        if self.source == "files":
            return f"ingest.files.{table}"
        return f"the {table} of ingest.source ({self.source or 'unknown'})"

    def limit(self, o: ExpectationOutcome, kwarg: str, unit: str = "") -> str:
        """The bound `kwarg` of `o`, with the params key that set it: "validation.max_rows
        (200,000,000)", or "500 characters" when no params key sets it."""
        value = shown_number(o.kwargs.get(kwarg)) + (f" {unit}" if unit else "")
        key = self.keys.get(o.parameters.get(kwarg, ""))
        return f"{key} ({value})" if key else value

    def key(self, o: ExpectationOutcome, kwarg: str) -> str | None:
        """The params key that set the bound `kwarg` of `o`, if one did."""
        return self.keys.get(o.parameters.get(kwarg, ""))


def expectation_label(o: ExpectationOutcome) -> str:
    """A short name for a failed expectation, e.g. "expect_column_values_to_not_be_null(user_id)"."""
    return f"{o.type}({o.column})" if o.column else o.type


def unparsed_reasons(table: str, cell: str, terms: Terms) -> list[str]:
    """Quarantine reasons of a row from its UNPARSED cell, e.g. "unparseable timestamp in
    column 'timestamp' (your 'ts')"."""
    kinds = {c.name: c.kind for c in SCHEMA[table]}
    return [
        f"unparseable {KIND_NAMES[kinds[c]]} in column {terms.column(table, c)}"
        for c in json.loads(cell)
    ]


def failure_message(table: str, o: ExpectationOutcome, df: pd.DataFrame, terms: Terms) -> str:
    """One line on a failed expectation of `table`, in the user's terms (see the module).

    Args:
        table: the table the suite checked.
        o: the failed expectation.
        df: the frame it checked (with the `ref_*` columns); the outcome's rows are labels of it.
        terms: the source's column names and the params keys.
    """
    label = expectation_label(o)
    if o.error:
        return f"{table}: {label} could not be checked ({o.error})"
    if o.type == "expect_table_columns_to_match_set":
        return _missing_columns(table, o, df, terms)
    if o.type == "expect_table_row_count_to_be_between":
        return _row_count(table, o, terms)
    if o.type == "expect_compound_columns_to_be_unique":
        return _repeats(table, o, df, terms)
    column = o.column
    if column is None or column not in df.columns or not o.unexpected_index:
        return f"{table}: {label} failed (observed {o.observed})"
    rows = list(dict.fromkeys(o.unexpected_index))
    count = f"{len(rows):,} of {len(df):,} rows {'has' if len(rows) == 1 else 'have'}"
    if column == REF_PARSED and UNPARSED in df.columns:
        return _unparsed(table, df.loc[rows, UNPARSED], count, terms)
    if column in REFERENCES:
        checked, other = REFERENCES[column]
        return (
            f"{table}: {count} {_a(checked)} {terms.column(table, checked)} that is not in the "
            f"{other} table (or was held back there): {shown(df.loc[rows, checked])}; to fix, "
            f"add those {other} to {terms.origin(other)} or remove these rows"
        )
    problem = _row_problem(o, terms.column(table, column), df.loc[rows, column], terms)
    return f"{table}: {count} {problem} [{label}]"


def _row_problem(o: ExpectationOutcome, named: str, values: pd.Series, terms: Terms) -> str:
    """What is wrong with the rows of a failed row-level expectation on one column, and the fix:
    "an 'event_type' outside view, click: 'teleport'; to fix, ..."."""
    a = _a(str(o.column))
    if o.type == "expect_column_values_to_not_be_null":
        where = shown_rows(list(values.index))
        return f"no {named} ({where}); to fix, fill it in or remove those rows"
    if o.type == "expect_column_values_to_be_unique":
        return (
            f"{a} {named} that another row has too: {shown(values)}; to fix, keep one row per "
            f"{o.column} (every copy is held back: which one is right is unknowable)"
        )
    if o.type == "expect_column_value_lengths_to_be_between":
        raise_key = terms.key(o, "max_value")
        return (
            f"{a} {named} {_length_bounds(o, values, terms)}: {shown(values)}; to fix, shorten "
            "or fill in those values" + (f", or raise {raise_key}" if raise_key else "")
        )
    if o.type == "expect_column_values_to_be_between":
        return f"{a} {named} {_bounds(o, terms)}: {shown(values)}; to fix, {_bounds_fix(o, terms)}"
    if o.type == "expect_column_values_to_be_in_set":
        allowed = ", ".join(str(v) for v in o.kwargs.get("value_set", []))
        return f"{a} {named} outside {allowed}: {shown(values)}; to fix, map yours onto these"
    if o.type == "expect_column_values_to_be_in_type_list":
        types = ", ".join(sorted({type(v).__name__ for v in values}))
        wanted = " or ".join(str(t) for t in o.kwargs.get("type_list", []))
        return (
            f"{a} {named} of type {types}, not {wanted}: {shown(values)}; to fix, re-run "
            "ingest so that this version of recfusion writes data/raw"
        )
    return f"a value that breaks {expectation_label(o)}: {shown(values)}"


def _a(column: str) -> str:
    """The article before a column's name: an 'item_id', a 'user_id'."""
    return "an" if column[:1] in "aeio" else "a"


def _unparsed(table: str, cells: pd.Series, count: str, terms: Terms) -> str:
    texts: dict[str, list[str]] = {}  # column -> the texts that could not be read
    for cell in cells:
        for column, text in json.loads(cell).items():
            texts.setdefault(column, []).append(text)
    kinds = {c.name: c.kind for c in SCHEMA[table]}
    parts = [
        f"unparseable {KIND_NAMES[kinds[c]]} in column {terms.column(table, c)}: {shown(v)}"
        for c, v in texts.items()
    ]
    fix = "to fix, correct those values in your file"
    if terms.timestamp_unit and any(kinds[c] == "timestamp" for c in texts):
        fix += (
            f"; timestamps are read by ingest.files.timestamp_unit ({terms.timestamp_unit}): "
            "iso for text, s or ms for epoch numbers"
        )
    return f"{table}: {count} a value that cannot be read: {'; '.join(parts)}; {fix}"


def _missing_columns(table: str, o: ExpectationOutcome, df: pd.DataFrame, terms: Terms) -> str:
    missing = [c for c in o.kwargs.get("column_set", []) if c not in df.columns]
    named = ", ".join(terms.column(table, c) for c in missing) or "none"
    fix = (
        f"map yours with ingest.files.columns.{table}"
        if terms.source == "files"
        else "re-run ingest so that this version of recfusion writes data/raw"
    )
    return f"{table}: missing column(s) {named}; to fix, {fix} [{expectation_label(o)}]"


def _row_count(table: str, o: ExpectationOutcome, terms: Terms) -> str:
    n = int(o.observed) if isinstance(o.observed, int | float) else -1
    low, high = o.kwargs.get("min_value"), o.kwargs.get("max_value")
    label = expectation_label(o)
    if high is not None and n > high:
        key = terms.key(o, "max_value") or "the row limit"
        return (
            f"{table}: {n:,} rows, more than {terms.limit(o, 'max_value')}; to fix, sample "
            f"the table or raise {key} [{label}]"
        )
    has = "the table is empty" if n == 0 else f"the table has {n:,} rows"
    lower = terms.key(o, "min_value")
    return (
        f"{table}: {has}, fewer rows than {terms.limit(o, 'min_value')}; to fix, check that "
        f"{terms.origin(table)} holds the {table}"
        + (f", or lower {lower}" if lower and low else "")
        + f" [{label}]"
    )


def _repeats(table: str, o: ExpectationOutcome, df: pd.DataFrame, terms: Terms) -> str:
    columns = [c for c in o.kwargs.get("column_list", []) if c in df.columns]
    rows = list(dict.fromkeys(o.unexpected_index))
    share = len(rows) / len(df) if len(df) else 0.0
    named = ", ".join(terms.column(table, c) for c in columns)
    keys = df.loc[rows, columns].drop_duplicates()
    examples = shown(tuple(r) for r in keys.itertuples(index=False))
    key = terms.key(o, "mostly") or "the duplicate limit"
    limit = 1.0 - float(o.kwargs.get("mostly", 1.0))
    return (
        f"{table}: {len(rows):,} of {len(df):,} rows ({share:.1%}) share {named} with another "
        f"row, more than {key} ({limit:g}): {examples}; to fix, remove the repeated {table} "
        f"or raise {key} (prepare drops exact repeats) [{expectation_label(o)}]"
    )


def _length_bounds(o: ExpectationOutcome, values: pd.Series, terms: Terms) -> str:
    low, high = o.kwargs.get("min_value"), o.kwargs.get("max_value")
    lengths = values.dropna().astype(str).str.len()
    sides = []
    if low is not None and (lengths < low).any():
        sides.append("that is empty" if low == 1 else f"shorter than {low:,} characters")
    if high is not None and (lengths > high).any():
        sides.append(f"longer than {terms.limit(o, 'max_value', 'characters')}")
    return " or ".join(sides) or "of the wrong length"


def _bounds(o: ExpectationOutcome, terms: Terms) -> str:
    low, high = o.kwargs.get("min_value"), o.kwargs.get("max_value")
    if o.parameters.get("max_value") == "now":
        return f"in the future (after {high})"
    low_key, high_key = terms.key(o, "min_value"), terms.key(o, "max_value")
    if low is not None and high is not None:
        span = f"{shown_number(low)}..{shown_number(high)}"
        keys = f"{low_key}..{high_key} " if low_key and high_key else ""
        return f"outside {keys}({span})" if keys else f"outside {span}"
    if low is not None:
        return f"below {terms.limit(o, 'min_value')}"
    return f"above {terms.limit(o, 'max_value')}"


def _bounds_fix(o: ExpectationOutcome, terms: Terms) -> str:
    if o.parameters.get("max_value") == "now":
        return "correct those times (they are read as UTC)"
    keys = [k for k in (terms.key(o, "min_value"), terms.key(o, "max_value")) if k]
    return "correct those values" + (f" or change {' / '.join(keys)}" if keys else "")


def shown(values: Iterable[Any]) -> str:
    """Up to MAX_SHOWN_VALUES distinct values, e.g. "'a', 'b' and 3 more"."""
    distinct = list(dict.fromkeys(shown_value(v) for v in values))
    more = len(distinct) - MAX_SHOWN_VALUES
    return ", ".join(distinct[:MAX_SHOWN_VALUES]) + (f" and {more} more" if more > 0 else "")


def shown_rows(rows: list[Any]) -> str:
    """ "row 4" or "rows 4, 9 and 3 more": 1-based rows of the table as ingested."""
    numbers = [f"{int(r) + 1:,}" for r in rows[:MAX_SHOWN_VALUES]]
    more = len(rows) - len(numbers)
    return (
        ("row " if len(rows) == 1 else "rows ")
        + ", ".join(numbers)
        + (f" and {more} more" if more > 0 else "")
    )


def shown_value(v: Any) -> str:
    """A value as a message shows it: text quoted and cut, a tuple as (a, b), null as empty."""
    if isinstance(v, tuple):
        return "(" + ", ".join(shown_value(x) for x in v) + ")"
    if v is None or (pd.api.types.is_scalar(v) and not isinstance(v, str) and pd.isna(v)):
        return "empty"
    if isinstance(v, str):
        return f"'{cut(v)}'"
    return str(v)


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text`, or its first characters and its length when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text):,} characters)"


def shown_number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else str(v)
