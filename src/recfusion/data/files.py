"""The user's own tables (CSV or Parquet) in the canonical schema, or renamed by a column map."""

from __future__ import annotations

import logging

import pandas as pd

from recfusion.config import FilesConfig
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import SCHEMA, SchemaError, canonical_columns, conform_table, empty_table

log = logging.getLogger(__name__)


def load(cfg: FilesConfig) -> dict[str, pd.DataFrame]:
    """Reads the configured files into the canonical tables.

    Raises:
        DataFileError: a file is missing or unreadable.
        SchemaError: a column map names an unknown table or column, or a table lacks a
            required column or has values of the wrong type (the message names the file).
    """
    for table, mapping in cfg.columns.items():
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
    paths = {"users": cfg.users, "items": cfg.items, "events": cfg.events, "queries": cfg.queries}
    tables = {}
    for table, path in paths.items():
        if path is None:
            tables[table] = empty_table(table)
            continue
        raw = read_table(path)
        renamed = raw.rename(columns=cfg.columns.get(table, {}))
        try:
            tables[table] = conform_table(table, renamed, timestamp_unit=cfg.timestamp_unit)
        except SchemaError as e:
            raise SchemaError(f"{path}: {e}") from e
        log.info("files: %s <- %s (%d rows)", table, path, len(raw))
    if tables["events"]["split"].notna().any():
        _check_split_column(tables["events"], cfg.events)
    return tables


def _check_split_column(events: pd.DataFrame, path: str) -> None:
    values = set(events["split"].dropna().unique())
    bad = values - {"train", "val", "test"}
    if bad:
        raise DataFileError(
            f"{path}: column 'split' may only hold train, val or test; found {sorted(bad)[:5]}"
        )
