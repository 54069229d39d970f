"""Stage `materialize`: the online store the served model reads users and their events from.

Reads data/prepared/ (users and the train, validation and test events) and the event log
(data/live/events/, the events `/events` and `recfusion events` took since; read when it exists,
not a DVC dependency: the store already holds them) and writes the SQLite store at
`serving.store` (default data/online/store.sqlite; serving/store.py): each user's row with the
keyed pseudonym the packaged model knows them by, and every event in arrival order. A served
model then answers with each user's whole history, fresher than the splits it was fitted on; the
store is replaced whole (readers see the old one or the new one), and no logged event drops out
of it when the pipeline reruns.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from recfusion.config import Config
from recfusion.data.schema import SPLITS
from recfusion.models.dataset import PreparedData, read_prepared
from recfusion.paths import PREPARED_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.events import EVENT_LOG_DIR, read_log
from recfusion.serving.store import StoreContents, materialize, write_store
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def read_inputs(prepared_dir: Path = PREPARED_DIR,
                log_dir: Path = EVENT_LOG_DIR) -> tuple[PreparedData, pd.DataFrame]:  # fmt: skip
    """The prepared tables and the event log's events."""
    return read_prepared(prepared_dir), read_log(log_dir)


def run(prepared: PreparedData, live: pd.DataFrame, key: bytes) -> StoreContents:
    """Every user, every event of every split and then the logged events, pseudonyms made with
    `key`."""
    return materialize(prepared, SPLITS, key, live)


def write_outputs(cfg: Config, contents: StoreContents) -> Path:
    return write_store(contents, Path(cfg.serving.store))


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    prepared, live = read_inputs()
    contents = run(prepared, live, pseudonym_key())
    path = write_outputs(cfg, contents)
    log.info("materialize: %d users, %d events -> %s", len(contents.users), len(contents.events),
             path)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
