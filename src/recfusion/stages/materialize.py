"""Stage `materialize`: the online store the served model reads users and their events from.

Reads data/prepared/ (users and the train, validation and test events) and writes the SQLite
store at `serving.store` (default data/online/store.sqlite; serving/store.py): each user's row
with the keyed pseudonym the packaged model knows them by, and every event in arrival order. A
served model then answers with each user's whole history, fresher than the splits it was fitted
on; the store is replaced whole (readers see the old one or the new one).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from recfusion.config import Config
from recfusion.data.schema import SPLITS
from recfusion.models.dataset import PreparedData, read_prepared
from recfusion.paths import PREPARED_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.store import StoreContents, materialize, write_store
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def read_inputs(prepared_dir: Path = PREPARED_DIR) -> PreparedData:
    return read_prepared(prepared_dir)


def run(prepared: PreparedData, key: bytes) -> StoreContents:
    """Every user and every event of every split, pseudonyms made with `key`."""
    return materialize(prepared, SPLITS, key)


def write_outputs(cfg: Config, contents: StoreContents) -> Path:
    return write_store(contents, Path(cfg.serving.store))


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    contents = run(read_inputs(), pseudonym_key())
    path = write_outputs(cfg, contents)
    log.info("materialize: %d users, %d events -> %s", len(contents.users), len(contents.events),
             path)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
