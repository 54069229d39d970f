"""Checking posted events (serving/events.py): the events suite's rules, a row and field named in
every refusal, nothing of the request echoed, and a batch written all or nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recfusion.config import load_config
from recfusion.data.event_log import read_log
from recfusion.serving.events import EventError, EventRules, append_to_log, check_events
from tests.conftest import REPO

NOW = pd.Timestamp("2026-12-03 12:00", tz="UTC")
RULES = EventRules.of(load_config(REPO / "params.yaml"), ["i1", "i2"])
GOOD = {"user_id": "u1", "item_id": "i1", "event_type": "click"}


def refused(event: dict, said: str) -> None:
    with pytest.raises(EventError, match=said) as e:
        check_events([GOOD, event], RULES, NOW)
    assert str(e.value).startswith("row 1: ")


def test_a_good_batch_becomes_canonical_events() -> None:
    got = check_events([GOOD, {**GOOD, "item_id": "i2", "event_type": "rating", "value": 4,
                               "timestamp": "2026-12-03T10:15:00+01:00", "session_id": "s"}],
                       RULES, NOW)  # fmt: skip
    assert got["timestamp"].tolist() == [NOW, pd.Timestamp("2026-12-03 09:15", tz="UTC")]
    assert got["value"].tolist()[1] == 4.0 and got["session_id"].tolist() == [None, "s"]


@pytest.mark.parametrize(("event", "said"), [
    ({**GOOD, "item_id": "i9"}, "item_id is not an item"),
    ({**GOOD, "event_type": "wink"}, "event_type must be one of"),
    ({"item_id": "i1", "event_type": "click"}, "user_id is required"),
    ({**GOOD, "user_id": "\ud800"}, "user_id is not valid Unicode"),
    ({**GOOD, "user_id": "u" * 300}, "user_id has 300 characters"),
    ({**GOOD, "colour": "red"}, "unknown field 'colour'"),
    ({**GOOD, "timestamp": "now"}, "timestamp must be an ISO 8601"),
    ({**GOOD, "timestamp": "12/03/2025"}, "timestamp must be an ISO 8601"),
    ({**GOOD, "timestamp": "2026-12-03T10:15:00 PST"}, "timestamp must be an ISO 8601"),
    ({**GOOD, "timestamp": "2026-13-45"}, "not a valid date"),
    ({**GOOD, "timestamp": "2030-01-01T00:00:00Z"}, "in the future"),
    ({**GOOD, "timestamp": "1970-01-01"}, "before 1990"),
    ({**GOOD, "value": True}, "value must be a finite number"),
    ({**GOOD, "value": float("nan")}, "value must be a finite number"),
    ({**GOOD, "value": 10**400}, "value must be a finite number"),
    ({**GOOD, "event_type": "rating", "value": 9}, "a rating's value must be from"),
    ({**GOOD, "event_type": "rating"}, "a rating needs a value"),
])  # fmt: skip
def test_a_bad_event_is_named_by_row_and_field(event: dict, said: str) -> None:
    refused(event, said)


def test_batches_that_are_not_lists_of_events_are_refused() -> None:
    for rows, said in (({"a": 1}, "a list"), ([], "no events"), ([GOOD] * 1001, "at most 1000"),
                       ([GOOD, "x"], "row 1: an event must be an object")):  # fmt: skip
        with pytest.raises(EventError, match=said):
            check_events(rows, RULES, NOW)


def test_the_log_keeps_a_batch_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    days = check_events([{**GOOD, "timestamp": "2026-12-01"}, {**GOOD, "timestamp": "2026-12-02"}],
                        RULES, NOW)  # fmt: skip
    written = append_to_log(days, tmp_path)
    assert [p.parent.name for p in written] == ["day=2026-12-01", "day=2026-12-02"]
    assert read_log(tmp_path)["timestamp"].tolist() == days["timestamp"].tolist()
    calls = []
    real = pd.DataFrame.to_parquet

    def second_day_fails(self, path, *args, **kwargs):  # a full disk on the second file
        calls.append(path)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", second_day_fails)
    with pytest.raises(OSError):
        append_to_log(days, tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.parquet*"))
