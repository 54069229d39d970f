"""Running one DVC stage from an orchestrator: `dvc repro --single-item NAME`, so DVC decides
whether it is stale and records what it ran in dvc.lock, exactly as a `dvc repro` would.

A file lock keeps two orchestrated runs out of one checkout; DVC's own lock also refuses a
`dvc repro` started by hand meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

LOCK_FILE = Path(".recfusion/pipeline.lock")
DVC_YAML = Path("dvc.yaml")


class StageFailed(RuntimeError):
    """A stage exited non-zero; the message carries the end of its output."""


class PipelineBusy(RuntimeError):
    """Another orchestrated run holds this checkout."""


@contextmanager
def pipeline_lock(root: Path) -> Iterator[None]:
    """Holds the checkout for one run.

    Raises:
        PipelineBusy: another run holds it (runs are queued by the deployment's concurrency
            limit; this is the guard for runs started any other way).
    """
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout as e:
        raise PipelineBusy(f"another pipeline run is using {root} (lock {path}); wait for it "
                           "to finish, or run in another clone") from e  # fmt: skip
    try:
        yield
    finally:
        lock.release()


def project_dir() -> Path:
    """The checkout a flow runs in: RECFUSION_PROJECT_DIR, else the nearest folder holding
    dvc.yaml at or above the working directory (where `make ui` and its runners start).

    Raises:
        FileNotFoundError: no dvc.yaml there or above.
    """
    if os.environ.get("RECFUSION_PROJECT_DIR"):
        return Path(os.environ["RECFUSION_PROJECT_DIR"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml in {here} or above: run from the recfusion checkout "
                            "or set RECFUSION_PROJECT_DIR")  # fmt: skip


def pipeline_stages(path: Path = DVC_YAML) -> list[str]:
    """The stage names of dvc.yaml, in order (the one definition of the pipeline); each runs
    the module recfusion.stages.<name>."""
    try:
        stages = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path} not found: run recfusion from the project root") from e
    return list(stages)


def stage_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage: this interpreter's bin first on PATH (dvc.yaml calls
    `python -m recfusion.stages.*`), plus `extra`."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra or {})}  # fmt: skip


def run_stage(root: Path, name: str, env: Mapping[str, str], log: Callable[[str], None]) -> bool:
    """Runs stage `name` through DVC, passing every output line to `log` as it comes.

    Returns:
        True if the stage ran, False if DVC found it up to date.

    Raises:
        StageFailed: the stage (or DVC) failed.
    """
    dvc = str(Path(sys.executable).parent / "dvc")
    cmd = [dvc, "repro", "--single-item", name]
    tail: deque[str] = deque(maxlen=25)
    ran = False
    with subprocess.Popen(cmd, cwd=root, env=dict(env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if (
                not line
                or line.startswith(("I0000", "WARNING: All log messages"))
                or (line.startswith("E0000") and "cuInit" in line)
            ):
                continue  # TensorFlow's start-up chatter (no GPU is not an error here)
            ran = ran or line.startswith(f"Running stage '{name}'")
            tail.append(line)
            log(line)
        code = proc.wait()
    if code != 0:
        raise StageFailed(f"stage '{name}' failed (exit {code}):\n" + "\n".join(tail))
    return ran
