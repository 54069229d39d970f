"""Multi-worker training (`train.distribute: multi_worker`): one training stage as several
processes under TensorFlow's MultiWorkerMirroredStrategy, which TF_CONFIG configures.

Two ways to start them:
- TF_CONFIG is set (a cluster's launcher, or the Prefect flow's worker tasks): this process is
  the task TF_CONFIG names and joins that cluster;
- TF_CONFIG is not set: the stage is worker 0, the chief, of a cluster on 127.0.0.1, and a
  supervisor process (`supervise`) runs `train.workers - 1` more processes of the stage, each
  with its own TF_CONFIG.

Every worker trains on its share of each batch, and every worker saves (saving takes part in
collective ops), but only the chief's checkpoints, models and reports are kept: the others write
theirs to scratch folders that go when they finish.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Role:
    index: int  # this process's place in the cluster; 0 = the chief
    count: int  # processes in the cluster

    @property
    def chief(self) -> bool:
        return self.index == 0


SINGLE = Role(0, 1)


def role_of(tf_config: str | None) -> Role:
    """This process's role by TF_CONFIG's text (None or empty: a single process). The chief is
    the `chief` task when the cluster has one, else worker 0 (TensorFlow's rule).

    Raises:
        ValueError: TF_CONFIG is not JSON of that shape.
    """
    if not tf_config:
        return SINGLE
    try:
        spec = json.loads(tf_config)
        chiefs, workers = spec["cluster"].get("chief", []), spec["cluster"].get("worker", [])
        kind, index = spec["task"]["type"], int(spec["task"]["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG is not a cluster spec ({e}): expected "
                         '{"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": 0}}') from e  # fmt: skip
    tasks = {"chief": chiefs, "worker": workers}
    if kind not in tasks or not 0 <= index < len(tasks[kind]):
        raise ValueError(f"TF_CONFIG's task {kind!r} {index} is not in its cluster")
    return Role(index if kind == "chief" else len(chiefs) + index, len(chiefs) + len(workers))


def local_hosts(n: int) -> list[str]:
    """`n` free host:port addresses on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_config(hosts: Sequence[str], index: int) -> str:
    """The TF_CONFIG of worker `index` of a cluster of `hosts` (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": list(hosts)},
                       "task": {"type": "worker", "index": index}})  # fmt: skip


def worker_env(hosts: Sequence[str], index: int, threads: int) -> dict[str, str]:
    """The environment additions of worker `index`: its TF_CONFIG, and `threads` TensorFlow
    threads unless the environment already says how many (the workers of one machine share
    its cores)."""
    env = {TF_CONFIG: cluster_config(hosts, index)}
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[var] = os.environ.get(var, str(threads))
    return env


def die_with_parent(parent: int | None = None) -> None:
    """Asks Linux to kill this process when its parent ends (PR_SET_PDEATHSIG), so a killed
    stage leaves no process waiting for it; with `parent`, ends at once if that parent is
    already gone. Elsewhere nothing."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(3)


def supervise(chief: int, module: str, hosts: Sequence[str], threads: int,
              argv: Sequence[str]) -> int:  # fmt: skip
    """The supervisor process a chief starts: runs workers 1.. of `hosts` as
    `python -m module argv`, each dying with it, and itself dies with the chief. A worker that
    fails ends the chief (SIGTERM) and the other workers: they would wait for it forever, and
    a thread of the chief could not act, as TensorFlow holds the GIL while it waits for its
    peers. Returns 0 when every worker ended well."""
    die_with_parent(chief)
    procs = {
        subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            env={**os.environ, **worker_env(hosts, i, threads)},
            preexec_fn=die_with_parent,
        ).pid: i  # fmt: skip
        for i in range(1, len(hosts))
    }
    log.info("multi-worker training: workers started (pids %s)", sorted(procs))
    while procs:
        pid, status = os.wait()
        index = procs.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if index is not None and code != 0:
            log.error("worker %d (pid %d) failed with exit code %d: stopping the training",
                      index, pid, code)  # fmt: skip
            for other in procs:
                os.kill(other, signal.SIGKILL)
            os.kill(chief, signal.SIGTERM)
            return 1
    return 0


@contextmanager
def training_processes(distribute: str, workers: int, module: str,
                       argv: Sequence[str] | None) -> Iterator[Role]:  # fmt: skip
    """This process's role in training, with the workers it must start running meanwhile.

    Not multi_worker: a single process. multi_worker with TF_CONFIG set: the role it names
    (a worker other than the chief logs warnings only; the chief logs the training). Without
    TF_CONFIG: this process is worker 0 of a cluster on 127.0.0.1, and a supervisor process
    (`supervise`) runs workers 1..`workers`-1 meanwhile; on leaving, waits for them.

    A worker that ended with an error ends this process with exit code 1 and a logged line
    (SystemExit: no traceback).
    """
    if distribute != "multi_worker":
        yield SINGLE
        return
    if os.environ.get(TF_CONFIG):
        role = role_of(os.environ[TF_CONFIG])
        if not role.chief:
            logging.getLogger("recfusion").setLevel(logging.WARNING)
        yield role
        return
    hosts = local_hosts(workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ.update(worker_env(hosts, 0, threads))
    args = sys.argv[1:] if argv is None else argv  # the workers read the same params file
    supervisor = subprocess.Popen([sys.executable, "-m", __name__, str(os.getpid()), module,
                                   ",".join(hosts), str(threads), *args])  # fmt: skip
    log.info("multi-worker training: this process is the chief of %s", hosts)
    try:
        yield Role(0, workers)
    except BaseException:
        supervisor.kill()  # its workers die with it
        raise
    finally:
        os.environ.pop(TF_CONFIG, None)
    if supervisor.wait() != 0:
        log.error("multi-worker training: a worker failed (see its log above)")
        raise SystemExit(1)


@contextmanager
def kept_outputs(role: Role, *folders: Path) -> Iterator[tuple[Path, ...]]:
    """The folders this process writes its outputs to: `folders` on the chief (or a single
    process); on another worker, empty scratch folders that are removed afterwards."""
    if role.chief:
        yield folders
        return
    with tempfile.TemporaryDirectory(prefix="recfusion-worker-") as scratch:
        yield tuple(Path(scratch) / f"{i}-{f.name}" for i, f in enumerate(folders))


if __name__ == "__main__":
    from recfusion.logs import setup_logging

    setup_logging()
    chief_pid, worker_module, host_list, thread_count, *worker_argv = sys.argv[1:]
    sys.exit(supervise(int(chief_pid), worker_module, host_list.split(","), int(thread_count),
                       worker_argv))  # fmt: skip
