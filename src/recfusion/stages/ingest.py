"""Stage `ingest`: the configured source writes the canonical tables to data/raw/ (Parquet).

Outputs: data/raw/{users,items,events,queries}.parquet and data/raw/source.json (which source,
its parameters and the row counts), the record later stages and lineage tags read.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pandas as pd

from recfusion.config import Config
from recfusion.data.io import write_json, write_table
from recfusion.data.schema import TABLES
from recfusion.data.sources import load_source
from recfusion.paths import RAW_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def run(cfg: Config, progress: bool = True) -> tuple[dict[str, pd.DataFrame], dict]:
    """Loads the configured source.

    Returns:
        The canonical tables and a description of the source (name, parameters, row counts).
    """
    tables = load_source(cfg.ingest, cfg.seed, progress=progress)
    source_params = dataclasses.asdict(getattr(cfg.ingest, cfg.ingest.source))
    info = {
        "source": cfg.ingest.source,
        "params": source_params,
        "seed": cfg.seed,
        "rows": {name: len(tables[name]) for name in TABLES},
    }
    return tables, info


def write_outputs(tables: dict[str, pd.DataFrame], info: dict, out_dir: Path = RAW_DIR) -> None:
    """Writes each table as Parquet and the source description as JSON."""
    for name in TABLES:
        write_table(tables[name], out_dir / f"{name}.parquet")
    write_json(info, out_dir / "source.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    tables, info = run(cfg, progress=sys.stderr.isatty() or cfg.ingest.source == "synthetic")
    write_outputs(tables, info)
    log.info("ingest: wrote %s to %s", info["rows"], RAW_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
