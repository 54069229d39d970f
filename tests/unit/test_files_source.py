"""The `files` source and the readers: canonical files load; bad files fail with the file and
the problem named, never with a deep traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recfusion.config import FilesConfig
from recfusion.data import files
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import SchemaError


def write_tables(folder: Path, fmt: str = "csv") -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame({"uid": ["a", "b"], "age": [30, None], "gender": ["F", "M"]})
    items = pd.DataFrame(
        {"item_id": [1, 2], "title": ["red shoe", "blue hat"], "category": ["x>y", "x>z"],
         "price": [9.5, 3.0], "in_stock": ["true", "false"]}
    )  # fmt: skip
    events = pd.DataFrame(
        {"uid": ["a", "a", "b"], "item_id": [1, 2, 1],
         "event_type": ["view", "purchase", "click"],
         "timestamp": ["2024-01-01T10:00:00", "2024-01-02 11:00", "2024-01-03"],
         "split": ["train", "val", "test"]}
    )  # fmt: skip
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


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_with_column_map_and_split(tmp_path: Path, fmt: str) -> None:
    t = files.load(config(write_tables(tmp_path, fmt)))
    assert t["users"]["user_id"].tolist() == ["a", "b"]
    assert t["items"]["item_id"].tolist() == ["1", "2"]  # ids are strings, not 1.0
    assert t["items"]["in_stock"].tolist() == [True, False]
    assert t["events"]["split"].tolist() == ["train", "val", "test"]
    assert t["events"]["timestamp"].iloc[1] == pd.Timestamp("2024-01-02 11:00")
    assert pd.isna(t["users"]["age"].iloc[1])
    assert len(t["queries"]) == 0


def test_column_map_to_unknown_column_fails(tmp_path: Path) -> None:
    cfg = config(write_tables(tmp_path), columns={"events": {"uid": "userid"}})
    with pytest.raises(SchemaError, match="'userid' is not a canonical column of events"):
        files.load(cfg)


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    cfg = config(write_tables(tmp_path), columns={})
    with pytest.raises(
        SchemaError, match=r"users\.csv: users: missing required column\(s\) user_id"
    ):
        files.load(cfg)


def test_unparseable_timestamp_names_the_value(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    ev = pd.read_csv(paths["events"])
    ev.loc[1, "timestamp"] = "yesterday-ish"
    ev.to_csv(paths["events"], index=False)
    with pytest.raises(SchemaError, match="'timestamp' cannot be read as timestamp.*yesterday-ish"):
        files.load(config(paths))


def test_wrong_type_names_column(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    items = pd.read_csv(paths["items"])
    items["price"] = items["price"].astype(object)
    items.loc[0, "price"] = "cheap"
    items.to_csv(paths["items"], index=False)
    with pytest.raises(SchemaError, match="items: column 'price' cannot be read as float.*cheap"):
        files.load(config(paths))


def test_bad_split_values(tmp_path: Path) -> None:
    paths = write_tables(tmp_path)
    ev = pd.read_csv(paths["events"])
    ev.loc[0, "split"] = "holdout"
    ev.to_csv(paths["events"], index=False)
    with pytest.raises(DataFileError, match="split.*holdout"):
        files.load(config(paths))


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
def test_reader_errors_are_clear(tmp_path: Path, content: bytes | None, name: str,
                                 message: str) -> None:  # fmt: skip
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as err:
        read_table(path)
    assert name in str(err.value)
