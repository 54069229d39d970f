"""The event log: every batch of fresh events that `/events` or `recfusion events` accepted, as
Parquet under data/live/events/day=YYYY-MM-DD/<batch>.parquet (serving/events.append_to_log
writes it), canonical event columns with UTC timestamps.

Two readers, and the rule that keeps each event counted once:

- `ingest` takes the whole log into the next training run (`ingest.event_log: true`): its events
  join the source's events, a user the source has no row for gets a row with only an id (the
  events are all a new shopper has), and data/raw/source.json lists the batch files it took.
- `materialize` refills the online store from data/prepared (which holds those batches, as
  validated and prepared) and then replays only the batches not in that list: the events that
  arrived after ingest read the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from recfusion.data.schema import canonical_columns

EVENT_LOG_DIR = Path("data/live/events")
LOG_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "session_id", "value")


def log_batches(folder: Path = EVENT_LOG_DIR) -> list[Path]:
    """The log's files in arrival order (batch files are named by their arrival time)."""
    return sorted(folder.glob("day=*/*.parquet"), key=lambda p: (p.name, p.parent.name))


def batch_name(path: Path, folder: Path = EVENT_LOG_DIR) -> str:
    """How source.json names a batch file: its path inside the log, e.g.
    'day=2026-12-03/20261203T101500123456-ab12cd34.parquet'."""
    return path.relative_to(folder).as_posix()


def read_batches(files: Sequence[Path]) -> pd.DataFrame:
    """The events of these log files, in their order, with LOG_COLUMNS (empty when none)."""
    return _concat([pd.read_parquet(f) for f in files])


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({c: [] for c in LOG_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def read_log(folder: Path = EVENT_LOG_DIR, skip: Collection[str] = (),
             unless_user_in: Collection[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Every event in the log but those of the batches named in `skip` (`batch_name`), in
    arrival order, with LOG_COLUMNS. With `unless_user_in`, a skipped batch's events of users
    not in it are kept: training took the batch in, but those users did not reach it (e.g.
    `prepare.missing` dropped a new shopper's id-only row), so only the log has them."""
    skipped = set(skip)
    parts = []
    for f in log_batches(folder):
        if batch_name(f, folder) not in skipped:
            parts.append(pd.read_parquet(f))
        elif unless_user_in is not None:
            rows = pd.read_parquet(f)
            parts.append(rows[~rows["user_id"].astype(str).isin(set(unless_user_in))])
    return _concat(parts)


def join_log(tables: dict[str, pd.DataFrame], logged: pd.DataFrame, split: str | None = None
             ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:  # fmt: skip
    """The source's tables with the logged events added after its own, and a row with only a
    user id (signed up at their first logged event) for each logged user the users table
    lacks; and the counts added. Timestamps take the source's form (naive UTC unless its own
    carry a zone); `split` fills the events' `split` column (a source with predefined splits
    needs one; None leaves it empty). The inputs are not modified."""
    if logged.empty:
        return tables, {"events": 0, "new_users": 0}
    events, users = tables["events"], tables["users"]
    ts = pd.to_datetime(logged["timestamp"], utc=True)
    add = logged.assign(timestamp=_like(ts, events, "timestamp"))
    add = add.reindex(columns=canonical_columns("events"))
    if split is not None:
        add["split"] = split
    first = ts.groupby(logged["user_id"].astype(str).to_numpy(), sort=False).min()
    new = first[~first.index.isin(set(users["user_id"].astype(str)))]
    rows = pd.DataFrame({"user_id": new.index, "signup_ts": _like(new, users, "signup_ts")})
    out = dict(tables)
    out["events"] = _append(events, add)
    out["users"] = _append(users, rows) if len(rows) else users
    return out, {"events": len(add), "new_users": len(rows)}


def _like(ts: pd.Series, table: pd.DataFrame, column: str) -> pd.Series:
    """UTC timestamps in the form `table[column]` holds them: in its zone, or naive UTC."""
    zone = getattr(table[column].dtype, "tz", None) if column in table.columns else None
    return ts.dt.tz_convert(zone) if zone is not None else ts.dt.tz_localize(None)


def _append(table: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """`more` (some of `table`'s columns) under `table`, each column keeping its type: a plain
    int or bool column that `more` leaves empty becomes nullable (Int64, boolean) rather than
    float or True."""
    more = more.reindex(columns=table.columns)
    base = table.copy()
    for column in base.columns:
        kind = base[column].dtype
        if more[column].isna().any() and not pd.api.types.is_extension_array_dtype(kind):
            if pd.api.types.is_bool_dtype(kind):
                base[column] = base[column].astype("boolean")
            elif pd.api.types.is_integer_dtype(kind):
                base[column] = base[column].astype("Int64")
        with contextlib.suppress(TypeError, ValueError):  # else concat finds a common type
            more[column] = more[column].astype(base[column].dtype)
    return pd.concat([base, more], ignore_index=True)
