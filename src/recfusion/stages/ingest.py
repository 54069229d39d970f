"""Stage `ingest`: the configured source writes the canonical tables to data/raw/ (Parquet).

Reads the configured source (`ingest.source`): the synthetic generator, or MovieLens or the
user's files under data/external/. Writes data/raw/{users,items,events,queries}.parquet and
data/raw/source.json (which source, its parameters and the row counts), the record later stages
and lineage tags read.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recfusion.config import Config
from recfusion.data.io import write_json, write_table
from recfusion.data.schema import TABLES
from recfusion.data.sources import load_source
from recfusion.paths import RAW_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    tables: dict[str, pd.DataFrame]  # the canonical tables
    info: dict  # the source: name, parameters, seed, row counts


def read_inputs(cfg: Config, progress: bool = True) -> dict[str, pd.DataFrame]:
    """The canonical tables of the configured source (files under data/external/, or the
    seeded generator).

    Raises:
        DataFileError: a source file is missing or malformed.
    """
    return load_source(cfg.ingest, cfg.seed, progress=progress)


def run(cfg: Config, tables: dict[str, pd.DataFrame]) -> Ingested:
    """The tables as they are, with a description of the source (name, parameters, row
    counts)."""
    source_params = dataclasses.asdict(getattr(cfg.ingest, cfg.ingest.source))
    info = {
        "source": cfg.ingest.source,
        "params": source_params,
        "seed": cfg.seed,
        "rows": {name: len(tables[name]) for name in TABLES},
    }
    return Ingested(tables, info)


def write_outputs(ingested: Ingested, out_dir: Path = RAW_DIR) -> None:
    """Writes each table as Parquet and the source description as JSON."""
    for name in TABLES:
        write_table(ingested.tables[name], out_dir / f"{name}.parquet")
    write_json(ingested.info, out_dir / "source.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    progress = sys.stderr.isatty() or cfg.ingest.source == "synthetic"
    ingested = run(cfg, read_inputs(cfg, progress))
    write_outputs(ingested)
    log.info("ingest: wrote %s to %s", ingested.info["rows"], RAW_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
