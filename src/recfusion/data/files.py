"""The user's own tables (CSV or Parquet) in the canonical schema, or renamed by a column map.

The source reads only `.csv` and `.parquet` files inside the project folder (where a stage runs:
the folder holding dvc.yaml), whatever a path or symlink says, and its errors name the file, the
line and the columns but never show a value from the file: a misconfigured path must not turn
an error message into a way of reading files.

A value that cannot take its column's type (a timestamp or number that does not parse) does not
stop ingestion: its row is kept with the cell empty and the text in the row's `unparsed` cell
(`schema.UNPARSED`), and validation holds the row back with the reason, or stops the run when
too many rows are bad (`validation.max_bad_row_frac`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.config import FilesConfig
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import (
    SCHEMA,
    UNPARSED,
    SchemaError,
    canonical_columns,
    conform_table,
    empty_table,
)

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")  # the only files the source reads
MAX_SHOWN_COLUMNS = 20  # "found" lists in errors stop here
MAX_COLUMN_CHARS = 40  # longer names are cut: such a "name" is likely a line of text


def load(cfg: FilesConfig, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """Reads the configured files into the canonical tables.

    Args:
        cfg: the `ingest.files` settings.
        root: the folder the files must be in, and relative paths start from; None is the
            working directory, which is the project folder when a stage runs.

    Raises:
        DataFileError: a path leaves `root` or is not .csv or .parquet (the message names the
            `ingest.files` key), or a file is missing, unreadable or has a bad `split` value.
        SchemaError: a column map names an unknown table or column, or a table lacks a
            required column or has a column named `unparsed` (the message names the file).
    """
    _check_column_map(cfg.columns)
    root = Path.cwd() if root is None else root
    paths = {"users": cfg.users, "items": cfg.items, "events": cfg.events, "queries": cfg.queries}
    tables, sources = {}, {}
    for table, path in paths.items():
        if path is None:
            tables[table] = empty_table(table)
            continue
        key = f"ingest.files.{table}"
        sources[table] = resolve_path(key, path, root)
        try:
            raw = read_table(sources[table], dtype=_text_columns(table, cfg.columns.get(table, {})))
        except DataFileError as e:
            raise DataFileError(f"{key}: {e}") from e
        renamed = raw.rename(columns=cfg.columns.get(table, {}))
        twice = sorted({str(c) for c in renamed.columns[renamed.columns.duplicated()]})
        if twice:
            raise SchemaError(
                f"{sources[table]}: {table}: column(s) {', '.join(_cut(c) for c in twice)} "
                f"appear twice once ingest.files.columns.{table} renames yours; drop one or "
                "change the map"
            )
        tables[table] = _conform(table, renamed, sources[table], cfg.timestamp_unit)
        log.info("files: %s <- %s (%d rows)", table, path, len(raw))
    if tables["events"]["split"].notna().any():
        _check_split_column(tables["events"], sources["events"])
    return tables


def resolve_path(key: str, path: str, root: Path) -> Path:
    """The file `path` names, through any symlinks, if it is a .csv or .parquet file in `root`.

    Args:
        key: the configuration key that holds `path`, for the error message.
        path: relative to `root`, or absolute.
        root: the folder the file must be in.

    Raises:
        DataFileError: the path, or the file a symlink on it leads to, is outside `root`, or
            is not a .csv or .parquet file.
    """
    root = root.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        lexical = Path(os.path.normpath(root / path))
        how = "through a symlink " if lexical.is_relative_to(root) else ""
        raise DataFileError(
            f"{key}: '{path}' leads {how}outside the project folder {root}; the files source "
            "reads only files inside it: put the table under data/external/ and give its path "
            "relative to the project folder"
        )
    if target.suffix.lower() not in SUFFIXES:
        linked = target.relative_to(root).as_posix()
        via = f" (it links to '{linked}')" if Path(path).suffix != target.suffix else ""
        raise DataFileError(
            f"{key}: '{path}' is not a .csv or .parquet file{via}; the files source reads only "
            "those: save the table as CSV or Parquet"
        )
    return target


def _text_columns(table: str, mapping: dict[str, str]) -> dict[str, type]:
    """The columns of a CSV file that `table`'s text columns (ids, categories, ...) come from,
    under the user's names, to be read as written: read as numbers, ids past 2**53 would be
    rounded into one another (a blank cell makes pandas read a column of ids as floats)."""
    text = {c.name for c in SCHEMA[table] if c.kind == "str"}
    yours = {mine for mine, canonical in mapping.items() if canonical in text}
    return {name: str for name in text | yours}


def _check_column_map(columns: dict[str, dict[str, str]]) -> None:
    for table, mapping in columns.items():
        if table not in SCHEMA:
            raise SchemaError(
                f"ingest.files.columns: unknown table '{table}' (tables: {', '.join(SCHEMA)})"
            )
        bad = [c for c in mapping.values() if c not in canonical_columns(table)]
        if bad:
            raise SchemaError(
                f"ingest.files.columns.{table}: '{bad[0]}' is not a canonical column of "
                f"{table} ({', '.join(canonical_columns(table))})"
            )


def _conform(table: str, frame: pd.DataFrame, file: Path, timestamp_unit: str) -> pd.DataFrame:
    """`conform_table` marking the rows whose values cannot be read (see the module's
    docstring), with errors that name the file and the columns, never a value.

    Args:
        table: one of the canonical tables.
        frame: the table as read, renamed by its column map.
        file: where it was read from.
        timestamp_unit: how numeric or text timestamps are read.
    """
    missing = [c.name for c in SCHEMA[table] if c.required and c.name not in frame.columns]
    if missing:
        raise SchemaError(
            f"{file}: {table}: missing required column(s) {', '.join(missing)}; found "
            f"{_shown_names(frame.columns)} (map yours with ingest.files.columns.{table})"
        )
    try:
        conformed = conform_table(table, frame, timestamp_unit=timestamp_unit, unreadable="mark")
    except SchemaError as e:  # a reserved column name: the message holds no value
        raise SchemaError(f"{file}: {e}") from None
    marked = conformed[UNPARSED].dropna()
    if len(marked):
        columns = sorted({c for cell in marked for c in json.loads(cell)})
        log.warning(
            "files: %s: %d row(s) with a value that cannot be read (%s); validate holds them "
            "back with the reason",
            table,
            len(marked),
            ", ".join(columns),
        )
    return conformed


def _place(file: Path, row: int) -> str:
    """Where data row `row` (0-based) is: the line of a CSV file, the row of a Parquet file."""
    if file.suffix.lower() != ".csv":
        return f"row {row + 1}"
    with file.open(newline="", encoding="utf-8") as f:
        text: list[str] = []  # the lines of the record being read

        def kept(lines: Iterable[str]) -> Iterator[str]:  # the lines, each also kept in text
            for line in lines:
                text.append(line)
                yield line

        records = csv.reader(kept(f))
        line, record = 1, -1  # the line the record starts on; record -1 is the header
        for _ in records:
            if "".join(text).strip():  # pandas skips lines holding only blanks, not '""'
                if record == row:
                    return f"line {line}"
                record += 1
            line += len(text)
            text.clear()
    return f"row {row + 1}"


def _shown_names(columns: Iterable[object]) -> str:
    """Column names for an error: at most MAX_SHOWN_COLUMNS, each cut to MAX_COLUMN_CHARS."""
    names = [str(c) for c in columns]
    if not names:
        return "no columns"
    shown = [_cut(name) for name in names[:MAX_SHOWN_COLUMNS]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _cut(name: str) -> str:
    return name if len(name) <= MAX_COLUMN_CHARS else name[: MAX_COLUMN_CHARS - 3] + "..."


def _check_split_column(events: pd.DataFrame, file: Path) -> None:
    bad = ~events["split"].isin(["train", "val", "test"]) & events["split"].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFileError(
            f"{file}, {_place(file, row)}: column 'split' may only hold train, val or test "
            "(the value is not shown)"
        )
