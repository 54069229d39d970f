"""Stage `ingest`: the configured source writes the canonical tables to data/raw/ (Parquet).

Reads the configured source (`ingest.source`): the synthetic generator (its chunks of users
simulated here or on a Dask cluster, `engine`), or MovieLens or the
user's files under data/external/; adds the event log (data/live/events: what the server's
`/events` and `recfusion events` accepted since; `ingest.event_log`, data/event_log.py), with a
row holding only an id for each new shopper; drops every row of the users listed in
data/forget/forgotten.txt (`recfusion forget`, data/forget.py). Writes
data/raw/{users,items,events,queries}.parquet and data/raw/source.json (which source, its
parameters, the row counts, the event log batches taken in, and how many rows of forgotten users
were dropped), the record later stages and lineage tags read.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recfusion.config import Config
from recfusion.data.event_log import EVENT_LOG_DIR, batch_name, join_log, log_batches, read_batches
from recfusion.data.forget import FORGET_FILE, drop_forgotten, read_forgotten
from recfusion.data.io import write_json, write_table
from recfusion.data.schema import TABLES
from recfusion.data.sources import load_source
from recfusion.engine import open_engine
from recfusion.paths import RAW_DIR
from recfusion.privacy import pseudonym_key
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedEvents:
    events: pd.DataFrame  # the event log's events, in arrival order
    batches: tuple[str, ...]  # the log files they came from (data/event_log.batch_name)


@dataclass(frozen=True)
class Ingested:
    tables: dict[str, pd.DataFrame]  # the canonical tables
    info: dict  # the source: name, parameters, seed, row counts


def read_inputs(cfg: Config, progress: bool = True) -> dict[str, pd.DataFrame]:
    """The canonical tables of the configured source (files under data/external/, or the
    seeded generator, which runs on the configured engine).

    Raises:
        DataFileError: a source file is missing or malformed.
        EngineError: `engine.kind` is dask and its cluster cannot be reached or started.
    """
    if cfg.ingest.source != "synthetic":
        return load_source(cfg.ingest, cfg.seed, progress=progress)
    with open_engine(cfg.engine, progress) as engine:
        return load_source(cfg.ingest, cfg.seed, progress=progress, engine=engine)


def read_logged(cfg: Config, folder: Path = EVENT_LOG_DIR) -> LoggedEvents:
    """The event log's batches (none when `ingest.event_log` is off or there is no log)."""
    if not cfg.ingest.event_log:
        return LoggedEvents(read_batches([]), ())
    files = log_batches(folder)  # one listing: a batch written meanwhile waits for the next run
    return LoggedEvents(read_batches(files), tuple(batch_name(f, folder) for f in files))


def run(cfg: Config, tables: dict[str, pd.DataFrame], forgotten: frozenset[str] = frozenset(),
        key: bytes = b"", logged: LoggedEvents | None = None) -> Ingested:  # fmt: skip
    """The tables with the `logged` events added, without the rows of `forgotten` users
    (pseudonyms made with `key`), with a description of the source (name, parameters, row
    counts, event log batches taken in, rows dropped)."""
    taken = {"events": 0, "new_users": 0}
    if logged is not None and len(logged.events):
        # a source with its own splits (prepare.split.method: predefined needs a value in
        # each row): fresh events train the next model, the source's test set stays as it is
        own = tables["events"].get("split")
        split = "train" if own is not None and own.notna().any() else None
        tables, taken = join_log(tables, logged.events, split)
    tables, dropped = drop_forgotten(tables, forgotten, key)
    source_params = dataclasses.asdict(getattr(cfg.ingest, cfg.ingest.source))
    info = {
        "source": cfg.ingest.source,
        "params": source_params,
        "seed": cfg.seed,
        "rows": {name: len(tables[name]) for name in TABLES},
        "forgotten": {"users_listed": len(forgotten), "rows_dropped": dropped},
        "event_log": {**taken, "batches": list(logged.batches) if logged is not None else []},
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
    forgotten = read_forgotten(FORGET_FILE)
    logged = read_logged(cfg)
    ingested = run(cfg, read_inputs(cfg, progress), forgotten,
                   pseudonym_key() if forgotten else b"", logged)  # fmt: skip
    write_outputs(ingested)
    log.info("ingest: wrote %s to %s (event log: %d events of %d batches, %d new users)",
             ingested.info["rows"], RAW_DIR, ingested.info["event_log"]["events"],
             len(logged.batches), ingested.info["event_log"]["new_users"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
