"""Stop messages a user can act on: they name the user's own columns (never a derived `ref_*`
column), show up to five bad values, name the params key and its limit, and say what to change;
a run that stopped reports rows as "would be quarantined", since it wrote none."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recfusion.data.schema import UNPARSED
from recfusion.stages import validate
from recfusion.validation.report import to_html, to_markdown
from tests.data.test_validation import NOW, copy_tables, run_validation

# data/raw/source.json of the files source with a column map: the user calls item_id "sku"
FILES_SOURCE = {
    "source": "files",
    "params": {"columns": {"events": {"sku": "item_id"}}, "timestamp_unit": "iso"},
}


def line_about(result: validate.ValidationResult, *words: str) -> str:
    """The one stop reason holding every word in `words`."""
    lines = [r for r in result.summary["stop_reasons"] if all(w in r for w in words)]
    assert len(lines) == 1, result.summary["stop_reasons"]
    return lines[0]


def test_unknown_item_speaks_of_the_users_column_and_shows_the_value(
    tmp_path: Path, tiny_tables
) -> None:
    t = copy_tables(tiny_tables)
    t["events"].loc[t["events"].index[0], "item_id"] = "phantom"
    result = run_validation(tmp_path, t, on_failure="stop", source=FILES_SOURCE)
    line = line_about(result, "events:", "phantom")
    assert "'item_id' (your 'sku')" in line
    assert "1 of 6,503 rows" in line and "not in the items table" in line
    assert "ingest.files.items" in line  # what to change: the items file, or the events
    assert "ref_" not in validate.stop_message(result)


def test_at_most_five_bad_values_are_shown(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"].loc[t["events"].index[:7], "event_type"] = [f"kind{i}" for i in range(7)]
    line = line_about(run_validation(tmp_path, t, on_failure="stop"), "event_type")
    assert sum(f"'kind{i}'" in line for i in range(7)) == 5
    assert "and 2 more" in line
    assert "view, click, add_to_cart, purchase, rating" in line  # the values that are accepted
    assert "expect_column_values_to_be_in_set(event_type)" in line  # the Data Docs' name


def test_duplicates_name_the_limit_and_the_fix(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    ev = t["events"]
    t["events"] = pd.concat([ev, ev.head(len(ev) // 10)], ignore_index=True)
    result = run_validation(tmp_path, t, on_failure="quarantine")
    line = line_about(result, "validation.max_duplicate_frac")
    # the first 650 events appear twice: 1,300 of the 7,153 rows share their key with another
    assert "1,300 of 7,153 rows (18.2%)" in line
    assert "more than validation.max_duplicate_frac (0.01)" in line
    assert f"'{ev.loc[0, 'user_id']}'" in line  # an example key, as the user's values
    assert "and 645 more" in line  # 650 repeated keys: five shown, the rest counted
    assert "remove the repeated events or raise validation.max_duplicate_frac" in line


def test_empty_events_name_the_limit_and_the_file(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"] = t["events"].head(0)
    result = run_validation(tmp_path, t, on_failure="quarantine", source=FILES_SOURCE)
    line = line_about(result, "events:", "validation.min_rows.events")
    assert "the table is empty, fewer rows than validation.min_rows.events (1)" in line
    assert "ingest.files.events" in line


def rating_of_nine(t: dict[str, pd.DataFrame]) -> None:
    t["events"].loc[t["events"].index[0], ["event_type", "value"]] = ["rating", 9.0]


def signup_tomorrow(t: dict[str, pd.DataFrame]) -> None:
    t["users"].loc[0, "signup_ts"] = NOW + pd.Timedelta(days=1)


def fourth_user_without_id(t: dict[str, pd.DataFrame]) -> None:
    t["users"].loc[3, "user_id"] = None


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (rating_of_nine, ("9.0", "validation.rating_min..validation.rating_max (0.0..5.0)")),
        (signup_tomorrow, ("'signup_ts'", "in the future", "2026-06-02")),
        (fourth_user_without_id, ("1 of 300 rows", "no 'user_id'", "row 4")),
    ],
)
def test_row_faults_in_stop_mode_show_values_and_bounds(
    tmp_path: Path, tiny_tables, fault, words: tuple[str, ...]
) -> None:
    t = copy_tables(tiny_tables)
    fault(t)
    line_about(run_validation(tmp_path, t, on_failure="stop"), *words)


def test_too_many_bad_rows_list_what_is_wrong(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"].loc[t["events"].index[: len(t["events"]) // 5], "event_type"] = "teleport"
    result = run_validation(tmp_path, t, on_failure="quarantine")
    message = validate.stop_message(result)
    assert "1,300 of 6,503 rows (20.0%)" in message
    assert "more than validation.max_bad_row_frac (0.05)" in message
    assert "'teleport'" in message  # the row-level failure behind the share, with its values
    assert "fix those rows or raise validation.max_bad_row_frac" in message


def test_a_stopped_run_says_would_be_quarantined(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["items"].loc[0, "price"] = -1.0
    result = run_validation(tmp_path, t, on_failure="stop")
    items = result.summary["suites"]["items"]
    assert items["rows_quarantined"] == 0  # nothing was written
    assert items["rows_would_be_quarantined"] == 1
    for page in (to_markdown("x", result.summary), to_html("x", result.summary)):
        assert "would be quarantined" in page
    assert "nothing was written" in validate.stop_message(result)
    validate.write_outputs(
        result,
        docs_dir=tmp_path / "docs",
        reports_dir=tmp_path / "reports",
        validated_dir=tmp_path / "validated",
        quarantine_dir=tmp_path / "quarantine",
    )
    metrics = json.loads((tmp_path / "reports/validation.json").read_text())
    assert metrics["items_rows_quarantined"] == 0
    assert metrics["items_rows_would_be_quarantined"] == 1
    assert not (tmp_path / "quarantine").exists()


def test_an_unread_value_is_one_reason_not_two(tmp_path: Path, tiny_tables) -> None:
    # what the files source writes for an event whose timestamp did not parse
    t = copy_tables(tiny_tables)
    t["events"][UNPARSED] = None
    t["events"].loc[7, ["timestamp", UNPARSED]] = [pd.NaT, '{"timestamp": "soon"}']
    result = run_validation(tmp_path, t, on_failure="stop", source=FILES_SOURCE)
    events = [r for r in result.summary["stop_reasons"] if r.startswith("events:")]
    # the empty timestamp it left is no second reason to stop
    assert events == [
        "events: 1 of 6,503 rows has a value that cannot be read: unparseable timestamp in "
        "column 'timestamp': 'soon'; to fix, correct those values in your file; timestamps "
        "are read by ingest.files.timestamp_unit (iso): iso for text, s or ms for epoch numbers"
    ]
