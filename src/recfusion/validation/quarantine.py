"""The pure decision after a suite ran: which rows go on, which are held back and why, and
whether the run must stop. Rows in = rows clean + rows quarantined, always."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recfusion.validation.gx_runner import ExpectationOutcome, SuiteOutcome

REF_PREFIX = "ref_"  # derived columns added for validation, never part of the outputs


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


def expectation_label(o: ExpectationOutcome) -> str:
    """A short name for a failed expectation, e.g. "expect_column_values_to_not_be_null(user_id)"."""
    return f"{o.type}({o.column})" if o.column else o.type


def decide(
    table: str, df: pd.DataFrame, outcome: SuiteOutcome, on_failure: str, max_bad_frac: float
) -> TableDecision:
    """Splits `df` into clean and quarantined rows and says whether to stop.

    Args:
        table: the table's name.
        df: the validated frame (its index labels are what the outcome's row lists refer to).
        outcome: the suite's results.
        on_failure: "stop" (any failure stops) or "quarantine" (row-level failures hold their
            rows back; table-level failures, and more bad rows than `max_bad_frac`, stop).
        max_bad_frac: the largest share of quarantined rows that still lets the run go on.

    Returns:
        The decision; `clean` and `quarantined` drop the derived `ref_*` columns.
    """
    reasons: dict[object, list[str]] = {}
    stop: list[str] = []
    for o in outcome.failed:
        label = expectation_label(o)
        row_level = o.level == "row" and o.error is None and o.unexpected_index
        if row_level:
            for idx in o.unexpected_index:
                reasons.setdefault(idx, []).append(label)
        if not row_level or on_failure == "stop":
            detail = o.error or f"observed {o.observed}"
            stop.append(f"{table}: {label} failed ({detail})")
    share = len(reasons) / len(df) if len(df) else 0.0
    if on_failure == "quarantine" and share > max_bad_frac:
        stop.append(
            f"{table}: {len(reasons)} of {len(df)} rows ({share:.1%}) break row-level "
            f"expectations, more than validation.max_bad_row_frac ({max_bad_frac:.1%})"
        )
    keep = [c for c in df.columns if not str(c).startswith(REF_PREFIX)]
    bad_mask = df.index.isin(list(reasons))
    quarantined = df.loc[bad_mask, keep]
    quarantined = quarantined.assign(
        reason=["; ".join(reasons[i]) for i in quarantined.index]
    ).reset_index(drop=True)
    clean = df.loc[~bad_mask, keep].reset_index(drop=True)
    return TableDecision(table, len(df), clean, quarantined, stop)
