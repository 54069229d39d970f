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

A refill writes a new generation beside the old one, switches `meta.generation` to it in one
Lua step that first checks it still holds the lock, then deletes the old: a reader sees the old
contents or the new, never a mix (a lookup reads the generation and the rows in one MULTI/EXEC
and retries if it changed).

Why not Feast: see docs/serving.md (its online store keeps the latest value per key; the model
reads each user's ordered event list).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
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
LOCK_TTL_MS = 30_000  # a writer that dies frees the lock after this (a live one renews it)
WRITE_TIMEOUT_S = 10.0  # how long a writer waits for the lock (as the SQLite store's timeout)
WRITE_CHUNK = 5_000  # values per pipelined round trip while refilling
LOOKUP_RETRIES = 5  # a lookup that raced a refill's switch reads again
META_KEY, LOCK_KEY, SEQ_KEY = PREFIX + "meta", PREFIX + "lock", PREFIX + "seq"
LAST_GENERATION_KEY = PREFIX + "last_generation"
# frees (renews) the lock only when this writer still holds it (its token), in one step
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) end")  # fmt: skip
# a refill's switch to its new generation, only while it still holds the lock: KEYS lock, meta,
# seq; ARGV token, seq, then meta's field/value pairs
_SWITCH = """if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[2], unpack(ARGV, 3))
redis.call('set', KEYS[3], ARGV[2])
return 1"""


def is_redis(spec: str) -> bool:
    """Whether a `serving.store` value names a Redis server rather than a SQLite file."""
    return spec.strip().lower().startswith(("redis://", "rediss://", "unix://"))


def client(url: str) -> Any:
    """A client of `url`; the password, when the server needs one, from PASSWORD_ENV (a URL
    in params.yaml would put it in git)."""
    import redis

    extra = {"password": os.environ[PASSWORD_ENV]} if os.environ.get(PASSWORD_ENV) else {}
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, **extra)


def _errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError,)


def shown(url: str) -> str:
    """The URL without its password (in the user part or a `password=` query), for messages
    and /health."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[-1]  # as written: an IPv6 host keeps its brackets
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() == "password" for k, _ in query):
        hidden = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return parts.geturl()


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


class Held:
    """A held write lock, renewed by a background thread until released, so long work (a refill
    of tens of millions of events, a slow event-log write) keeps it; if it is lost anyway (the
    server restarted, a network partition longer than LOCK_TTL_MS), `check` says so."""

    def __init__(self, r: Any, token: str, where: str, what: str) -> None:
        self.r, self.token, self.where, self.what = r, token, where, what
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name="store-lock")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_TTL_MS / 3000):
            try:
                if not self.r.eval(_RENEW, 1, LOCK_KEY, self.token, LOCK_TTL_MS):
                    self.lost.set()
                    return
            except _errors():
                self.lost.set()
                return

    def check(self) -> None:
        """Raises StoreError when the lock is no longer this writer's."""
        if self.lost.is_set():
            raise StoreError(f"online store {self.where}: the write lock was lost while it was "
                             f"to {self.what}")  # fmt: skip

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        self.r.eval(_RELEASE, 1, LOCK_KEY, self.token)


@contextmanager
def locked(r: Any, where: str, what: str) -> Iterator[Held]:
    """Holds the store's write lock (waiting up to WRITE_TIMEOUT_S for another writer).

    Raises:
        StoreError: another writer held the lock longer than WRITE_TIMEOUT_S.
    """
    token = secrets.token_hex(16)
    deadline = time.monotonic() + WRITE_TIMEOUT_S
    while not r.set(LOCK_KEY, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() > deadline:
            raise StoreError(f"online store {where} could not {what}: another writer held it "
                             f"for over {WRITE_TIMEOUT_S:.0f} s")  # fmt: skip
        time.sleep(0.01)
    held = Held(r, token, where, what)
    try:
        yield held
    finally:
        held.release()


class RedisStore:
    """The store on a Redis server (thread-safe: redis-py's client keeps a connection pool, and
    makes a new one in a forked worker)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = shown(url)
        self._redis = client(url)
        try:
            meta = {k.decode(): v.decode() for k, v in self._redis.hgetall(META_KEY).items()}
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

    def _generation(self) -> str:
        gen = self._redis.hget(META_KEY, "generation")
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
                pipe.hget(META_KEY, "generation")
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
            with self._locked("take the events") as held:
                if then is not None:
                    then()
                held.check()  # still ours: no refill started meanwhile
                gen = self._generation()
                last = int(self._redis.incrby(SEQ_KEY, len(rows)))
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
            pipe = self._redis.pipeline(transaction=False)
            for key in self._redis.scan_iter(match=events_key(gen, "*"), count=1000):
                pipe.llen(key)
            total = sum(int(n) for n in pipe.execute())
        except _errors() as e:
            raise StoreError(f"online store {self.location}: {e}") from e
        return total


def write_redis(contents: StoreContents, url: str,
                more_events: Callable[[], pd.DataFrame] | None = None) -> str:  # fmt: skip
    """Fills the Redis store at `url` with `contents` and then `more_events()` under the write
    lock, as serving.store.write_store does for SQLite; returns `url`. The new generation is
    written beside the live one, switched to only while the lock is still held, and the old
    one deleted before the lock is released.

    Raises:
        StoreError: Redis cannot be reached or written, or the lock was lost.
    """
    r = client(url)
    where = shown(url)
    try:
        with locked(r, where, "be refilled") as held:
            old = r.hget(META_KEY, "generation")
            old = old.decode() if old is not None else None
            _drop_generations(r, keep=old)  # what a refill that died left behind
            gen = str(int(r.incr(LAST_GENERATION_KEY)))
            try:
                _fill_generation(r, gen, contents, more_events, held)
            except BaseException:
                _drop_generations(r, only=gen)
                raise
            if old is not None:
                _drop_generations(r, only=old)
    except _errors() as e:
        raise StoreError(f"online store {where} could not be written ({e})") from e
    return url


def _fill_generation(r: Any, gen: str, contents: StoreContents,
                     more_events: Callable[[], pd.DataFrame] | None, held: Held) -> None:  # fmt: skip
    """Writes generation `gen` and switches meta to it (under `held`)."""
    source = contents.source
    extra = more_events() if more_events is not None else None
    events = contents.events
    if extra is not None and len(extra):
        source += f", event log: {len(extra)} events"
        events = pd.concat([events, event_rows(extra)], ignore_index=True)
    rows = contents.users[list(USER_COLUMNS)].itertuples(index=False, name=None)
    items = [(u, _user_value(tuple(rest))) for u, *rest in rows]
    for start in range(0, len(items), WRITE_CHUNK):
        r.hset(users_key(gen), mapping=dict(items[start : start + WRITE_CHUNK]))
        held.check()
    by_user: dict[str, list[str]] = {}
    columns = events[list(EVENT_COLUMNS)].itertuples(index=False, name=None)
    for seq, (user, item, kind, ts) in enumerate(columns, start=1):
        by_user.setdefault(user, []).append(_event_value(seq, item, kind, int(ts)))
    pipe, pending = r.pipeline(transaction=False), 0
    for user, packed in by_user.items():
        pipe.rpush(events_key(gen, user), *packed)
        pending += len(packed)
        if pending >= WRITE_CHUNK:
            pipe.execute()
            held.check()
            pending = 0
    pipe.execute()
    meta = {"format": str(FORMAT), "key_check": contents.key_check, "source": source,
            "generation": gen}  # fmt: skip
    pairs = [x for kv in meta.items() for x in kv]
    if not r.eval(_SWITCH, 3, LOCK_KEY, META_KEY, SEQ_KEY, held.token, len(events), *pairs):
        held.lost.set()
        held.check()


def _drop_generations(r: Any, keep: str | None = None, only: str | None = None) -> None:
    """Deletes one generation's keys (`only`), or every generation's but `keep`'s."""
    pattern = f"{PREFIX}g{only}:*" if only is not None else f"{PREFIX}g[0-9]*"
    mine = f"{PREFIX}g{keep}:" if keep is not None else None
    batch = []
    for key in r.scan_iter(match=pattern, count=1000):
        if only is not None or mine is None or not key.decode(errors="replace").startswith(mine):
            batch.append(key)
        if len(batch) >= 1000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)
