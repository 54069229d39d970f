"""The online store (serving/store.py): what goes in comes out per user in arrival order, and a
missing or foreign store is refused with a message that says what to run."""

from __future__ import annotations

import sqlite3
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


def test_lookup_returns_each_users_rows_in_arrival_order(tmp_path: Path) -> None:
    store = open_store(write_store(contents(), tmp_path / "s.sqlite"))
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


def test_a_new_store_replaces_the_old_one_for_open_readers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = open_store(write_store(contents(), path))
    more = contents()
    extra = event_rows(pd.DataFrame({"user_id": ["a"], "item_id": ["i7"], "event_type": ["click"],
                                     "timestamp": pd.to_datetime(["2026-02-01"])}))  # fmt: skip
    write_store(StoreContents(more.users, pd.concat([more.events, extra]), more.key_check, "t"),
                path)  # fmt: skip
    assert store.lookup(["a"]).events["item_id"].tolist() == ["i2", "i1", "i7"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.sqlite"]  # refilled in place


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


def test_a_refill_keeps_the_event_log_and_readers_see_old_or_new(tmp_path: Path) -> None:
    from recfusion.models.dataset import PreparedData
    from recfusion.serving.events import append_to_log, read_log
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
    path = tmp_path / "s.sqlite"
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
