"""A local Redis server for the online store, started by recfusion's own commands when
`serving.store` names Redis on this machine (127.0.0.1, localhost or ::1) and nothing answers
there: Debian's `redis-server` (make installs it), bound to loopback only, its data kept in
data/online/redis/ with the append-only file on, so a restart keeps the store.

The materialize stage, `recfusion serve`, `recfusion events` and `recfusion forget` call
`ensure_local`; `recfusion store-server` starts it (or `--stop`s it) by hand. A Redis on another
machine is never started here: point serving.store at it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from recfusion.serving.redis_store import client, shown
from recfusion.serving.store import StoreError

REDIS_DIR = Path("data/online/redis")  # the local server's data, log and pid file
LOOPBACK = ("127.0.0.1", "localhost")  # what the started server binds (IPv4 loopback)
START_TIMEOUT_S = 10.0


def local_port(url: str) -> int | None:
    """The port of a Redis URL on this machine (`redis://127.0.0.1:6379/0`), or None for a
    server elsewhere (or a unix socket, which its owner starts)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOOPBACK:
        return None
    return parts.port or 6379


def answers(url: str) -> bool:
    """Whether a Redis server answers at `url` (one that wants another password answers too:
    starting a second server on its port would not help)."""
    import redis

    try:
        return bool(client(url).ping())
    except redis.AuthenticationError:
        return True
    except redis.RedisError:
        return False


def start_command(port: int, data_dir: Path) -> list[str]:
    """redis-server's command line: loopback only, append-only file, no RDB snapshots (the
    append-only file is what a restart reads; `forget` is gone from it at its next rewrite)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StoreError("redis-server is not installed: `make redis-server` installs Debian's "
                         "(apt-get install redis-server), or set serving.store to a SQLite "
                         "file")  # fmt: skip
    return [binary, "--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes",
            "--dir", str(data_dir.resolve()), "--appendonly", "yes", "--save", "",
            "--daemonize", "yes", "--pidfile", str((data_dir / "redis.pid").resolve()),
            "--logfile", str((data_dir / "redis.log").resolve())]  # fmt: skip


def ensure_local(url: str, data_dir: Path = REDIS_DIR) -> bool:
    """Starts a Redis server for `url` when it is on this machine and none answers; returns
    whether one was started.

    Raises:
        StoreError: redis-server is missing, or did not answer within START_TIMEOUT_S.
    """
    port = local_port(url)
    if port is None or answers(url):
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(start_command(port, data_dir), capture_output=True, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(url):
        if done.returncode != 0 or time.monotonic() > deadline:
            log = data_dir / "redis.log"
            said = log.read_text()[-500:] if log.is_file() else done.stderr[-500:]
            raise StoreError(f"redis-server did not start for {shown(url)}: {said.strip()}")
        time.sleep(0.05)
    return True


def stop_local(url: str) -> bool:
    """Shuts down the local Redis server of `url` (it writes its append-only file first);
    returns whether one was running."""
    import redis

    if local_port(url) is None:
        raise StoreError(f"{shown(url)} is not a server on this machine; stop it where it runs")
    if not answers(url):
        return False
    try:
        client(url).shutdown()
    except redis.AuthenticationError as e:
        raise StoreError(f"Redis at {shown(url)} wants a password: set "
                         "RECFUSION_REDIS_PASSWORD") from e  # fmt: skip
    except redis.ConnectionError:
        pass  # the server closes the connection as it goes down
    return True
