"""The event log into training (data/event_log.py, stages/ingest.py, stages/materialize.py): the
next ingest takes every logged batch in, a new shopper gets a users row, the events pass
validation and reach the prepared splits, and materialize then replays only the batches that
arrived after ingest, so each accepted event is in the store exactly once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recfusion.data.event_log import read_log
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
    contents = StoreContents(user_rows(users.head(1), KEY), event_rows(logged([old_user] * 2,
                             items[:2], at)), key_check(KEY), "prepared")  # fmt: skip
    cfg_store = repo_config({"serving": {"store": str(tmp_path / "s.sqlite")}})
    record = materialize.write_outputs(cfg_store, contents, taken.batches, log_dir,
                                       tmp_path / "reports")  # fmt: skip
    assert record["logged_events"] == 1 and record["ingested_batches"] == 2
    store = open_store(tmp_path / "s.sqlite")
    assert store.lookup(["shopper-late"]).events["item_id"].tolist() == items[:1]
    assert store.lookup(["shopper-new"]).events.empty  # prepared holds them, not the replay
    assert len(read_log(log_dir)) == 6 and len(read_log(log_dir, skip=taken.batches)) == 1


def test_the_event_log_is_left_out_when_switched_off(tmp_path: Path) -> None:
    cfg = repo_config({"ingest": {"event_log": False}})
    append_to_log(logged(["u"], ["i"], pd.Timestamp("2026-01-01", tz="UTC")), tmp_path)
    taken = ingest.read_logged(cfg, tmp_path)
    assert taken.events.empty and taken.batches == ()
