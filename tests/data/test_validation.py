"""GX suites: pass on good synthetic and MovieLens data, fail on each known-bad fixture with the
failing expectation named; quarantine conserves rows; Data Docs link every suite."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from recfusion.config import FilesConfig, MovieLensConfig
from recfusion.data import files, movielens
from recfusion.data.schema import UNPARSED
from recfusion.stages import prepare, validate, validate_prepared
from tests.conftest import REPO, repo_config
from tests.movielens_fixture import write_grouplens

NOW = pd.Timestamp("2026-06-01")
SUITES = REPO / "expectations"


def run_validation(
    tmp_path: Path, tables, on_failure: str = "quarantine", source=None, **overrides
):
    cfg = repo_config({"validation": {"on_failure": on_failure, **overrides}})
    inputs = validate.RawInputs(tables, validate.read_suites(SUITES), source or {})
    return validate.run(cfg, inputs, docs_dir=tmp_path / "docs", now=NOW)


def copy_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v.copy() for k, v in tables.items()}


def reasons_of(result, table: str) -> dict[str, str]:
    q = result.decisions[table].quarantined
    key = "user_id" if table == "users" else "item_id" if table == "items" else None
    return dict(zip(q[key], q["reason"], strict=True)) if key else {}


def test_good_synthetic_data_passes_every_suite(tmp_path: Path, tiny_tables) -> None:
    result = run_validation(tmp_path, tiny_tables)
    assert result.summary["success"] and not result.stopped
    for name, s in result.summary["suites"].items():
        assert s["success"], (name, s["failed"])
        assert s["rows_in"] == s["rows_clean"] == len(tiny_tables[name])
    index = (tmp_path / "docs" / "index.html").read_text()
    for name in ("users", "items", "events", "queries"):
        assert f"validations/{name}/" in index, name
        assert (tmp_path / "docs" / result.summary["suites"][name]["docs"]).is_file()


def test_good_movielens_data_passes(tmp_path: Path) -> None:
    tables = movielens.load(MovieLensConfig(str(write_grouplens(tmp_path / "ml")), "auto"))
    result = run_validation(tmp_path, tables)
    assert result.summary["success"], result.summary["stop_reasons"]


def test_row_level_faults_are_quarantined_with_named_reasons(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    users, items, ev, q = t["users"], t["items"], t["events"], t["queries"]
    users.loc[0, "age"] = 150
    users.loc[1, "signup_ts"] = pd.Timestamp("2030-01-01")
    items.loc[0, "price"] = -5.0
    items.loc[1, "title"] = ""
    items.loc[2, "category"] = None
    i = ev.index
    ev.loc[i[0], "user_id"] = "ghost"
    ev.loc[i[1], "item_id"] = "phantom"
    ev.loc[i[2], "event_type"] = "teleport"
    ev.loc[i[3], "timestamp"] = pd.NaT
    ev.loc[i[4], "timestamp"] = pd.Timestamp("2031-01-01")
    ev.loc[i[5], ["event_type", "value"]] = ["rating", 9.0]
    ev.loc[i[6], "user_id"] = None
    q.loc[q.index[0], "query"] = ""
    q.loc[q.index[1], "query"] = "x" * 500
    q.loc[q.index[2], "clicked_item_id"] = "phantom"
    result = run_validation(tmp_path, t)
    assert not result.stopped, result.summary["stop_reasons"]
    assert not result.summary["success"]

    u = reasons_of(result, "users")
    assert "expect_column_values_to_be_between(age)" in u[users.loc[0, "user_id"]]
    assert "expect_column_values_to_be_between(signup_ts)" in u[users.loc[1, "user_id"]]
    it = reasons_of(result, "items")
    assert "expect_column_values_to_be_between(price)" in it[items.loc[0, "item_id"]]
    assert "expect_column_value_lengths_to_be_between(title)" in it[items.loc[1, "item_id"]]
    assert "expect_column_values_to_not_be_null(category)" in it[items.loc[2, "item_id"]]

    qe = result.decisions["events"].quarantined
    reasons = " | ".join(qe["reason"])
    for expected in (
        "expect_column_values_to_be_in_set(ref_user_known)",
        "expect_column_values_to_be_in_set(ref_item_known)",
        "expect_column_values_to_be_in_set(event_type)",
        "expect_column_values_to_not_be_null(timestamp)",
        "expect_column_values_to_be_between(timestamp)",
        "expect_column_values_to_be_between(value)",
        "expect_column_values_to_not_be_null(user_id)",
    ):
        assert expected in reasons, expected
    assert "ref_user_known" not in qe.columns  # derived columns stay internal
    qq = " | ".join(result.decisions["queries"].quarantined["reason"])
    assert "expect_column_value_lengths_to_be_between(query)" in qq
    assert "expect_column_values_to_be_in_set(ref_clicked_item_known)" in qq


@pytest.mark.parametrize("show", [False, True])
def test_summary_examples_show_a_person_only_when_asked(
    tmp_path: Path, tiny_tables, show: bool
) -> None:
    """The summary goes to MLflow with the Data Docs: by default a bad row is its row number and
    the checked column, never the rest of the person (privacy.show_examples)."""
    t = copy_tables(tiny_tables)
    t["users"].loc[3, "age"] = 150
    t["events"].loc[t["events"].index[0], "user_id"] = "ghost"
    cfg = repo_config({"privacy": {"show_examples": show}})
    inputs = validate.RawInputs(t, validate.read_suites(SUITES), {})
    summary = validate.run(cfg, inputs, docs_dir=tmp_path / "docs", now=NOW).summary
    (age,) = [f for f in summary["suites"]["users"]["failed"] if "(age)" in f["expectation"]]
    (ghost,) = [f for f in summary["suites"]["events"]["failed"] if "ref_user" in f["expectation"]]
    person = t["users"].loc[3]
    if show:
        assert age["examples"][0]["user_id"] == person["user_id"]
        assert age["examples"][0]["region"] == person["region"]
    else:
        assert age["examples"] == [{"row": 4, "age": 150}]
        # the events of the held-back user fail too: named by the checked column alone
        assert ghost["examples"][0] == {"row": 1, "user_id": "ghost"}
        assert all(set(e) == {"row", "user_id"} for e in ghost["examples"])


def ingest_as_files(folder: Path, tables: dict[str, pd.DataFrame]):
    """`tables` written as the user's CSV files and read back by the files source: the tables
    and data/raw/source.json's record of the source."""
    folder.mkdir(parents=True)
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    cfg = FilesConfig(*(f"{name}.csv" for name in tables), columns={}, timestamp_unit="iso")
    return files.load(cfg, root=folder), {"source": "files", "params": dataclasses.asdict(cfg)}


def test_unparseable_values_are_quarantined_with_the_reason(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"] = t["events"].astype({"timestamp": object})
    t["events"].loc[7, "timestamp"] = "yesterday-ish"
    t["items"] = t["items"].astype({"price": object})
    t["items"].loc[3, "price"] = "cheap"
    tables, source = ingest_as_files(tmp_path / "files", t)
    result = run_validation(tmp_path, tables, source=source)
    assert not result.stopped, result.summary["stop_reasons"]
    for name, d in result.decisions.items():
        assert d.rows_in == len(d.clean) + len(d.quarantined) == len(t[name]), name
        assert UNPARSED not in d.clean.columns  # the marker column is empty there: dropped

    held = result.decisions["events"].quarantined.set_index(UNPARSED)
    # the row is held back for what is wrong with it, not for the empty cell that follows
    assert held.loc['{"timestamp": "yesterday-ish"}', "reason"] == (
        "unparseable timestamp in column 'timestamp'"
    )
    item = t["items"].loc[3, "item_id"]
    assert reasons_of(result, "items")[item] == "unparseable number in column 'price'"
    assert (result.decisions["events"].quarantined["item_id"] == item).any()  # its events too
    # ... and the summary people read says the same: no "timestamp is null" for that row
    named = [f["expectation"] for f in result.summary["suites"]["events"]["failed"]]
    assert "expect_column_values_to_be_in_set(ref_values_parsed)" in named
    assert "expect_column_values_to_not_be_null(timestamp)" not in named, named


def test_unparseable_rows_over_the_bad_row_limit_stop(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"] = t["events"].astype({"timestamp": object})
    t["events"].loc[: len(t["events"]) // 5, "timestamp"] = "soon"
    tables, source = ingest_as_files(tmp_path / "files", t)
    result = run_validation(tmp_path, tables, source=source)
    message = validate.stop_message(result)
    assert "more than validation.max_bad_row_frac (0.05)" in message
    assert "unparseable timestamp in column 'timestamp'" in message and "'soon'" in message
    assert "ingest.files.timestamp_unit (iso)" in message  # the setting that reads them
    d = result.decisions["events"]
    assert d.rows_in == len(d.clean) + len(d.quarantined) == len(t["events"])


def test_overlong_strings_are_quarantined(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    users, items, ev, q = t["users"], t["items"], t["events"], t["queries"]
    items.loc[0, "title"] = "a very long title " * 6_000  # 108,000 characters
    items.loc[1, "brand"] = "b" * 1_000
    users.loc[0, "region"] = "r" * 1_000
    ev.loc[ev.index[0], "session_id"] = "s" * 1_000
    q.loc[q.index[0], "session_id"] = "s" * 1_000
    result = run_validation(tmp_path, t)
    assert not result.stopped, result.summary["stop_reasons"]
    it = reasons_of(result, "items")
    assert it[items.loc[0, "item_id"]] == "expect_column_value_lengths_to_be_between(title)"
    assert it[items.loc[1, "item_id"]] == "expect_column_value_lengths_to_be_between(brand)"
    assert reasons_of(result, "users")[users.loc[0, "user_id"]] == (
        "expect_column_value_lengths_to_be_between(region)"
    )
    for table in ("events", "queries"):
        reasons = " | ".join(result.decisions[table].quarantined["reason"])
        assert "expect_column_value_lengths_to_be_between(session_id)" in reasons, table
    assert result.decisions["items"].clean["title"].str.len().max() < 1_000
    # the report shows the bad rows, each long value cut short
    assert len(json.dumps(result.summary)) < 20_000


def test_quarantine_conserves_rows_and_cascades(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    # a repeated user id: both copies are held back, and so are that user's events
    dup_user = t["users"].loc[5, "user_id"]
    t["users"] = pd.concat([t["users"], t["users"].loc[[5]]], ignore_index=True)
    result = run_validation(tmp_path, t)
    for name, d in result.decisions.items():
        assert d.rows_in == len(d.clean) + len(d.quarantined) == len(t[name]), name
        assert result.summary["suites"][name]["rows_conserved"]
    assert (result.decisions["users"].quarantined["user_id"] == dup_user).sum() == 2
    held = result.decisions["events"].quarantined
    n_events = int((t["events"]["user_id"] == dup_user).sum())
    assert (held["user_id"] == dup_user).sum() == n_events > 0
    assert dup_user not in set(result.decisions["events"].clean["user_id"])


@pytest.mark.parametrize(
    ("table", "fault", "expected"),
    [
        ("events", lambda df: df.drop(columns="event_type"),
         "expect_table_columns_to_match_set"),
        ("events", lambda df: df.head(0), "expect_table_row_count_to_be_between"),
        ("events", lambda df: df.assign(timestamp=df["timestamp"].astype(str)),
         "expect_column_values_to_be_in_type_list(timestamp)"),
        ("events", lambda df: pd.concat([df, df.head(len(df) // 10)], ignore_index=True),
         "expect_compound_columns_to_be_unique"),
        ("items", lambda df: df.assign(in_stock=df["in_stock"].astype(str)),
         "expect_column_values_to_be_in_type_list(in_stock)"),
    ],
)  # fmt: skip
def test_table_level_faults_stop(tmp_path: Path, tiny_tables, table, fault, expected) -> None:
    t = copy_tables(tiny_tables)
    t[table] = fault(t[table])
    result = run_validation(tmp_path, t)
    assert result.stopped
    assert any(expected in r for r in result.summary["stop_reasons"]), result.summary
    assert expected in validate.stop_message(result)


def test_too_many_bad_rows_stop(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["events"].loc[t["events"].index[: len(t["events"]) // 5], "event_type"] = "teleport"
    result = run_validation(tmp_path, t, max_bad_row_frac=0.05)
    assert any("more than validation.max_bad_row_frac" in r for r in result.summary["stop_reasons"])
    d = result.decisions["events"]
    assert d.rows_in == len(d.clean) + len(d.quarantined)


def test_stop_mode_stops_on_a_single_bad_row(tmp_path: Path, tiny_tables) -> None:
    t = copy_tables(tiny_tables)
    t["items"].loc[0, "price"] = -1.0
    result = run_validation(tmp_path, t, on_failure="stop")
    assert result.stopped
    assert any("expect_column_values_to_be_between(price)" in r
               for r in result.summary["stop_reasons"])  # fmt: skip
    from recfusion.validation.report import to_html, to_markdown

    for page in (to_markdown("x", result.summary), to_html("x", result.summary)):
        assert "STOPPED" in page and "expect_column_values_to_be_between(price)" in page


def test_stage_main_stops_nonzero_and_writes_no_data(tmp_path: Path, tiny_tables, monkeypatch,
                                                     caplog) -> None:  # fmt: skip
    shutil.copytree(SUITES, tmp_path / "expectations")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    t = copy_tables(tiny_tables)
    t["events"] = t["events"].drop(columns="item_id")
    for name, df in t.items():
        (tmp_path / "data/raw").mkdir(parents=True, exist_ok=True)
        df.to_parquet(tmp_path / "data/raw" / f"{name}.parquet")
    monkeypatch.chdir(tmp_path)
    from recfusion.stages.entry import guarded

    assert guarded(lambda: validate.main([])) == 1
    assert "expect_table_columns_to_match_set" in caplog.text
    assert "reports/validation/raw/summary.html" in caplog.text
    assert (tmp_path / "reports/validation/raw/index.html").is_file()
    assert not (tmp_path / "data/validated").exists()


# ----------------------------------------------------------------------------- prepared splits
def prepared_parts(tiny_tables, method: str = "temporal"):
    cfg = repo_config({"prepare": {"split": {"method": method}}})
    p = prepare.run(cfg, tiny_tables)
    return cfg, p


def run_prepared(tmp_path: Path, cfg, splits, p) -> dict:
    inputs = validate_prepared.PreparedInputs(
        splits,
        p.items,
        {n: p.vocabularies[n] for n in ("user_id", "item_id")},
        p.summary["cuts"],
        validate_prepared.read_suite(SUITES),
    )
    return validate_prepared.run(cfg, inputs, docs_dir=tmp_path / "docs").summary


@pytest.mark.parametrize("method", ["temporal", "random_ratio", "leave_last_n"])
def test_prepared_splits_pass(tmp_path: Path, tiny_tables, method: str) -> None:
    cfg, p = prepared_parts(tiny_tables, method)
    summary = run_prepared(tmp_path, cfg, p.splits, p)
    assert summary["success"], summary["stop_reasons"]
    assert "validations/prepared/" in (tmp_path / "docs" / "index.html").read_text()


def test_prepared_leakage_is_caught(tmp_path: Path, tiny_tables) -> None:
    cfg, p = prepared_parts(tiny_tables)
    splits = dict(p.splits)
    late = splits["test"].head(3)
    splits["train"] = pd.concat([splits["train"], late], ignore_index=True)
    splits["test"] = splits["test"].iloc[3:]
    summary = run_prepared(tmp_path, cfg, splits, p)
    assert summary["stopped"]
    assert any("expect_column_values_to_be_between(timestamp)" in r
               for r in summary["stop_reasons"])  # fmt: skip


def test_prepared_unflagged_cold_ids_are_caught(tmp_path: Path, tiny_tables) -> None:
    cfg, p = prepared_parts(tiny_tables)
    splits = dict(p.splits)
    test = splits["test"].copy()
    test.loc[test["cold_user"], "cold_user"] = False  # cold users no longer flagged
    splits["test"] = test
    summary = run_prepared(tmp_path, cfg, splits, p)
    assert any("ref_user_in_vocab_or_cold" in r for r in summary["stop_reasons"])


def test_prepared_drift_is_caught(tmp_path: Path, tiny_tables) -> None:
    cfg, p = prepared_parts(tiny_tables)
    splits = dict(p.splits)
    splits["test"] = splits["test"].assign(event_type="purchase")
    summary = run_prepared(tmp_path, cfg, splits, p)
    assert any("expect_column_kl_divergence_to_be_less_than(event_type)" in r
               for r in summary["stop_reasons"])  # fmt: skip
