"""The online store on Redis, for several serving machines: the same rows and the same promises
as the SQLite store (serving/store.py), kept in a Redis server that every replica reaches.

`serving.store: redis://127.0.0.1:6379/0` selects it. Layout, under the prefix `recfusion:`:

- `meta` (hash): format, key_check, source, generation;
- `g<generation>:users` (hash): user id -> JSON [pseudonym, gender, region, age_norm];
- `g<generation>:ev:<user id>` (list): the user's events in arrival order, each JSON
  [seq, item_id, event_type, timestamp ns]; `seq` (a counter) orders events across users;
- `lock` (string with an expiry): the write lock. A refill, an append and a forget each hold it,
  as SQLite's single writer does: an append's event-log write happens under it, and a refill
  reads the event log under it, so no accepted event is lost or counted twice.

A refill writes a new generation beside the old one and switches `meta.generation` in one
MULTI/EXEC, then deletes the old: a reader sees the old contents or the new, never a mix (a
lookup reads the generation and the rows in one transaction and retries if it changed).

Why not Feast: see docs/serving.md (its online store keeps the latest value per key; the model
reads each user's ordered event list).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from recfusion.serving.store import (
    EVENT_COLUMNS,
    FORMAT,
    USER_COLUMNS,
    StoreContents,
    StoreError,
    UserRecords,
    event_rows,
)

PASSWORD_ENV = "RECFUSION_REDIS_PASSWORD"
PREFIX = "recfusion:"
LOCK_TTL_MS = 30_000  # a writer that dies frees the lock after this; a refill renews it
WRITE_TIMEOUT_S = 10.0  # how long a writer waits for the lock (as the SQLite store's timeout)
WRITE_CHUNK = 5_000  # values per pipelined round trip while refilling
LOOKUP_RETRIES = 5  # a lookup that raced a refill's switch reads again
# frees the lock only when this writer still holds it (its token), in one step
META_KEY, LOCK_KEY, SEQ_KEY = PREFIX + "meta", PREFIX + "lock", PREFIX + "seq"
LAST_GENERATION_KEY = PREFIX + "last_generation"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) end")  # fmt: skip


def is_redis(spec: str) -> bool:
    """Whether a `serving.store` value names a Redis server rather than a SQLite file."""
    return spec.strip().lower().startswith(("redis://", "rediss://", "unix://"))


def _client(url: str) -> Any:
    """A client of `url`; the password, when the server needs one, from PASSWORD_ENV (a URL
    in params.yaml would put it in git)."""
    import redis

    extra = {"password": os.environ[PASSWORD_ENV]} if os.environ.get(PASSWORD_ENV) else {}
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, **extra)


def _errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError,)


def shown(url: str) -> str:
    """The URL without a password, for messages and /health."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}{port}").geturl()


def users_key(gen: str) -> str:
    return f"{PREFIX}g{gen}:users"


def events_key(gen: str, user_id: str) -> str:
    return f"{PREFIX}g{gen}:ev:{user_id}"


def _user_value(row: tuple) -> str:
    pseudonym, gender, region, age = row
    age = None if age is None or (isinstance(age, float) and math.isnan(age)) else float(age)
    return json.dumps([pseudonym, gender, region, age])


def _event_value(seq: int, item: str, kind: str, ts: int) -> str:
    return json.dumps([seq, item, kind, ts])


@contextmanager
def locked(r: Any, where: str, what: str) -> Iterator[Callable[[], None]]:
    """Holds the store's write lock (waiting up to WRITE_TIMEOUT_S); yields a function that
    renews it, for long work.

    Raises:
        StoreError: another writer held the lock longer than WRITE_TIMEOUT_S, or the lock
            expired while held.
    """
    token = secrets.token_hex(16)
    deadline = time.monotonic() + WRITE_TIMEOUT_S
    while not r.set(LOCK_KEY, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() > deadline:
            raise StoreError(f"online store {where} could not {what}: another writer held it "
                             f"for over {WRITE_TIMEOUT_S:.0f} s")  # fmt: skip
        time.sleep(0.01)

    def renew() -> None:
        if not r.eval(_RENEW, 1, LOCK_KEY, token, LOCK_TTL_MS):
            raise StoreError(f"online store {where}: the write lock expired while it was to {what}")

    try:
        yield renew
    finally:
        r.eval(_RELEASE, 1, LOCK_KEY, token)


class RedisStore:
    """The store on a Redis server (thread-safe: redis-py's client keeps a connection pool, and
    makes a new one in a forked worker)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = shown(url)
        self._redis = _client(url)
        try:
            meta = {k.decode(): v.decode() for k, v in self._redis.hgetall(self._meta).items()}
        except _errors() as e:
            raise StoreError(f"online store {self.location} cannot be reached ({e}): start "
                             "Redis (`recfusion store-server` for a local one), or set "
                             "serving.store") from e  # fmt: skip
        if not meta:
            raise StoreError(f"online store {self.location} holds no recfusion store: run "
                             "`dvc repro` (the materialize stage fills it; `dvc repro --force "
                             "--single-item materialize` when DVC says it is up to date)")  # fmt: skip
        if meta.get("format") != str(FORMAT):
            raise StoreError(f"online store {self.location} has format {meta.get('format')!r}, "
                             f"this recfusion reads {FORMAT}: run `dvc repro`")  # fmt: skip
        self.key_check = meta.get("key_check", "")
        self.source = meta.get("source", "")

    _meta = META_KEY
    _seq = SEQ_KEY

    def _generation(self) -> str:
        gen = self._redis.hget(self._meta, "generation")
        if gen is None:
            raise StoreError(f"online store {self.location} was emptied: run `dvc repro`")
        return gen.decode()

    def lookup(self, user_ids: Sequence[str]) -> UserRecords:
        """The rows of `user_ids` (unknown ids have none)."""
        ids = list(dict.fromkeys(user_ids))
        try:
            for _ in range(LOOKUP_RETRIES):
                gen = self._generation()
                pipe = self._redis.pipeline(transaction=True)
                pipe.hget(self._meta, "generation")
                if ids:
                    pipe.hmget(users_key(gen), ids)
                for user in ids:
                    pipe.lrange(events_key(gen, user), 0, -1)
                got = pipe.execute()
                if got[0] is not None and got[0].decode() == gen:
                    break
            else:
                raise StoreError(f"online store {self.location} kept changing while read")
        except _errors() as e:
            raise StoreError(f"online store {self.location}: {e}") from e
        users, events = [], []
        if ids:
            for user, value in zip(ids, got[1], strict=True):
                if value is not None:
                    users.append((user, *json.loads(value)))
            for user, values in zip(ids, got[2:], strict=True):
                events += [(user, *json.loads(v)) for v in values]
        events.sort(key=lambda row: row[1])  # arrival order across users (seq)
        return UserRecords(
            pd.DataFrame(users, columns=list(USER_COLUMNS)),
            pd.DataFrame([(u, i, k, t) for u, _, i, k, t in events], columns=list(EVENT_COLUMNS)),
        )

    def _locked(self, what: str) -> Any:
        return locked(self._redis, self.location, what)

    def append(self, events: pd.DataFrame, then: Callable[[], object] | None = None) -> int:
        """Appends canonical event rows (their order kept) and returns how many; `then` (e.g.
        writing the event log) runs first, under the write lock, so when it fails nothing is
        appended; when the append then fails, the caller undoes `then`'s effect.

        Raises:
            StoreError: Redis cannot be reached or written, or the lock stayed taken.
        """
        rows = event_rows(events)
        try:
            with self._locked("take the events") as renew:
                if then is not None:
                    then()
                renew()  # still ours: no refill started meanwhile
                gen = self._generation()
                last = int(self._redis.incrby(self._seq, len(rows)))
                pipe = self._redis.pipeline(transaction=True)
                for seq, (user, item, kind, ts) in enumerate(
                    rows[list(EVENT_COLUMNS)].itertuples(index=False, name=None),
                    start=last - len(rows) + 1,
                ):
                    pipe.rpush(events_key(gen, user), _event_value(seq, item, kind, int(ts)))
                pipe.execute()
        except _errors() as e:
            raise StoreError(f"online store {self.location} could not take the events: {e}") from e
        return len(rows)

    def forget(self, user_id: str) -> tuple[int, int]:
        """Deletes the user's row and events: (user rows, events) deleted. Redis frees the
        memory; an append-only file or snapshot of the server keeps them until it is rewritten
        (docs/serving.md says how).

        Raises:
            StoreError: Redis cannot be reached or written.
        """
        try:
            with self._locked("forget the user"):
                gen = self._generation()
                pipe = self._redis.pipeline(transaction=True)
                pipe.hdel(users_key(gen), user_id)
                pipe.llen(events_key(gen, user_id))
                pipe.delete(events_key(gen, user_id))
                users, events, _ = pipe.execute()
        except _errors() as e:
            raise StoreError(f"online store {self.location} could not forget the user: {e}") from e
        return int(users), int(events)

    def count_events(self) -> int:
        """How many events the store holds (a scan over the users' lists)."""
        try:
            gen = self._generation()
            total = 0
            pipe = self._redis.pipeline(transaction=False)
            keys = list(self._redis.scan_iter(match=events_key(gen, "*"), count=1000))
            for key in keys:
                pipe.llen(key)
            for n in pipe.execute():
                total += int(n)
        except _errors() as e:
            raise StoreError(f"online store {self.location}: {e}") from e
        return total


def write_redis(contents: StoreContents, url: str,
                more_events: Callable[[], pd.DataFrame] | None = None) -> str:  # fmt: skip
    """Fills the Redis store at `url` with `contents` and then `more_events()` under the write
    lock, as serving.store.write_store does for SQLite; returns `url`.

    Raises:
        StoreError: Redis cannot be reached or written.
    """
    r = _client(url)
    where = shown(url)
    try:
        with locked(r, where, "be refilled") as renew:
            old = r.hget(META_KEY, "generation")
            gen = str(int(r.incr(LAST_GENERATION_KEY)))
            try:
                source = contents.source
                extra = more_events() if more_events is not None else None
                events = contents.events
                if extra is not None and len(extra):
                    source += f", event log: {len(extra)} events"
                    events = pd.concat([events, event_rows(extra)], ignore_index=True)
                users = contents.users
                values = {u: _user_value(row) for u, *row in
                          users[list(USER_COLUMNS)].itertuples(index=False, name=None)}  # fmt: skip
                items = list(values.items())
                for start in range(0, len(items), WRITE_CHUNK):
                    r.hset(users_key(gen), mapping=dict(items[start : start + WRITE_CHUNK]))
                    renew()
                pipe, pending = r.pipeline(transaction=False), 0
                by_user: dict[str, list[str]] = {}
                for seq, (user, item, kind, ts) in enumerate(
                    events[list(EVENT_COLUMNS)].itertuples(index=False, name=None), start=1
                ):
                    by_user.setdefault(user, []).append(_event_value(seq, item, kind, int(ts)))
                for user, packed in by_user.items():
                    pipe.rpush(events_key(gen, user), *packed)
                    pending += len(packed)
                    if pending >= WRITE_CHUNK:
                        pipe.execute()
                        renew()
                        pending = 0
                pipe.execute()
                renew()
                meta = {"format": str(FORMAT), "key_check": contents.key_check,
                        "source": source, "generation": gen}  # fmt: skip
                switch = r.pipeline(transaction=True)
                switch.hset(META_KEY, mapping=meta)
                switch.set(SEQ_KEY, len(events))
                switch.execute()
            except BaseException:
                _drop_generations(r, keep=old.decode() if old is not None else None)
                raise
        _drop_generations(r, keep=gen)
    except _errors() as e:
        raise StoreError(f"online store {where} could not be written ({e})") from e
    return url


def _drop_generations(r: Any, keep: str | None) -> None:
    """Deletes every generation's keys but `keep`'s (the old one after a switch, or the
    half-written one after a failure)."""
    mine = f"{PREFIX}g{keep}:" if keep is not None else None
    batch = []
    for key in r.scan_iter(match=f"{PREFIX}g[0-9]*", count=1000):
        if mine is None or not key.decode(errors="replace").startswith(mine):
            batch.append(key)
        if len(batch) >= 1000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)
