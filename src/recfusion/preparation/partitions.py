"""The events cleaned in partitions of users on an engine (recfusion/engine.py): here, or on a
Dask cluster, with the result of `clean.clean_events` on the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recfusion.data.schema import EVENT_KEY
from recfusion.engine import Engine, LocalEngine, partition_by
from recfusion.preparation.clean import Ledger, TableCount, clean_events


def clean_events_on(
    engine: Engine,
    events: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    dedup: bool,
    ledger: Ledger,
) -> pd.DataFrame:
    """`clean_events` on `engine`: on a cluster, one partition of users per worker.

    Every rule of `clean_events` looks at one row, or (duplicates) at the rows of one user, so
    each partition is judged on its own. A worker gets only the columns the rules read and
    answers with the rows it keeps and the counts of those it drops; the kept rows are taken
    from `events` in their order and the counts added up, which gives what `clean_events`
    gives on the whole table (tests/data/test_engine.py).

    Args:
        engine: where the partitions run; a `LocalEngine` cleans the whole table here.
        events, users, items, dedup, ledger: as for `clean_events`.

    Returns:
        The clean events, in their order, with a fresh index.
    """
    if isinstance(engine, LocalEngine):
        return clean_events(events, users, items, dedup, ledger)
    keys = events[list(EVENT_KEY)].assign(_row=np.arange(len(events)))
    parts = partition_by(keys, "user_id", engine.workers)
    done = engine.map(
        clean_partition,
        parts,
        "clean events",
        user_ids=users["user_id"],
        item_ids=items["item_id"],
        dedup=dedup,
    )
    t = ledger.start("events", events)
    for _, counts in done:
        t.dropped.update(counts.dropped)
        t.filled.update(counts.filled)
    rows = np.sort(np.concatenate([kept for kept, _ in done]))
    t.rows_out = len(rows)
    return events.take(rows).reset_index(drop=True)


def clean_partition(
    events: pd.DataFrame, user_ids: pd.Series, item_ids: pd.Series, dedup: bool
) -> tuple[np.ndarray, TableCount]:
    """One partition of `clean_events_on`.

    Args:
        events: the partition's key columns (EVENT_KEY) and `_row`, its rows' positions.
        user_ids, item_ids: the known users and items.
        dedup: drop exact duplicates.

    Returns:
        The `_row` values of the rows `clean_events` keeps, and what it dropped, and why.
    """
    ledger = Ledger()
    clean = clean_events(events, user_ids.to_frame(), item_ids.to_frame(), dedup, ledger)
    return clean["_row"].to_numpy(), ledger.tables["events"]
