"""Stage `materialize`: the online store the served model reads users and their events from.

Reads data/prepared/ (users and the train, validation and test events) and fills the SQLite
store at `serving.store` (default data/online/store.sqlite; serving/store.py): each user's row
with the keyed pseudonym the packaged model knows them by, and every event in arrival order,
then every event of the event log (data/live/events/: what `/events` and `recfusion events` took
since), read while the store is locked, so no accepted event drops out when the pipeline reruns.
The store is refilled in place in one transaction: a running server reads the old contents or
the new. Writes reports/materialize.json (the DVC output: counts and the store's path). The
store itself is not a DVC output: the server appends to it, and DVC must neither delete it
before the stage runs nor rerun the pipeline because a shopper clicked.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

from recfusion.config import Config
from recfusion.data.io import write_json
from recfusion.data.schema import SPLITS
from recfusion.models.dataset import PreparedData, read_prepared
from recfusion.paths import PREPARED_DIR, REPORTS_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.events import EVENT_LOG_DIR, read_log
from recfusion.serving.store import StoreContents, materialize, write_store
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def read_inputs(prepared_dir: Path = PREPARED_DIR) -> PreparedData:
    return read_prepared(prepared_dir)


def run(prepared: PreparedData, key: bytes) -> StoreContents:
    """Every user and every event of every split, pseudonyms made with `key`."""
    return materialize(prepared, SPLITS, key)


def write_outputs(cfg: Config, contents: StoreContents, log_dir: Path = EVENT_LOG_DIR,
                  reports_dir: Path = REPORTS_DIR) -> dict:  # fmt: skip
    """Fills the store (then the event log's events, read under its lock) and writes
    reports/materialize.json; returns what the latter records."""
    path = write_store(contents, Path(cfg.serving.store), lambda: read_log(log_dir))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        events = int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    con.close()
    record = {"store": str(cfg.serving.store), "users": len(contents.users),
              "prepared_events": len(contents.events),
              "logged_events": events - len(contents.events)}  # fmt: skip
    write_json(record, reports_dir / "materialize.json")
    return record


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    record = write_outputs(cfg, run(read_inputs(), pseudonym_key()))
    log.info("materialize: %d users, %d prepared and %d logged events -> %s", record["users"],
             record["prepared_events"], record["logged_events"], record["store"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
