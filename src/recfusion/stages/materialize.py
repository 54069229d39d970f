"""Stage `materialize`: the online store the served model reads users and their events from.

Reads data/prepared/ (users and the train, validation and test events) and fills the online
store at `serving.store` (default the SQLite file data/online/store.sqlite, serving/store.py; or
a Redis URL, serving/redis_store.py, whose local server it starts when none runs): each user's row
with the keyed pseudonym the packaged model knows them by, and every event in arrival order,
then the events of the event log (data/live/events/: what `/events` and `recfusion events` took)
that this run's ingest did not take in (data/raw/source.json lists the batches it did: their
events are in data/prepared), read while the store is locked, so no accepted event drops out
when the pipeline reruns and none is counted twice.
The store is refilled in place in one transaction: a running server reads the old contents or
the new. Writes reports/materialize.json (the DVC output: counts and the store's path). The
store itself is not a DVC output: the server appends to it, and DVC must neither delete it
before the stage runs nor rerun the pipeline because a shopper clicked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection
from pathlib import Path

from recfusion.config import Config
from recfusion.data.event_log import EVENT_LOG_DIR, read_log
from recfusion.data.io import read_json, write_json
from recfusion.data.schema import SPLITS
from recfusion.models.dataset import PreparedData, read_prepared
from recfusion.paths import PREPARED_DIR, RAW_DIR, REPORTS_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.redis_store import shown
from recfusion.serving.store import (
    StoreContents,
    materialize,
    open_store,
    ready_target,
    write_store,
)
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def read_inputs(prepared_dir: Path = PREPARED_DIR) -> PreparedData:
    return read_prepared(prepared_dir)


def run(prepared: PreparedData, key: bytes) -> StoreContents:
    """Every user and every event of every split, pseudonyms made with `key`."""
    return materialize(prepared, SPLITS, key)


def ingested_batches(raw_dir: Path = RAW_DIR) -> tuple[str, ...]:
    """The event log batches this run's ingest took in (data/raw/source.json): their events
    are in data/prepared already."""
    info = read_json(raw_dir / "source.json")
    return tuple(info.get("event_log", {}).get("batches", []))


def write_outputs(cfg: Config, contents: StoreContents, ingested: Collection[str] = (),
                  log_dir: Path = EVENT_LOG_DIR, reports_dir: Path = REPORTS_DIR) -> dict:  # fmt: skip
    """Fills the store, then replays the event log's batches but the `ingested` ones, whose
    events of users the prepared data lacks are replayed too (read under the store's lock),
    and writes reports/materialize.json; returns what it records."""
    store = ready_target(cfg.serving.store, Path("."))
    known = set(contents.users["user_id"])
    replay = lambda: read_log(log_dir, skip=ingested, unless_user_in=known)  # noqa: E731
    events = open_store(write_store(contents, store, replay)).count_events()
    record = {"store": shown(store) if isinstance(store, str) else str(cfg.serving.store),
              "users": len(contents.users),
              "prepared_events": len(contents.events), "ingested_batches": len(ingested),
              "logged_events": events - len(contents.events)}  # fmt: skip
    write_json(record, reports_dir / "materialize.json")
    return record


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    record = write_outputs(cfg, run(read_inputs(), pseudonym_key()), ingested_batches())
    log.info("materialize: %d users, %d prepared and %d logged events -> %s", record["users"],
             record["prepared_events"], record["logged_events"], record["store"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
