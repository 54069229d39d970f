"""What every stage's `main()` shares: argument parsing, logging set-up, clear errors, and the
resume-checkpoint folders of the training stages."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from recfusion.config import DEFAULT_PARAMS, Config, load_config
from recfusion.logs import setup_logging

log = logging.getLogger("recfusion")


class StageStopped(RuntimeError):
    """A stage refused to go on (e.g. validation failed); the message says why and where to look."""


def stage_config(description: str | None, argv: list[str] | None) -> Config:
    """Parses `--params`, sets up logging and loads the configuration."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params.yaml path")
    args = parser.parse_args(argv)
    setup_logging()
    return load_config(args.params)


@contextmanager
def stops_on(error: type[Exception], consequence: str) -> Iterator[None]:
    """Turns `error` (e.g. an unreachable tracking store) into a StageStopped that says what it
    means for the run: "<error>; <consequence>"."""
    try:
        yield
    except error as e:
        raise StageStopped(f"{e}; {consequence}") from e


def guarded(main: Callable[[], int]) -> int:
    """Runs `main`; a bad-input error (ValueError and its kin) becomes one clear line and exit
    code 2, a `StageStopped` its message and exit code 1, instead of a traceback.
    RECFUSION_DEBUG=1 shows the traceback."""
    try:
        return main()
    except StageStopped as e:
        setup_logging()
        log.error("%s", e)
        return 1
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("RECFUSION_DEBUG"):
            raise
        setup_logging()
        log.error("%s", e)
        return 2


def fingerprint(cfg: Config, prepared_dir: Path) -> str:
    """A short hash of what training depends on, naming its checkpoint folder."""
    h = hashlib.sha256(json.dumps([cfg.seed, dataclasses.asdict(cfg.train)]).encode())
    for name in ("train.parquet", "val.parquet", "items.parquet", "users.parquet"):
        path = prepared_dir / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
