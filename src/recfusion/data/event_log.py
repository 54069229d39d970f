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

from collections.abc import Collection
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


def read_log(folder: Path = EVENT_LOG_DIR, skip: Collection[str] = ()) -> pd.DataFrame:
    """Every event in the log but those of the batches named in `skip` (`batch_name`), in
    arrival order, with LOG_COLUMNS; an empty table when there is none."""
    files = [f for f in log_batches(folder) if batch_name(f, folder) not in set(skip)]
    if not files:
        return pd.DataFrame({c: [] for c in LOG_COLUMNS})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def join_log(tables: dict[str, pd.DataFrame], logged: pd.DataFrame
             ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:  # fmt: skip
    """The source's tables with the logged events added after its own (timestamps made naive
    UTC, as the canonical tables hold them), and a row with only a user id (signed up at their
    first logged event) for each logged user the users table lacks; and the counts added.
    The inputs are not modified."""
    if logged.empty:
        return tables, {"events": 0, "new_users": 0}
    events = tables["events"]
    ts = pd.to_datetime(logged["timestamp"], utc=True).dt.tz_localize(None)
    add = logged.assign(timestamp=ts).reindex(columns=canonical_columns("events"))
    add = add.astype({c: events[c].dtype for c in add.columns if c in events.columns})
    users = tables["users"]
    known = set(users["user_id"].astype(str))
    first = add.groupby("user_id", sort=False)["timestamp"].min()
    new = first[~first.index.astype(str).isin(known)]
    rows = pd.DataFrame({"user_id": new.index.astype(str), "signup_ts": new.to_numpy()})
    rows = rows.reindex(columns=users.columns).astype(users.dtypes.to_dict())
    out = dict(tables)
    out["events"] = pd.concat([events, add[events.columns.intersection(add.columns)]],
                              ignore_index=True)  # fmt: skip
    out["users"] = pd.concat([users, rows], ignore_index=True) if len(rows) else users
    return out, {"events": len(add), "new_users": len(rows)}
