"""Reading and writing at the edges: tables (CSV/Parquet) and small JSON files.

Readers turn the many ways a file can be wrong (missing, empty, ragged, not UTF-8, not Parquet)
into a `DataFileError` that names the file and what to fix.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa


class DataFileError(ValueError):
    """A data file cannot be read."""


def read_table(
    path: str | Path, fmt: str | None = None, encoding: str = "utf-8", **csv_kwargs: Any
) -> pd.DataFrame:
    """Reads a CSV (`.csv`, `.tsv`, `.txt`) or Parquet (`.parquet`, `.pq`) file.

    Args:
        path: the file.
        fmt: "csv" or "parquet"; None picks by the file name's suffix.
        encoding: text encoding of a CSV.
        **csv_kwargs: passed to `pandas.read_csv`.

    Returns:
        The table as read (no type conversion beyond the reader's own).

    Raises:
        DataFileError: the file is missing, empty, ragged, badly encoded or not the format its
            name says.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if fmt is None:
        fmt = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}.get(
            suffix, "csv" if suffix == ".txt" else None
        )
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "csv":
            sep = csv_kwargs.pop("sep", "\t" if suffix == ".tsv" else ",")
            return pd.read_csv(path, sep=sep, encoding=encoding, **csv_kwargs)
    except UnicodeDecodeError as e:
        offset, line = first_undecodable_byte(path, encoding)
        where = (
            f"byte {offset:,} (line {line:,})" if offset >= 0 else f"byte {e.start:,} of a block"
        )
        raise DataFileError(
            f"{path}: not valid {encoding} text at {where}; re-save the file as {encoding}"
        ) from e
    except pd.errors.EmptyDataError as e:
        raise DataFileError(f"{path}: file has no rows or header") from e
    except pd.errors.ParserError as e:
        raise DataFileError(f"{path}: malformed CSV ({e}); check for ragged rows or quoting") from e
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFileError(f"{path}: not a readable Parquet file ({e})") from e
    raise DataFileError(f"{path}: unsupported file type '{suffix}' (use .csv, .tsv or .parquet)")


def first_undecodable_byte(path: Path, encoding: str, block: int = 1 << 20) -> tuple[int, int]:
    """Where the first byte that `encoding` cannot decode sits in the file.

    pandas decodes a CSV in blocks and its `UnicodeDecodeError` gives the position within the
    block, not the file, so the file is decoded again here, block by block.

    Args:
        path: the file.
        encoding: the text encoding it should be in.
        block: bytes read at a time.

    Returns:
        The byte's offset from the start of the file (0-based, as a hex editor shows it) and
        its line (1-based); (-1, -1) when the whole file decodes.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, newlines = 0, 0  # bytes fed to the decoder so far, and the line breaks in them
    with path.open("rb") as f:
        while True:
            chunk = f.read(block)
            pending = decoder.getstate()[0]  # bytes of a character the last block cut in two
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                start = offset - len(pending) + e.start
                before = chunk[: max(start - offset, 0)]
                return start, newlines + before.count(b"\n") + 1
            if not chunk:
                return -1, -1
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Writes `df` as Parquet, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Writes `obj` as indented, key-sorted JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    """Reads a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataFileError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataFileError(f"{path}: not valid JSON ({e})") from e
