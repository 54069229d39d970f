"""Forgetting a user everywhere serving keeps them: the online store's row and events, the
event log's rows (each file rewritten without them, or removed when nothing is left), and the
forget list that makes the next `ingest` drop them from the training data (data/forget.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recfusion.data.forget import add_forgotten
from recfusion.privacy import key_pseudonym
from recfusion.serving.store import WritableStore


@dataclass(frozen=True)
class Forgotten:
    store_users: int  # user rows removed from the online store
    store_events: int  # events removed from the online store
    log_rows: int  # rows removed from the event log
    log_files: int  # event log files rewritten or removed
    newly_listed: bool  # False: the user was on the forget list already

    def report(self, forget_file: Path) -> str:
        listed = "added to" if self.newly_listed else "already on"
        return (f"online store: {self.store_users} user row(s) and {self.store_events} event(s) "
                f"removed; event log: {self.log_rows} row(s) removed from {self.log_files} "
                f"file(s); {listed} {forget_file}: the next `dvc repro` drops them from the "
                "training data (commit the file)")  # fmt: skip


def purge_log(user_id: str, folder: Path) -> tuple[int, int]:
    """Removes `user_id`'s rows from every Parquet file under `folder`: (rows, files touched)."""
    rows = files = 0
    for path in sorted(folder.rglob("*.parquet")) if folder.is_dir() else []:
        table = pd.read_parquet(path)
        mine = table["user_id"].astype(str) == user_id
        if not mine.any():
            continue
        rows, files = rows + int(mine.sum()), files + 1
        if mine.all():
            path.unlink()
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        table[~mine].reset_index(drop=True).to_parquet(tmp, index=False)
        tmp.replace(path)
    return rows, files


def forget_user(user_id: str, store: WritableStore, log_dir: Path, forget_file: Path,
                key: bytes) -> Forgotten:  # fmt: skip
    """Lists the user's pseudonym, then removes them from the event log and the store, in that
    order: if a step fails, the earlier ones hold (a listed user never comes back through a
    retrain, a purged log never replays them into the store), and running it again finishes."""
    listed = add_forgotten([key_pseudonym(user_id, key)], forget_file)
    rows, files = purge_log(user_id, log_dir)
    users, events = store.forget(user_id)
    return Forgotten(users, events, rows, files, listed)
