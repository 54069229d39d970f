"""Running one DVC stage from an orchestrator: `dvc repro --single-item NAME`, so DVC decides
whether it is stale and records what it ran in dvc.lock, exactly as a `dvc repro` would.

A file lock keeps two orchestrated runs out of one checkout; DVC's own lock also refuses a
`dvc repro` started by hand meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children first; Linux /proc), so that stopping DVC stops the
    stage it runs too; elsewhere none."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            for child in map(int, children.read_text().split()):
                found += [child, *descendants(child)]
    return found


def stop(proc: subprocess.Popen, signals: Sequence[tuple[int, float]]) -> None:
    """Sends each signal in turn to `proc` and the processes below it, waiting up to its
    seconds for `proc` to end before the next."""
    for sig, grace in signals:
        for pid in [*descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
            return


def stop_on(abort: threading.Event, proc: subprocess.Popen) -> None:
    """Stops `proc` and what it runs once `abort` is set while it runs: SIGINT, then SIGKILL
    10 s later (a stage blocked in native code does not answer SIGINT)."""
    while not abort.wait(1.0):
        if proc.poll() is not None:
            return
    stop(proc, [(signal.SIGINT, 10.0), (signal.SIGKILL, 10.0)])


def stage_is_stale(root: Path, name: str, env: Mapping[str, str]) -> bool:
    """Whether `dvc repro --single-item NAME` would run the stage now (`dvc status NAME`).

    Raises:
        StageFailed: DVC could not tell.
    """
    dvc = str(Path(sys.executable).parent / "dvc")
    done = subprocess.run([dvc, "status", "--json", name], cwd=root, env=dict(env),
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise StageFailed(f"dvc status {name} failed: {done.stderr.strip()[-500:]}")
    return bool(json.loads(done.stdout or "{}"))


def run_stage(root: Path, name: str, env: Mapping[str, str], log: Callable[[str], None],
              abort: threading.Event | None = None) -> bool:  # fmt: skip
    """Runs stage `name` through DVC, passing every output line to `log` as it comes. Setting
    `abort` stops DVC and the stage (`stop_on`); so does an exception while it runs (the flow
    run cancelled) when `abort` is given.

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
        if abort is not None:
            threading.Thread(target=stop_on, args=(abort, proc), daemon=True).start()
        assert proc.stdout is not None
        try:
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
        except BaseException:
            if abort is not None:
                stop(proc, [(signal.SIGKILL, 10.0)])
            raise
        code = proc.wait()
    if code != 0:
        raise StageFailed(f"stage '{name}' failed (exit {code}):\n" + "\n".join(tail))
    return ran
