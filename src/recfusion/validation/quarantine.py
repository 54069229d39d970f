"""The pure decision after a suite ran: which rows go on, which are held back and why, and
whether the run must stop. Rows in = rows clean + rows quarantined, always."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pandas as pd

from recfusion.data.schema import UNPARSED
from recfusion.validation.gx_runner import ExpectationOutcome, SuiteOutcome
from recfusion.validation.messages import (
    Terms,
    expectation_label,
    failure_message,
    unparsed_reasons,
)
from recfusion.validation.suites import REF_PARSED

REF_PREFIX = "ref_"  # derived columns added for validation, never part of the outputs
COLUMNS_CHECK = "expect_table_columns_to_match_set"


@dataclass(frozen=True)
class TableDecision:
    table: str
    rows_in: int
    clean: pd.DataFrame  # rows that go on (original columns)
    quarantined: pd.DataFrame  # rows held back, original columns plus `reason`
    stop_reasons: list[str]  # why the run must stop; empty when it may go on

    @property
    def conserved(self) -> bool:
        return self.rows_in == len(self.clean) + len(self.quarantined)


def without_unread_cells(o: ExpectationOutcome, df: pd.DataFrame) -> ExpectationOutcome | None:
    """`o` without the rows whose cell in `o`'s column is empty only because its value could not
    be read (the row's UNPARSED cell names the column): the parse check reports those. None
    when no row is left; `o` itself for a table-level outcome or a table without UNPARSED."""
    if UNPARSED not in df.columns or o.column in (None, REF_PARSED) or not o.unexpected_index:
        return o
    cells = df[UNPARSED]

    def unread(i: object) -> bool:
        cell = cells.get(i)
        return isinstance(cell, str) and o.column in json.loads(cell)

    rows = [i for i in o.unexpected_index if not unread(i)]
    return (
        None
        if not rows
        else o
        if len(rows) == len(o.unexpected_index)
        else replace(o, unexpected_index=rows)
    )


def decide(
    table: str,
    df: pd.DataFrame,
    outcome: SuiteOutcome,
    on_failure: str,
    max_bad_frac: float,
    terms: Terms | None = None,
) -> TableDecision:
    """Splits `df` into clean and quarantined rows and says whether to stop.

    A row whose value could not be read (its UNPARSED cell, filled by the files source) is held
    back for that, e.g. "unparseable timestamp in column 'timestamp'", and not also for the
    empty cell the value left behind.

    Args:
        table: the table's name.
        df: the validated frame (its index labels are what the outcome's row lists refer to).
        outcome: the suite's results.
        on_failure: "stop" (any failure stops) or "quarantine" (row-level failures hold their
            rows back; table-level failures, and more bad rows than `max_bad_frac`, stop).
        max_bad_frac: the largest share of quarantined rows that still lets the run go on.
        terms: the user's column names and the params keys, for the stop reasons.

    Returns:
        The decision; `clean` and `quarantined` drop the derived `ref_*` columns, and `clean`
        the UNPARSED column too (empty in every clean row).
    """
    terms = terms if terms is not None else Terms()
    reasons: dict[object, list[str]] = {}
    stop: list[str] = []
    row_failures: list[ExpectationOutcome] = []
    # a missing column also fails every check on it: the column check's message says it all
    columns_missing = any(o.type == COLUMNS_CHECK for o in outcome.failed)
    # the parse check first: a row's reasons start with what could not be read
    for o in sorted(outcome.failed, key=lambda o: o.column != REF_PARSED):
        if columns_missing and o.error and o.column not in df.columns:
            continue
        if o.level == "row" and o.error is None and o.unexpected_index:
            kept = without_unread_cells(o, df)
            if kept is None:
                continue  # only cells left empty by a value that could not be read
            o = kept
            parsing = o.column == REF_PARSED and UNPARSED in df.columns
            for idx in o.unexpected_index:
                reasons.setdefault(idx, []).extend(
                    unparsed_reasons(table, df.at[idx, UNPARSED], terms)
                    if parsing
                    else [expectation_label(o)]
                )
            row_failures.append(o)
            if on_failure == "stop":
                stop.append(failure_message(table, o, df, terms))
        else:
            stop.append(failure_message(table, o, df, terms))
    share = len(reasons) / len(df) if len(df) else 0.0
    if on_failure == "quarantine" and share > max_bad_frac:
        stop.append(
            f"{table}: {len(reasons):,} of {len(df):,} rows ({share:.1%}) break row-level "
            f"expectations, more than validation.max_bad_row_frac ({max_bad_frac:g}) allows: "
            "fix those rows or raise validation.max_bad_row_frac. What is wrong with them:"
        )
        stop += [failure_message(table, o, df, terms) for o in row_failures]
    keep = [c for c in df.columns if not str(c).startswith(REF_PREFIX)]
    bad_mask = df.index.isin(list(reasons))
    quarantined = df.loc[bad_mask, keep]
    quarantined = quarantined.assign(
        reason=["; ".join(reasons[i]) for i in quarantined.index]
    ).reset_index(drop=True)
    clean = df.loc[~bad_mask, [c for c in keep if c != UNPARSED]].reset_index(drop=True)
    return TableDecision(table, len(df), clean, quarantined, stop)
