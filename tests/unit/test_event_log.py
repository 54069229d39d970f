"""The event log into training (data/event_log.py, stages/ingest.py, stages/materialize.py): the
next ingest takes every logged batch in, a new shopper gets a users row, the events pass
validation and reach the prepared splits, and materialize then replays only the batches that
arrived after ingest, so each accepted event is in the store exactly once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recfusion.data.event_log import join_log, read_log
from recfusion.data.schema import SPLITS
from recfusion.privacy import key_check
from recfusion.serving.events import append_to_log
from recfusion.serving.store import StoreContents, event_rows, open_store, user_rows
from recfusion.stages import ingest, materialize, prepare, validate
from tests.conftest import REPO, repo_config

KEY = b"k"


def logged(users: list[str], items: list[str], at: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users, "item_id": items, "event_type": "click",
                         "timestamp": [at + pd.Timedelta(minutes=i) for i in range(len(users))],
                         "session_id": None, "value": None})  # fmt: skip


def test_logged_events_reach_training_and_the_store_once(tiny_tables, tmp_path: Path) -> None:
    cfg = repo_config()
    events, users = tiny_tables["events"], tiny_tables["users"]
    at = pd.Timestamp(events["timestamp"].max()).tz_localize("UTC") - pd.Timedelta(hours=2)
    items = events["item_id"].astype(str).unique()[:3].tolist()
    old_user = str(users["user_id"].iloc[0])
    log_dir = tmp_path / "log"
    append_to_log(logged([old_user] * 2, items[:2], at), log_dir)
    append_to_log(logged(["shopper-new"] * 3, items, at), log_dir)

    taken = ingest.read_logged(cfg, log_dir)
    assert len(taken.batches) == 2 and len(taken.events) == 5
    ingested = ingest.run(cfg, tiny_tables, logged=taken)
    assert ingested.info["event_log"] == {"events": 5, "new_users": 1,
                                          "batches": list(taken.batches)}  # fmt: skip
    assert len(ingested.tables["events"]) == len(events) + 5
    new_row = ingested.tables["users"].set_index("user_id").loc["shopper-new"]
    assert new_row["signup_ts"] == at.tz_localize(None) and pd.isna(new_row["gender"])
    assert ingested.tables["events"]["timestamp"].dt.tz is None  # as the source's, naive UTC
    assert ingested.tables["events"]["split"].tail(5).isna().all()  # the source has no splits
    own = {**tiny_tables, "events": events.assign(split="test")}  # a source with its own
    assert set(ingest.run(cfg, own, logged=taken).tables["events"]["split"].tail(5)) == {"train"}
    assert len(tiny_tables["events"]) == len(events)  # the inputs are not modified

    # validation holds nothing of theirs back, and prepare puts their events in the splits
    checked = validate.run(cfg, validate.RawInputs(ingested.tables,
                                                   validate.read_suites(REPO / "expectations")),
                           docs_dir=tmp_path / "docs", now=pd.Timestamp("2030-01-01"))  # fmt: skip
    assert not checked.stopped
    for name in ("users", "events"):
        bad = checked.decisions[name].quarantined
        assert not set(bad["user_id"].astype(str)) & {"shopper-new"}, name
    prepared = prepare.run(cfg, {n: d.clean for n, d in checked.decisions.items()})
    in_splits = pd.concat([prepared.splits[s] for s in SPLITS])
    assert (in_splits["user_id"].astype(str) == "shopper-new").sum() == 3

    # a batch after ingest: the refill replays it alone (the other two are in data/prepared)
    append_to_log(logged(["shopper-late"], items[:1], at + pd.Timedelta(hours=1)), log_dir)
    known = pd.concat([users.head(1), pd.DataFrame({"user_id": ["shopper-new"]})])
    cfg_store = repo_config({"serving": {"store": str(tmp_path / "s.sqlite")}})

    def refill(who: pd.DataFrame) -> dict:
        contents = StoreContents(user_rows(who, KEY), event_rows(logged([old_user] * 2, items[:2],
                                 at)), key_check(KEY), "prepared")  # fmt: skip
        return materialize.write_outputs(cfg_store, contents, taken.batches, log_dir,
                                         tmp_path / "reports")  # fmt: skip

    record = refill(known)
    assert record["logged_events"] == 1 and record["ingested_batches"] == 2
    store = open_store(tmp_path / "s.sqlite")
    assert store.lookup(["shopper-late"]).events["item_id"].tolist() == items[:1]
    assert store.lookup(["shopper-new"]).events.empty  # prepared holds them, not the replay
    assert len(read_log(log_dir)) == 6 and len(read_log(log_dir, skip=taken.batches)) == 1
    # had prepare dropped the new shopper (prepare.missing: drop and an id-only row), their
    # ingested events would come back from the log rather than leave the store
    record = refill(users.head(1))
    assert record["logged_events"] == 4
    assert store.lookup(["shopper-new"]).events["item_id"].tolist() == items


def test_logged_events_keep_the_sources_types_and_splits() -> None:
    """A source with zoned timestamps, its own int and bool columns, and predefined splits."""
    events = pd.DataFrame({"user_id": ["a"], "item_id": ["i"], "event_type": ["click"],
                           "timestamp": pd.to_datetime(["2026-01-01"]).tz_localize("Europe/Paris"),
                           "value": [None], "session_id": [None], "split": ["test"],
                           "shop": [3]})  # fmt: skip
    users = pd.DataFrame({"user_id": ["a"], "age": [30], "gender": ["F"], "region": ["x"],
                          "signup_ts": pd.to_datetime(["2025-01-01"]), "loyal": [True]})  # fmt: skip
    out, added = join_log({"events": events, "users": users},
                          logged(["a", "b"], ["i", "i"], pd.Timestamp("2026-02-01", tz="UTC")),
                          split="train")  # fmt: skip
    assert added == {"events": 2, "new_users": 1}
    ev, us = out["events"], out["users"]
    assert (
        str(ev["timestamp"].dt.tz) == "Europe/Paris" and ev["split"].tolist()[1:] == ["train"] * 2
    )
    assert str(ev["shop"].dtype) == "Int64" and ev["shop"].isna().sum() == 2
    assert str(us["loyal"].dtype) == "boolean" and pd.isna(us["loyal"].iloc[1])  # not True
    assert str(us["age"].dtype) == "Int64" and us["signup_ts"].dtype == "datetime64[ns]"
    assert us["signup_ts"].iloc[1] == pd.Timestamp("2026-02-01 00:01")  # b's first, naive UTC
    assert len(events) == 1 and str(users["age"].dtype) == "int64"  # inputs unchanged


def test_the_event_log_is_left_out_when_switched_off(tmp_path: Path) -> None:
    cfg = repo_config({"ingest": {"event_log": False}})
    append_to_log(logged(["u"], ["i"], pd.Timestamp("2026-01-01", tz="UTC")), tmp_path)
    taken = ingest.read_logged(cfg, tmp_path)
    assert taken.events.empty and taken.batches == ()
