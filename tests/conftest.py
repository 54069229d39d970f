"""Shared fixtures: the repo's params with overrides, and tiny synthetic tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recfusion.config import Config, load_config, with_overrides
from recfusion.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
TINY = {"ingest": {"synthetic": {"size": "tiny"}}}


def repo_config(overrides: dict[str, Any] | None = None) -> Config:
    """The repository's params.yaml at the tiny size, with `overrides` merged in."""
    return with_overrides(load_config(PARAMS, TINY), overrides or {})


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server (Debian's redis-server, which `make test` installs) on a free
    loopback port, started by recfusion's own starter (serving/redis_server.py)."""
    from recfusion.serving.redis_server import ensure_local, stop_local
    from tests.workspace import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    assert ensure_local(url, tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        stop_local(url)


@pytest.fixture(params=["sqlite", "redis"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's online store goes, once per backend: a SQLite file, or an emptied
    database of the test session's Redis server."""
    if request.param == "sqlite":
        return tmp_path / "s.sqlite"
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return str(url)


@pytest.fixture(scope="session")
def tiny_cfg() -> Config:
    return repo_config()


@pytest.fixture(scope="session")
def tiny_tables(tiny_cfg: Config) -> dict[str, pd.DataFrame]:
    return generate(tiny_cfg.ingest.synthetic, tiny_cfg.seed, progress=False)


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """The repository at the tiny size with every stage before `register` run once a session
    (tests/workspace.py); copy it with `copy_workspace` before changing anything in it.

    Under pytest-xdist (`make test` runs two workers) the first worker to ask builds it and the
    other waits for it and reuses it: xdist's recipe for a session fixture that runs once."""
    import json
    import os

    from filelock import FileLock

    from tests.workspace import tool_env, trained_snapshot

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return trained_snapshot(tmp_path_factory.mktemp("trained"))
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker
    with FileLock(str(shared / "trained.lock")):
        record = shared / "trained.json"
        if record.is_file():
            built = json.loads(record.read_text())
            return Path(built["dest"]), tool_env(), built["output"]
        dest, env, output = trained_snapshot(shared / "trained")
        record.write_text(json.dumps({"dest": str(dest), "output": output}))
        return dest, env, output


# The order `make test` hands test files to its two pytest-xdist workers (`--dist loadfile
# --no-loadscope-reorder` keeps this order): the long end-to-end chain first, so that the worker
# running it builds the trained workspace while the other runs the model tests, then the flow
# tests (which wait for that workspace), then the many short files for whichever worker is free.
FILE_ORDER = ("e2e/test_dvc_repro.py", "model/", "flows/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        tests = REPO / "tests"
        path = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        ranks = [i for i, prefix in enumerate(FILE_ORDER) if path and path.startswith(prefix)]
        return ranks[0] if ranks else len(FILE_ORDER)

    items.sort(key=rank)  # stable: the order inside a file, and among equals, stays
