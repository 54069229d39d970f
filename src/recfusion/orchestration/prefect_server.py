"""The Prefect server `make ui` starts: Prefect's own (`prefect server start ...`), with every
SQLite transaction that may write begun IMMEDIATE.

Why: Prefect 3.9's SQLite store begins a transaction DEFERRED unless the endpoint asks for a
row lock, and its resume endpoint (`POST /flow_runs/{id}/resume`, the UI's "Resume" button)
reads the paused run and then writes its new state in one such transaction. When another
connection commits in between (a training run's log batch, a task state), SQLite answers
SQLITE_BUSY_SNAPSHOT at once, before any busy timeout applies; the server turns it into a 503,
and the UI, which does not retry, shows "Failed to resume flow run": the reviewer's click is
lost. Begun IMMEDIATE, a transaction takes the write lock first and waits up to the store's busy
timeout (60 s) for it instead. Prefect's own rule for SQLite (read-then-write transactions must
pass `with_for_update=True`), applied to every endpoint. Reads outside a transaction are
untouched; a PostgreSQL store (PREFECT_SERVER_DATABASE_CONNECTION_URL) is not affected.

Run as `python -m recfusion.orchestration.prefect_server server start --host ... --port ...`:
one server worker, so the patch is in the process that serves every request.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect.server.database import configurations


def begin_writes_immediately() -> None:
    """Makes every SQLite transaction of this process's Prefect server begin IMMEDIATE."""
    sqlite = configurations.AioSqliteConfiguration
    if getattr(sqlite.begin_transaction, "recfusion_immediate", False):
        return
    original = sqlite.begin_transaction

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return original(self, session, with_for_update=True)

    begin_transaction.recfusion_immediate = True  # type: ignore[attr-defined]
    sqlite.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main() -> None:
    begin_writes_immediately()
    from prefect.cli import app

    sys.argv = ["prefect", *sys.argv[1:]]
    app()  # Prefect's CLI exits with the command's status


if __name__ == "__main__":
    main()
