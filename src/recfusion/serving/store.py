"""The online store: what the packaged recommender knows about each user at request time.

The model ships fitted state only (serving/package.py); who a user is and what they did lives
here, keyed by user id, and is read at every request:

- users: `user_id`, `pseudonym` (the keyed hash the model's user vocabulary holds, so the model
  finds the user's id embedding without carrying ids), `gender`, `region`, `age_norm`;
- events: `user_id`, `item_id`, `event_type`, `timestamp` (ns since the epoch, UTC), in arrival
  order. The recommender derives the history, the "already has" set and the purchases from
  them with the model's own rules (which event types are positive, how long a history is).

The embedded default is one SQLite file (`serving.store`, default data/online/store.sqlite),
written by the `materialize` stage from data/prepared and the event log, read by every serving
process and appended to by `/events`. Every lookup and append opens its own connection and runs
in one transaction, so several worker processes share the file; `write_store` refills the file
in place in one transaction (never renames a new file over it: a writer still holding the old
file would lose its events, SQLite's own documents warn against it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from recfusion.models.dataset import PreparedData
from recfusion.privacy import key_check, key_pseudonym

FORMAT = 1
USER_COLUMNS = ("user_id", "pseudonym", "gender", "region", "age_norm")
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "timestamp")
LOOKUP_CHUNK = 500  # ids per SQL statement (SQLite's variable limit is far above)
WRITE_TIMEOUT_S = 10.0  # how long a writer waits for another to finish

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE users (user_id TEXT PRIMARY KEY, pseudonym TEXT NOT NULL, gender TEXT, "
    "region TEXT, age_norm REAL)",
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
    "item_id TEXT NOT NULL, event_type TEXT NOT NULL, timestamp INTEGER NOT NULL)",
    "CREATE INDEX events_by_user ON events (user_id, seq)",
)
TABLES = ("meta", "users", "events")


class StoreError(ValueError):
    """The online store is missing, unreadable, or was made with another pseudonym key."""


@dataclass(frozen=True)
class UserRecords:
    """What the store holds about some users."""

    users: pd.DataFrame  # USER_COLUMNS, one row per user the store has a row for
    events: pd.DataFrame  # EVENT_COLUMNS, the users' events in arrival order


@dataclass(frozen=True)
class StoreContents:
    """Everything to write into a new store."""

    users: pd.DataFrame  # USER_COLUMNS
    events: pd.DataFrame  # EVENT_COLUMNS, in arrival order
    key_check: str  # serving.package.key_check of the key the pseudonyms were made with
    source: str  # what the rows came from, e.g. "data/prepared: train+val+test"


def user_rows(users: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """The store's users table from a prepared users table: the text values as the models read
    them (`str()` of each cell, as models.inputs.build_users does) and the keyed pseudonym."""
    age = users["age_norm"] if "age_norm" in users else pd.Series(np.nan, index=users.index)
    ids = users["user_id"].astype(str)
    return pd.DataFrame({
        "user_id": ids.to_numpy(),
        "pseudonym": [key_pseudonym(u, key) for u in ids],
        "gender": users["gender"].astype(str).to_numpy(),
        "region": users["region"].astype(str).to_numpy(),
        "age_norm": pd.to_numeric(age, errors="coerce").to_numpy(dtype=np.float64),
    }, columns=list(USER_COLUMNS))  # fmt: skip


def event_rows(events: pd.DataFrame) -> pd.DataFrame:
    """The store's events table from canonical event rows (their order kept)."""
    ts = pd.to_datetime(events["timestamp"], utc=True)
    return pd.DataFrame({
        "user_id": events["user_id"].astype(str).to_numpy(),
        "item_id": events["item_id"].astype(str).to_numpy(),
        "event_type": events["event_type"].astype(str).to_numpy(),
        "timestamp": ts.astype("int64").to_numpy(),
    }, columns=list(EVENT_COLUMNS))  # fmt: skip


def materialize(prepared: PreparedData, splits: Sequence[str], key: bytes,
                users: Collection[str] | None = None) -> StoreContents:  # fmt: skip
    """The store's contents from the prepared tables: every user (or only `users`), and their
    events of `splits` in split order (train, then val, then test)."""
    events = pd.concat([prepared.splits[s] for s in splits], ignore_index=True)
    people = prepared.users
    if users is not None:
        wanted = {str(u) for u in users}
        people = people[people["user_id"].astype(str).isin(wanted)]
        events = events[events["user_id"].astype(str).isin(wanted)].reset_index(drop=True)
    return StoreContents(user_rows(people, key), event_rows(events), key_check(key),
                         f"data/prepared: {'+'.join(splits)}")  # fmt: skip


def _insert_events(con: sqlite3.Connection, events: pd.DataFrame) -> None:
    con.executemany(
        "INSERT INTO events (user_id, item_id, event_type, timestamp) VALUES (?, ?, ?, ?)",
        zip(events["user_id"].tolist(), events["item_id"].tolist(),
            events["event_type"].tolist(), events["timestamp"].tolist(), strict=True),
    )  # fmt: skip


def store_target(spec: str, project: Path) -> str | Path:
    """What a `serving.store` value names: a Redis URL as written, or a SQLite file relative to
    `project` (the folder of params.yaml)."""
    from recfusion.serving.redis_store import is_redis

    return spec.strip() if is_redis(spec) else project / spec


def write_store(contents: StoreContents, target: str | Path,
                more_events: Callable[[], pd.DataFrame] | None = None) -> str | Path:  # fmt: skip
    """Fills the store at `target` (a SQLite file, or a Redis URL: serving/redis_store.py) with
    `contents` and then `more_events()`; returns `target`.

    Raises:
        StoreError: the store cannot be written.
    """
    if isinstance(target, str):
        from recfusion.serving.redis_store import write_redis

        return write_redis(contents, target, more_events)
    return write_sqlite(contents, target, more_events)


def write_sqlite(contents: StoreContents, path: Path,
                 more_events: Callable[[], pd.DataFrame] | None = None) -> Path:  # fmt: skip
    """Fills the SQLite store at `path` (created when missing) with `contents` and then
    `more_events()` (canonical events, e.g. the event log's), in one transaction that holds the
    store's write lock from the start: readers see the old contents or the new, never a mix, and
    an event appended meanwhile either is in `more_events()` (read under the lock) or is
    appended after the refill.

    Raises:
        StoreError: the file is not a store this recfusion can write (e.g. not SQLite).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(path, timeout=WRITE_TIMEOUT_S, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                for table in TABLES:  # the layout may be an older one: made anew
                    con.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in SCHEMA:
                    con.execute(statement)
                source = contents.source
                extra = more_events() if more_events is not None else None
                if extra is not None and len(extra):
                    source += f", event log: {len(extra)} events"
                meta = {"format": str(FORMAT), "key_check": contents.key_check, "source": source}
                con.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                users = contents.users.astype(object).where(contents.users.notna(), None)
                con.executemany(
                    f"INSERT INTO users VALUES ({', '.join('?' * len(USER_COLUMNS))})",
                    users[list(USER_COLUMNS)].itertuples(index=False, name=None),
                )  # fmt: skip
                _insert_events(con, contents.events)
                if extra is not None and len(extra):
                    _insert_events(con, event_rows(extra))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
    except sqlite3.Error as e:
        raise StoreError(f"online store {path} could not be written ({e}); remove the file if "
                         "it is not a recfusion store") from e  # fmt: skip
    return path


class OnlineStore(Protocol):
    """What the recommender reads: the key check and the rows of some users."""

    key_check: str

    def lookup(self, user_ids: Sequence[str]) -> UserRecords: ...


class WritableStore(OnlineStore, Protocol):
    """A store serving writes to: /events, `recfusion events`, `recfusion forget`."""

    location: str  # where it is, for messages (a path, or a URL without its password)
    source: str  # what it was filled from

    def append(self, events: pd.DataFrame, then: Callable[[], object] | None = None) -> int: ...

    def forget(self, user_id: str) -> tuple[int, int]: ...

    def count_events(self) -> int: ...


class SqliteStore:
    """A SQLite store file; each lookup or append opens its own connection, so the store can be
    used from several threads and processes at once (a reader waits while a batch is written)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        if not self.path.is_file():
            raise StoreError(f"online store {self.path} does not exist: run `dvc repro` (the "
                             "materialize stage writes it; `dvc repro --force --single-item "
                             "materialize` when DVC says it is up to date), or set "
                             "serving.store")  # fmt: skip
        try:
            with self._connect() as con:
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"online store {self.path} is unreadable ({e}): run `dvc repro` "
                             "to write it again") from e  # fmt: skip
        if meta.get("format") != str(FORMAT):
            raise StoreError(f"online store {self.path} has format {meta.get('format')!r}, this "
                             f"recfusion reads {FORMAT}: run `dvc repro`")  # fmt: skip
        self.key_check = meta.get("key_check", "")
        self.source = meta.get("source", "")

    def _connect(self, mode: str = "ro") -> sqlite3.Connection:
        """A connection of its own; `mode` ro or rw (never creates the file)."""
        return sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, check_same_thread=False,
                               timeout=WRITE_TIMEOUT_S)  # fmt: skip

    def append(self, events: pd.DataFrame, then: Callable[[], object] | None = None) -> int:
        """Appends canonical event rows (their order kept) in one transaction and returns how
        many; `then` runs inside it (e.g. writing the event log), so when it fails nothing is
        appended, and when the commit fails its effect should be undone by the caller.

        Raises:
            StoreError: the store cannot be written (locked longer than WRITE_TIMEOUT_S, a
                read-only file, a full disk).
        """
        rows = event_rows(events)
        try:
            con = self._connect("rw")
            try:
                with con:  # commits, or rolls back on any error
                    _insert_events(con, rows)
                    if then is not None:
                        then()
            finally:
                con.close()
        except sqlite3.Error as e:
            raise StoreError(f"online store {self.path} could not take the events: {e}") from e
        return len(rows)

    def forget(self, user_id: str) -> tuple[int, int]:
        """Deletes the user's row and events, their bytes overwritten in the file
        (secure_delete): (user rows, events) deleted.

        Raises:
            StoreError: the store cannot be written.
        """
        try:
            con = self._connect("rw")
            try:
                con.execute("PRAGMA secure_delete = ON")
                with con:
                    users = con.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount
                    events = con.execute("DELETE FROM events WHERE user_id = ?",
                                         (user_id,)).rowcount  # fmt: skip
            finally:
                con.close()
        except sqlite3.Error as e:
            raise StoreError(f"online store {self.path} could not forget the user: {e}") from e
        return users, events

    def count_events(self) -> int:
        """How many events the store holds."""
        try:
            with self._connect() as con:
                count = int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            con.close()
        except sqlite3.Error as e:
            raise StoreError(f"online store {self.path}: {e}") from e
        return count

    def lookup(self, user_ids: Sequence[str]) -> UserRecords:
        """The rows of `user_ids` (unknown ids have none)."""
        ids = list(dict.fromkeys(user_ids))
        users, events = [], []
        try:
            con = self._connect()
            con.isolation_level = None
            try:
                con.execute("BEGIN")  # one snapshot for both tables (a forget may run meanwhile)
                for start in range(0, len(ids), LOOKUP_CHUNK):
                    chunk = ids[start : start + LOOKUP_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    users += con.execute(f"SELECT {', '.join(USER_COLUMNS)} FROM users "
                                         f"WHERE user_id IN ({marks})", chunk).fetchall()  # fmt: skip
                    events += con.execute(f"SELECT seq, {', '.join(EVENT_COLUMNS)} FROM events "
                                          f"WHERE user_id IN ({marks})", chunk).fetchall()  # fmt: skip
            finally:
                con.close()
        except sqlite3.Error as e:
            raise StoreError(f"online store {self.path}: {e}") from e
        events.sort(key=lambda row: row[0])  # arrival order
        return UserRecords(
            pd.DataFrame(users, columns=list(USER_COLUMNS)),
            pd.DataFrame([row[1:] for row in events], columns=list(EVENT_COLUMNS)),
        )


def open_store(target: str | Path) -> WritableStore:
    """The store at `target` (`store_target` of serving.store): a SQLite file, or a Redis URL.

    Raises:
        StoreError: it does not exist or cannot be read.
    """
    if isinstance(target, str):
        from recfusion.serving.redis_store import RedisStore

        return RedisStore(target)
    return SqliteStore(target)


def ready_target(spec: str, project: Path) -> str | Path:
    """`store_target` of a `serving.store` value, with a Redis on this machine started first
    when none answers (serving/redis_server.py).

    Raises:
        StoreError: redis-server is missing or did not start.
    """
    target = store_target(spec, project)
    if isinstance(target, str):
        from recfusion.serving.redis_server import REDIS_DIR, ensure_local

        ensure_local(target, project / REDIS_DIR)
    return target


def open_configured(spec: str, project: Path) -> WritableStore:
    """The store a `serving.store` value names, relative to `project` (the folder of
    params.yaml), its local Redis started when needed (`ready_target`).

    Raises:
        StoreError: it does not exist or cannot be read or started.
    """
    return open_store(ready_target(spec, project))


def prepared_store(prepared: PreparedData, splits: Sequence[str], key: bytes, path: Path,
                   users: Collection[str] | None = None) -> SqliteStore:  # fmt: skip
    """A store at `path` knowing every user of `prepared` (or only `users`: the gate asks for
    a sample of test users, and a large shop has millions) by the events of `splits` only: the
    gate and `recfusion recommend --history` score a held-out split with it."""
    return SqliteStore(write_sqlite(materialize(prepared, splits, key, users), path))
