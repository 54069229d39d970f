"""Where data-parallel work runs: in this process, or on a Dask cluster (`engine` in params).

A stage splits its work into partitions (chunks of users) and hands them to `Engine.map`:
- `engine.kind: local` runs the partitions here, one after another;
- `engine.kind: dask` sends them to a `dask.distributed` cluster: the scheduler at
  `engine.address` (a real cluster, e.g. one dask-kubernetes started), or, when there is none,
  a `LocalCluster` of `engine.workers` processes on 127.0.0.1 that the stage starts and stops.

The partitions and the function applied to each are the same whichever engine runs them, so
the outputs are identical (tests/data/test_engine.py checks it). Values every partition needs
(a catalogue, the users table) are sent to each worker once, not once per partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recfusion.config import EngineConfig

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30  # how long a stage waits for the scheduler at engine.address


class EngineError(ValueError):
    """The configured engine cannot be reached or started (a setting to fix, like a bad value:
    the stage reports it in one line)."""


class Engine(Protocol):
    workers: int  # processes that run partitions at the same time

    def map(self, fn: Callable[..., Any], parts: Sequence[Any], desc: str,
            **shared: Any) -> list[Any]:  # fmt: skip
        """`[fn(part, **shared) for part in parts]`, in the order of `parts`."""
        ...


class LocalEngine:
    """Runs every partition in this process, one after another."""

    workers = 1

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def map(self, fn: Callable[..., Any], parts: Sequence[Any], desc: str,
            **shared: Any) -> list[Any]:  # fmt: skip
        bar = tqdm(parts, desc=desc, unit="part", disable=not self.progress or len(parts) < 2)
        return [fn(part, **shared) for part in bar]


class DaskEngine:
    """Runs the partitions as tasks of a dask.distributed cluster, through its `Client`."""

    def __init__(self, client: Callable[[], Any], workers: int, progress: bool = False) -> None:
        self._client = client  # returns the Client, once the cluster is up
        self.workers = workers
        self.progress = progress

    @property
    def client(self) -> Any:
        return self._client()

    def map(self, fn: Callable[..., Any], parts: Sequence[Any], desc: str,
            **shared: Any) -> list[Any]:  # fmt: skip
        from distributed import as_completed

        client = self.client
        # data goes to the workers directly, not through the scheduler inside the task graph
        sent = {k: client.scatter(v, broadcast=True, hash=False) for k, v in shared.items()}
        inputs = client.scatter(list(parts), hash=False)
        futures = client.map(fn, inputs, pure=False, key=_task_prefix(fn), **sent)
        bar = tqdm(total=len(futures), desc=f"{desc} (dask)", unit="part",
                   disable=not self.progress or len(futures) < 2)  # fmt: skip
        try:
            for _ in as_completed(futures):
                bar.update(1)
            return client.gather(futures)  # a failed task's error is raised here
        finally:
            bar.close()
            for f in futures:
                f.release()
            for f in [*inputs, *sent.values()]:
                f.release()


def partition_by(df: pd.DataFrame, column: str, n: int) -> list[pd.DataFrame]:
    """`df` in `n` parts by a hash of `column` (all rows with one value in the same part), each
    part in `df`'s row order and keeping its index labels. The hash is pandas' own, so a value
    goes to the same part on every machine and run."""
    if n <= 1:
        return [df]
    part = pd.util.hash_pandas_object(df[column], index=False).to_numpy() % np.uint64(n)
    return [df.iloc[np.flatnonzero(part == i)] for i in range(n)]


def _task_prefix(fn: Callable[..., Any]) -> str:
    """Task key prefix shown by the Dask dashboard, e.g. `clean_partition`."""
    return getattr(fn, "__name__", "partition")


@contextmanager
def open_engine(cfg: EngineConfig, progress: bool = False) -> Iterator[Engine]:
    """The engine `cfg` names, for the length of the `with` block.

    `dask` without `cfg.address` starts a LocalCluster on 127.0.0.1 (worker processes with one
    thread each, no dashboard) and stops it on exit. It starts in the background, so the stage
    reads its inputs meanwhile; the first `map` waits for it. With an address, connects to that
    scheduler and leaves the cluster running.

    Raises:
        EngineError: no scheduler answers at `cfg.address`, or the LocalCluster cannot start
            (then from the first `map`, or on leaving the block).
    """
    if cfg.kind == "local":
        yield LocalEngine(progress)
        return
    if cfg.address:
        client = _connect(cfg.address)
        with client:
            workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            log.info("engine: Dask scheduler %s with %d workers", cfg.address, workers)
            yield DaskEngine(lambda: client, max(1, workers), progress)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="dask-start") as pool:
        starting = pool.submit(_start_local, cfg)
        try:
            yield DaskEngine(lambda: starting.result()[1], cfg.workers, progress)
        finally:
            if starting.exception() is None:
                cluster, client = starting.result()
                client.close()
                cluster.close()


def _connect(address: str) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        raise EngineError(
            f"engine.address {address}: no Dask scheduler answered within "
            f"{CONNECT_TIMEOUT_S} s ({e}); start one (`dask scheduler`) or set "
            "engine.address: null to start a LocalCluster"
        ) from e


def _start_local(cfg: EngineConfig) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    try:
        cluster = LocalCluster(
            n_workers=cfg.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=cfg.memory_limit,
            silence_logs=logging.WARNING,
        )
    except (OSError, TimeoutError, RuntimeError) as e:
        raise EngineError(f"engine: a Dask LocalCluster could not start ({e})") from e
    log.info("engine: Dask LocalCluster of %d worker processes at %s", cfg.workers,
             cluster.scheduler_address)  # fmt: skip
    return cluster, Client(cluster)
