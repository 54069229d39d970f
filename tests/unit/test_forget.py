"""Forgetting a user (data/forget.py, serving/forget.py): gone from the online store and the
event log at once, listed by pseudonym only, and dropped by the next ingest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recfusion.config import load_config
from recfusion.data.forget import add_forgotten, drop_forgotten, read_forgotten
from recfusion.privacy import key_check, key_pseudonym
from recfusion.serving.events import append_to_log
from recfusion.serving.forget import forget_user
from recfusion.serving.store import StoreContents, event_rows, open_store, user_rows, write_store
from recfusion.stages import ingest
from tests.conftest import REPO

KEY = b"k"


def events(users: list[str], day: str = "2026-01-02") -> pd.DataFrame:
    return pd.DataFrame({"user_id": users, "item_id": [f"i{n}" for n in range(len(users))],
                         "event_type": "click", "timestamp": pd.Timestamp(day, tz="UTC"),
                         "session_id": None, "value": None})  # fmt: skip


def test_forget_removes_the_user_from_store_and_log_and_lists_a_pseudonym(
    tmp_path: Path, store_at: str | Path
) -> None:
    users = pd.DataFrame({"user_id": ["gone", "stays"], "gender": "F", "region": "x",
                          "age_norm": 0.0})  # fmt: skip
    path = write_store(StoreContents(user_rows(users, KEY), event_rows(events(["gone", "stays",
                                                                               "gone"])),
                                     key_check(KEY), "t"), store_at)  # fmt: skip
    log_dir = tmp_path / "log"
    only_gone = append_to_log(events(["gone", "gone"], "2026-01-03"), log_dir)
    mixed = append_to_log(events(["gone", "stays"], "2026-01-04"), log_dir)
    forget_file = tmp_path / "forgotten.txt"
    done = forget_user("gone", open_store(path), log_dir, forget_file, KEY)
    assert (done.store_users, done.store_events, done.log_rows, done.log_files) == (1, 2, 3, 2)
    assert done.newly_listed and "commit the file" in done.report(forget_file)
    left = open_store(path).lookup(["gone", "stays"])
    assert left.users["user_id"].tolist() == ["stays"] and set(left.events["user_id"]) == {"stays"}
    assert not only_gone[0].exists()
    assert pd.read_parquet(mixed[0])["user_id"].tolist() == ["stays"]
    assert read_forgotten(forget_file) == {key_pseudonym("gone", KEY)}
    assert "gone" not in forget_file.read_text()
    again = forget_user("gone", open_store(path), log_dir, forget_file, KEY)
    assert not again.newly_listed and again.store_events == 0 and again.log_rows == 0


def test_ingest_drops_every_row_of_a_forgotten_user(tmp_path: Path) -> None:
    cfg = load_config(REPO / "params.yaml")
    tables = {
        "users": pd.DataFrame({"user_id": ["a", "b"]}),
        "items": pd.DataFrame({"item_id": ["i1"]}),
        "events": pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["i1"] * 3}),
        "queries": pd.DataFrame({"user_id": ["a", None], "query": ["x", "y"]}),
    }
    file = tmp_path / "f.txt"
    add_forgotten([key_pseudonym("a", KEY)], file)
    got = ingest.run(cfg, tables, read_forgotten(file), KEY)
    assert got.tables["users"]["user_id"].tolist() == ["b"]
    assert got.tables["events"]["user_id"].tolist() == ["b"]
    assert got.tables["queries"]["query"].tolist() == ["y"]  # anonymous queries stay
    assert got.info["forgotten"] == {"users_listed": 1, "rows_dropped": {
        "users": 1, "events": 2, "queries": 1}}  # fmt: skip
    assert got.info["rows"]["events"] == 1
    # nobody listed: the tables pass as they are
    same, dropped = drop_forgotten(tables, frozenset(), KEY)
    assert same is tables and dropped == {}
