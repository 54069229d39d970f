"""The online store (serving/store.py): what goes in comes out per user in arrival order, and a
missing or foreign store is refused with a message that says what to run."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfusion.privacy import key_check, key_pseudonym
from recfusion.serving.store import (
    StoreContents,
    StoreError,
    event_rows,
    open_store,
    user_rows,
    write_store,
)

KEY = b"k"


def contents() -> StoreContents:
    users = pd.DataFrame({"user_id": ["a", "b"], "gender": ["F", None], "region": ["x", "y"],
                          "age_norm": [0.5, np.nan]})  # fmt: skip
    events = pd.DataFrame({
        "user_id": ["a", "b", "a", "c"],
        "item_id": ["i2", "i1", "i1", "i9"],
        "event_type": ["click", "view", "purchase", "click"],
        # a's second event is earlier in time but later in arrival: arrival order is kept
        "timestamp": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-03"]),
    })  # fmt: skip
    return StoreContents(user_rows(users, KEY), event_rows(events), key_check(KEY), "test")


def test_lookup_returns_each_users_rows_in_arrival_order(store_at: str | Path) -> None:
    store = open_store(write_store(contents(), store_at))
    assert store.key_check == key_check(KEY) and store.source == "test"
    found = store.lookup(["a", "c", "nobody", "a"])
    assert found.users["user_id"].tolist() == ["a"]  # c has events only; nobody has nothing
    assert found.users["pseudonym"].tolist() == [key_pseudonym("a", KEY)]
    assert found.users["age_norm"].tolist() == [0.5] and found.users["gender"].tolist() == ["F"]
    assert found.events[["user_id", "item_id"]].values.tolist() == [
        ["a", "i2"], ["a", "i1"], ["c", "i9"]]  # fmt: skip
    assert found.events["timestamp"].iloc[0] == pd.Timestamp("2026-01-02", tz="UTC").value
    # a missing demographic is kept as the models read it (str() of the cell, build_users)
    b = store.lookup(["b"]).users
    assert b["gender"].tolist() == ["None"] and np.isnan(b["age_norm"].astype(float).iloc[0])


def test_a_new_store_replaces_the_old_one_for_open_readers(store_at: str | Path) -> None:
    path = store_at
    store = open_store(write_store(contents(), path))
    more = contents()
    extra = event_rows(pd.DataFrame({"user_id": ["a"], "item_id": ["i7"], "event_type": ["click"],
                                     "timestamp": pd.to_datetime(["2026-02-01"])}))  # fmt: skip
    write_store(StoreContents(more.users, pd.concat([more.events, extra]), more.key_check, "t"),
                path)  # fmt: skip
    assert store.lookup(["a"]).events["item_id"].tolist() == ["i2", "i1", "i7"]
    if isinstance(path, Path):
        assert [p.name for p in path.parent.iterdir()] == ["s.sqlite"]  # refilled in place
    else:  # the old generation's keys are gone: 3 users' event lists, the users hash
        import redis

        keys = {k.decode() for k in redis.Redis.from_url(path).keys("recfusion:g*")}
        assert keys == {"recfusion:g2:users", "recfusion:g2:ev:a", "recfusion:g2:ev:b",
                        "recfusion:g2:ev:c"}  # fmt: skip


def test_a_missing_or_foreign_file_is_refused_with_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(
        StoreError,
        match=r"does not exist: run `dvc repro` \(the materialize.*--single-item materialize",
    ):
        open_store(tmp_path / "none.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(StoreError, match="unreadable"):
        open_store(junk)
    with pytest.raises(StoreError, match="could not be written"):
        write_store(contents(), junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('format', '99')")
    con.close()
    with pytest.raises(StoreError, match="format '99'"):
        open_store(other)


def test_a_refill_keeps_the_event_log_and_readers_see_old_or_new(
    tmp_path: Path, store_at: str | Path
) -> None:
    from recfusion.data.event_log import read_log
    from recfusion.models.dataset import PreparedData
    from recfusion.serving.events import append_to_log
    from recfusion.serving.store import materialize

    split = lambda users: pd.DataFrame({  # noqa: E731
        "user_id": users, "item_id": "i1", "event_type": "click",
        "timestamp": pd.Timestamp("2026-01-01")})  # fmt: skip
    prepared = PreparedData({"train": split(["a"]), "val": split(["b"]), "test": split(["c"])},
                            pd.DataFrame({"user_id": ["a"], "gender": "F", "region": "x"}),
                            pd.DataFrame(), None)  # type: ignore[arg-type]  # fmt: skip
    assert read_log(tmp_path / "none").empty
    live = split(["d", "e"]).assign(timestamp=pd.Timestamp("2026-02-01", tz="UTC"))
    append_to_log(live.iloc[:1], tmp_path / "log")
    append_to_log(live.iloc[1:], tmp_path / "log")
    path = store_at
    store = open_store(write_store(contents(), path))  # an older store, open in a reader
    write_store(materialize(prepared, ("train", "val", "test"), KEY), path,
                lambda: read_log(tmp_path / "log"))  # fmt: skip
    got = store.lookup(["a", "b", "c", "d", "e"])  # the open reader sees the refilled file
    assert got.events["user_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert "event log: 2 events" in open_store(path).source

    # a refill that fails half-way leaves the old contents
    def broken() -> pd.DataFrame:
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_store(contents(), path, broken)
    assert store.lookup(["e"]).events["user_id"].tolist() == ["e"]


def test_an_append_during_a_refill_waits_and_is_kept_once(
    tmp_path: Path, store_at: str | Path
) -> None:
    """A refill reads the event log under the store's write lock; an append (which writes the
    log under the same lock) waits for it, so the event is neither lost nor counted twice."""
    import threading
    import time

    from recfusion.data.event_log import read_log
    from recfusion.serving.events import append_to_log

    log_dir = tmp_path / "log"
    store = open_store(write_store(contents(), store_at))
    reading = threading.Event()

    def slow_log() -> pd.DataFrame:
        found = read_log(log_dir)
        reading.set()
        time.sleep(0.5)  # the append below arrives now, while the refill holds the lock
        return found

    refill = threading.Thread(target=write_store, args=(contents(), store_at, slow_log))
    refill.start()
    assert reading.wait(10)
    new = pd.DataFrame({"user_id": ["z"], "item_id": ["i5"], "event_type": ["click"],
                        "timestamp": pd.Timestamp("2026-03-01", tz="UTC")})  # fmt: skip
    store.append(new, then=lambda: append_to_log(new, log_dir))
    refill.join()
    assert store.lookup(["z"]).events["item_id"].tolist() == ["i5"]
    assert store.count_events() == len(contents().events) + 1
    # the next refill replays the log: still once
    write_store(contents(), store_at, lambda: read_log(log_dir))
    assert open_store(store_at).lookup(["z"]).events["item_id"].tolist() == ["i5"]


def test_a_redis_store_says_what_is_wrong(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    from recfusion.serving import redis_store
    from tests.workspace import free_port

    with pytest.raises(StoreError, match=r"cannot be reached .*recfusion store-server"):
        open_store(f"redis://127.0.0.1:{free_port()}/0")
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    with pytest.raises(StoreError, match=r"holds no recfusion store: run `dvc repro`"):
        open_store(redis_url)
    store = open_store(write_store(contents(), redis_url))
    # a writer that died holding the lock: others wait, then give up with a 503-able error ...
    r.set(redis_store.LOCK_KEY, "someone", px=600)
    monkeypatch.setattr(redis_store, "WRITE_TIMEOUT_S", 0.2)
    with pytest.raises(StoreError, match="another writer held it"):
        store.forget("a")
    assert store.lookup(["a"]).users["user_id"].tolist() == ["a"]  # reads go on
    time.sleep(0.7)  # ... until the lock expires
    assert store.forget("a") == (1, 2)
    assert "***" in redis_store.shown("redis://u:secret@127.0.0.1:1/0")


def test_a_redis_refill_keeps_its_lock_or_changes_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is renewed while a long refill runs; a refill that lost it anyway (here: the key
    deleted, as an expiry would) neither switches nor deletes the generation that replaced it."""
    import threading

    import redis

    from recfusion.serving import redis_store

    monkeypatch.setattr(redis_store, "LOCK_TTL_MS", 300)
    r = redis.Redis.from_url(redis_url)
    r.flushdb()

    def slow() -> pd.DataFrame:
        time.sleep(1.0)  # three lock lifetimes: only the renewal keeps it
        return pd.DataFrame()

    write_store(contents(), redis_url, slow)
    assert open_store(redis_url).lookup(["a"]).events["item_id"].tolist() == ["i2", "i1"]

    reading, go, failed = threading.Event(), threading.Event(), []

    def stalled() -> pd.DataFrame:
        reading.set()
        go.wait(10)
        return pd.DataFrame()

    def refill_a() -> None:
        try:
            write_store(contents(), redis_url, stalled)
        except StoreError as e:
            failed.append(str(e))

    a = threading.Thread(target=refill_a)
    a.start()
    assert reading.wait(10)
    r.delete(redis_store.LOCK_KEY)  # A's lock is gone; B takes it and refills
    late = event_rows(pd.DataFrame({"user_id": ["z"], "item_id": ["i8"], "event_type": ["view"],
                                    "timestamp": pd.to_datetime(["2026-03-01"])}))  # fmt: skip
    b = contents()
    write_store(StoreContents(b.users, pd.concat([b.events, late]), b.key_check, "B"), redis_url)
    go.set()
    a.join()
    assert failed and "write lock was lost" in failed[0]
    store = open_store(redis_url)
    assert store.source == "B" and store.lookup(["z"]).events["item_id"].tolist() == ["i8"]
    gens = {k.decode().split(":")[1] for k in r.keys("recfusion:g*")}
    assert gens == {r.hget("recfusion:meta", "generation").decode().join(["g", ""])}


def test_urls_are_shown_without_their_password() -> None:
    from recfusion.serving.redis_store import shown

    assert shown("redis://u:secret@127.0.0.1:1/0") == "redis://u:***@127.0.0.1:1/0"
    assert shown("redis://:secret@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert "secret" not in shown("redis://127.0.0.1:6379/0?password=secret&db=1")
    assert shown("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_fresh_clone_runs_materialize() -> None:
    """The store is git-ignored and not a DVC output, so materialize's record must not be in git
    either: a fresh clone with the committed reports would otherwise find the stage up to date
    and serve from a store that does not exist (found by a fresh-clone `make run`)."""
    import subprocess

    import yaml

    from tests.conftest import REPO

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["materialize"]
    assert stage["outs"] == ["reports/materialize.json"]  # cached by DVC: not `cache: false`
    tracked = subprocess.run(["git", "ls-files", "reports/materialize.json", "data/online"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert tracked == ""


def test_a_store_for_some_users_holds_only_their_rows() -> None:
    """The gate's store knows only the test users it asks for (a large shop has millions)."""
    from recfusion.models.dataset import PreparedData
    from recfusion.serving.store import materialize

    split = lambda users: pd.DataFrame({  # noqa: E731
        "user_id": users, "item_id": "i1", "event_type": "click",
        "timestamp": pd.Timestamp("2026-01-01")})  # fmt: skip
    people = pd.DataFrame({"user_id": ["a", "b", "c"], "gender": "F", "region": "x"})
    prepared = PreparedData({"train": split(["a", "b", "c", "a"]), "val": split(["c", "b"])},
                            people, pd.DataFrame(), None)  # type: ignore[arg-type]  # fmt: skip
    some = materialize(prepared, ("train", "val"), KEY, ["c", "a", "c"])
    assert some.users["user_id"].tolist() == ["a", "c"]
    assert some.events["user_id"].tolist() == ["a", "c", "a", "c"]  # split order, then arrival
    every = materialize(prepared, ("train", "val"), KEY)
    assert every.users["user_id"].tolist() == ["a", "b", "c"]
    assert len(every.events) == 6
