"""The `files` source and the readers: canonical files load; bad files fail with the file and
the problem named, never with a deep traceback; the source reads only .csv and .parquet files
inside the project folder, and its errors never show a file's contents beyond column names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from recfusion.config import FilesConfig
from recfusion.data import files
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import UNPARSED, SchemaError


def write_tables(folder: Path, fmt: str = "csv") -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame({"uid": ["a", "b"], "age": [30, None], "gender": ["F", "M"]})
    items = pd.DataFrame(
        {
            "item_id": [1, 2],
            "title": ["red shoe", "blue hat"],
            "category": ["x>y", "x>z"],
            "price": [9.5, 3.0],
            "in_stock": ["true", "false"],
        }
    )
    events = pd.DataFrame(
        {
            "uid": ["a", "a", "b"],
            "item_id": [1, 2, 1],
            "event_type": ["view", "purchase", "click"],
            "timestamp": ["2024-01-01T10:00:00", "2024-01-02 11:00", "2024-01-03"],
            "split": ["train", "val", "test"],
        }
    )
    paths = {}
    for name, df in (("users", users), ("items", items), ("events", events)):
        path = folder / f"{name}.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
        paths[name] = str(path)
    return paths


def config(paths: dict[str, str], **kw) -> FilesConfig:
    defaults = dict(
        queries=None,
        columns={"users": {"uid": "user_id"}, "events": {"uid": "user_id"}},
        timestamp_unit="iso",
    )
    return FilesConfig(**{**paths, **defaults, **kw})


def set_value(path: str, column: str, row: int, value: str) -> None:
    """Writes `value` into row `row` (0-based) of `column` of the table at `path`; the column
    becomes text, so Parquet can hold the bad value."""
    df = pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
    df[column] = df[column].astype(str)
    df.loc[row, column] = value
    df.to_csv(path, index=False) if path.endswith(".csv") else df.to_parquet(path, index=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_with_column_map_and_split(tmp_path: Path, fmt: str) -> None:
    t = files.load(config(write_tables(tmp_path, fmt)), root=tmp_path)
    assert t["users"]["user_id"].tolist() == ["a", "b"]
    assert t["items"]["item_id"].tolist() == ["1", "2"]  # ids are strings, not 1.0
    assert t["items"]["in_stock"].tolist() == [True, False]
    assert t["events"]["split"].tolist() == ["train", "val", "test"]
    assert t["events"]["timestamp"].iloc[1] == pd.Timestamp("2024-01-02 11:00")
    assert pd.isna(t["users"]["age"].iloc[1])
    assert len(t["queries"]) == 0


def test_relative_paths_are_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tables(tmp_path / "data/external")
    monkeypatch.chdir(tmp_path)  # a stage runs in the project folder, the one with dvc.yaml
    paths = {name: f"data/external/{name}.csv" for name in ("users", "items", "events")}
    assert files.load(config(paths))["users"]["user_id"].tolist() == ["a", "b"]


def test_column_map_to_unknown_column_fails(tmp_path: Path) -> None:
    cfg = config(write_tables(tmp_path), columns={"events": {"uid": "userid"}})
    with pytest.raises(SchemaError, match="'userid' is not a canonical column of events"):
        files.load(cfg, root=tmp_path)


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    cfg = config(write_tables(tmp_path), columns={})
    with pytest.raises(
        SchemaError, match=r"users\.csv: users: missing required column\(s\) user_id; found uid"
    ):
        files.load(cfg, root=tmp_path)


def test_missing_column_error_does_not_echo_a_line_of_text(tmp_path: Path) -> None:
    # a text file saved as .csv: its first line becomes one long "column name"
    paths = write_tables(tmp_path)
    secret = "the quarterly numbers are confidential and must not reach a build log " * 3
    Path(paths["users"]).write_text(f"{secret}\nmore text\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="missing required column") as err:
        files.load(config(paths), root=tmp_path)
    assert "confidential" not in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("table", "column", "value", "cast"),
    [
        ("events", "timestamp", "yesterday-ish", None),
        ("items", "price", "cheap", None),
        ("items", "in_stock", "maybe", True),  # in_stock has no null: the default, True
    ],
)
def test_unreadable_value_keeps_its_row_marked(
    tmp_path: Path, fmt: str, table: str, column: str, value: str, cast: object
) -> None:
    paths = write_tables(tmp_path, fmt)
    set_value(paths[table], column, 1, value)
    t = files.load(config(paths), root=tmp_path)[table]
    # every row is kept; the bad cell is empty and its text sits in the row's `unparsed` cell,
    # for validate to quarantine the row with the reason
    assert len(t) == (2 if table == "items" else 3)
    cell = t.loc[1, column]
    assert pd.isna(cell) if cast is None else cell == cast
    assert json.loads(t.loc[1, UNPARSED]) == {column: value}
    assert t[UNPARSED].drop(index=1).isna().all()


@pytest.mark.parametrize(("unit", "seconds"), [("s", 1_700_000_000), ("ms", 1_700_000_000_000)])
def test_epoch_timestamps_with_one_bad_value_mark_that_row_only(
    tmp_path: Path, unit: str, seconds: int
) -> None:
    # one bad cell makes the reader keep the whole column as text: the numbers must still count
    paths = write_tables(tmp_path)
    events = pd.read_csv(paths["events"]).assign(timestamp=[str(seconds)] * 3)
    events.loc[2, "timestamp"] = "n/a?"
    events.to_csv(paths["events"], index=False)
    t = files.load(config(paths, timestamp_unit=unit), root=tmp_path)["events"]
    assert t["timestamp"].iloc[:2].tolist() == [pd.Timestamp("2023-11-14 22:13:20")] * 2
    assert pd.isna(t.loc[2, "timestamp"])
    assert json.loads(t.loc[2, UNPARSED]) == {"timestamp": "n/a?"}


@pytest.mark.parametrize("huge", ["99999999999999999999", "1.7e20"])
def test_an_epoch_past_2262_is_unreadable_not_a_crash(tmp_path: Path, huge: str) -> None:
    paths = write_tables(tmp_path)
    events = pd.read_csv(paths["events"]).assign(timestamp=["1700000000"] * 3)
    events.loc[1, "timestamp"] = huge
    events.to_csv(paths["events"], index=False)
    t = files.load(config(paths, timestamp_unit="s"), root=tmp_path)["events"]
    assert pd.isna(t.loc[1, "timestamp"]) and list(json.loads(t.loc[1, UNPARSED])) == ["timestamp"]
    assert t[UNPARSED].isna().sum() == 2


def test_a_huge_numeric_id_with_a_blank_stays_text(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    events = pd.read_csv(paths["events"]).assign(item_id=[1e20, None, 2.0])
    events.to_csv(paths["events"], index=False)
    t = files.load(config(paths), root=tmp_path)["events"]
    assert t["item_id"].tolist() == ["1e+20", None, "2.0"] and t[UNPARSED].isna().all()


def test_long_numeric_ids_are_read_as_written(tmp_path: Path) -> None:
    # as numbers, with a blank making the column float, these two users would become one
    paths = write_tables(tmp_path)
    ids = ["1700000000000000001", "1700000000000000002"]
    pd.read_csv(paths["users"]).assign(uid=ids).to_csv(paths["users"], index=False)
    events = pd.read_csv(paths["events"]).assign(uid=[ids[0], ids[1], None])
    events.to_csv(paths["events"], index=False)
    t = files.load(config(paths), root=tmp_path)
    assert t["users"]["user_id"].tolist() == ids
    assert t["events"]["user_id"].tolist() == [*ids, None]


def test_a_column_twice_after_the_map_is_named(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    pd.read_csv(paths["users"]).assign(user_id=["x", "y"]).to_csv(paths["users"], index=False)
    with pytest.raises(SchemaError, match=r"user_id appear twice .*ingest.files.columns.users"):
        files.load(config(paths), root=tmp_path)


def test_non_integer_age_is_unreadable(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    set_value(paths["users"], "age", 0, "30.5")
    t = files.load(config(paths), root=tmp_path)["users"]
    assert pd.isna(t.loc[0, "age"]) and json.loads(t.loc[0, UNPARSED]) == {"age": "30.5"}


def test_unreadable_values_are_logged_by_column_without_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_tables(tmp_path)
    set_value(paths["events"], "timestamp", 1, "s3cret")
    with caplog.at_level("WARNING"):
        files.load(config(paths), root=tmp_path)
    assert "events: 1 row(s) with a value that cannot be read (timestamp)" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_column_named_unparsed_is_refused(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    pd.read_csv(paths["users"]).assign(**{UNPARSED: "x"}).to_csv(paths["users"], index=False)
    with pytest.raises(SchemaError, match=f"users.csv: users: column '{UNPARSED}' is reserved"):
        files.load(config(paths), root=tmp_path)


EVENTS_HEADER = "uid,item_id,event_type,timestamp,split\n"


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        # event 1's type spans lines 2-3, so event 2 (the bad split) is on line 4
        ('a,1,"vi\new",2024-01-01,train\nb,1,view,2024-01-02,holdout\n', 4),
        # the reader skips the blank and the whitespace-only line, so the line is 5, not 3
        ("a,1,view,2024-01-01,train\n\n \t\nb,1,view,2024-01-02,holdout\n", 5),
    ],
)
def test_line_number_counts_multiline_fields_and_blank_lines(
    tmp_path: Path, rows: str, line: int
) -> None:
    paths = write_tables(tmp_path)
    Path(paths["events"]).write_text(EVENTS_HEADER + rows, encoding="utf-8")
    with pytest.raises(DataFileError, match=rf"events\.csv, line {line}: column 'split'"):
        files.load(config(paths), root=tmp_path)


def test_bad_split_values_name_line_not_value(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    set_value(paths["events"], "split", 1, "holdout")
    with pytest.raises(DataFileError, match=r"events\.csv, line 3: column 'split'") as err:
        files.load(config(paths), root=tmp_path)
    assert "holdout" not in str(err.value)


def outside_file(tmp_path: Path) -> Path:
    """A readable table outside the project folder tmp_path/project."""
    secret = tmp_path / "outside" / "users.csv"
    secret.parent.mkdir()
    secret.write_text("user_id,password\nroot,hunter2\n", encoding="utf-8")
    return secret


@pytest.mark.parametrize("form", ["absolute", "dotdot"])
def test_path_outside_the_project_is_refused(tmp_path: Path, form: str) -> None:
    project = tmp_path / "project"
    paths = write_tables(project / "data/external")
    secret = outside_file(tmp_path)
    paths["users"] = str(secret) if form == "absolute" else "../outside/users.csv"
    with pytest.raises(DataFileError, match="ingest.files.users: .*outside the project folder"):
        files.load(config(paths), root=project)


def test_symlink_leaving_the_project_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    paths = write_tables(project / "data/external")
    link = project / "data/external/people.csv"
    link.symlink_to(outside_file(tmp_path))
    paths["users"] = "data/external/people.csv"
    with pytest.raises(DataFileError, match="ingest.files.users: .*symlink.*outside") as err:
        files.load(config(paths), root=project)
    assert "hunter2" not in str(err.value)


def test_symlink_inside_the_project_is_read(tmp_path: Path) -> None:
    paths = write_tables(tmp_path / "data/external")
    (tmp_path / "users-link.csv").symlink_to(paths["users"])
    paths["users"] = "users-link.csv"
    t = files.load(config(paths), root=tmp_path)
    assert t["users"]["user_id"].tolist() == ["a", "b"]


@pytest.mark.parametrize("name", ["events.tsv", "events.txt", "events.pq", "events.json"])
def test_only_csv_and_parquet_are_read(tmp_path: Path, name: str) -> None:
    paths = write_tables(tmp_path)
    os.replace(paths["events"], tmp_path / name)
    paths["events"] = name
    with pytest.raises(DataFileError, match=rf"ingest.files.events: '{name}'.*\.csv or \.parquet"):
        files.load(config(paths), root=tmp_path)


def test_symlink_to_another_file_type_is_refused(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    os.replace(paths["events"], tmp_path / "events.txt")
    (tmp_path / "events-link.csv").symlink_to(tmp_path / "events.txt")
    paths["events"] = "events-link.csv"
    with pytest.raises(DataFileError, match=r"ingest.files.events: .*\.csv or \.parquet"):
        files.load(config(paths), root=tmp_path)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "absent.csv", "file not found"),
        (b"", "empty.csv", "file is empty"),
        (b"a,b\n1,2\n3,4,5\n", "ragged.csv", "malformed CSV"),
        (b"a,b\n1,caf\xe9\n", "latin.csv", "not valid utf-8"),
        (b"not parquet at all", "bad.parquet", "not a readable Parquet file"),
        (b"a,b\n", "x.json", "unsupported file type"),
    ],
)
def test_reader_errors_are_clear(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as err:
        read_table(path)
    assert name in str(err.value)


def test_reader_errors_through_the_source_name_the_key(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    paths["items"] = str(tmp_path / "absent.csv")
    with pytest.raises(DataFileError, match=r"ingest.files.items: .*absent\.csv: file not found"):
        files.load(config(paths), root=tmp_path)


def test_encoding_error_names_the_line_and_byte_of_the_bad_byte(tmp_path: Path) -> None:
    # the reader decodes in blocks; the position it reports is within the block, not the file
    lines = ["user_id,title"] + [f"u{i},title number {i}" for i in range(1, 5000)]
    data = bytearray(("\n".join(lines) + "\n").encode())
    offset = data.index(b"\nu1683,") + 2  # the '1' of u1683, on line 1,684
    data[offset] = 0xFF
    path = tmp_path / "users.csv"
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=f"at byte {offset:,} \\(line 1,684\\)"):
        read_table(path)
