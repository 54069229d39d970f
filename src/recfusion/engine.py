"""Where data-parallel work runs: in this process, or on a Dask cluster (`engine` in params).

A stage splits its work into partitions (chunks of users) and hands them to `Engine.map`:
- `engine.kind: local` runs the partitions here, one after another;
- `engine.kind: dask` sends them to a `dask.distributed` cluster: the scheduler at
  `engine.address` (a real cluster, e.g. one dask-kubernetes started), or, when there is none,
  a `LocalCluster` of `engine.workers` processes on 127.0.0.1 that the stage starts and stops.

The partitions and the function applied to each are the same whichever engine runs them, so
the outputs are identical (tests/data/test_engine.py checks it). Values every partition needs
(the generator's catalogue and population, the known user and item ids) go to each worker once,
not once per partition.
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

CONNECT_TIMEOUT_S = 30  # how long a stage waits for the scheduler at engine.address, and a worker


class EngineError(ValueError):
    """The configured engine cannot be reached or started (a setting to fix, like a bad value:
    the stage reports it in one line)."""


class Engine(Protocol):
    workers: int  # processes that run partitions at the same time

    def map(
        self, fn: Callable[..., Any], parts: Sequence[Any], desc: str, **shared: Any
    ) -> list[Any]:
        """`[fn(part, **shared) for part in parts]`, in the order of `parts`."""
        ...


class LocalEngine:
    """Runs every partition in this process, one after another."""

    workers = 1

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def map(
        self, fn: Callable[..., Any], parts: Sequence[Any], desc: str, **shared: Any
    ) -> list[Any]:
        bar = tqdm(parts, desc=desc, unit="part", disable=not self.progress)
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

    def map(
        self, fn: Callable[..., Any], parts: Sequence[Any], desc: str, **shared: Any
    ) -> list[Any]:
        """As `Engine.map`: the parts and `shared` go to the workers directly (`scatter`; the
        shared values to every worker), not through the scheduler inside the task graph.

        Raises:
            Whatever a task raised, with its traceback.
        """
        from distributed import as_completed

        client = self.client
        sent = {k: client.scatter(v, broadcast=True, hash=False) for k, v in shared.items()}
        inputs = client.scatter(list(parts), hash=False)
        futures = client.map(fn, inputs, pure=False, key=getattr(fn, "__name__", "part"), **sent)
        bar = tqdm(total=len(futures), desc=f"{desc} (dask)", unit="part",
                   disable=not self.progress)  # fmt: skip
        try:
            for _ in as_completed(futures):
                bar.update(1)
            return client.gather(futures)  # a failed task's error is raised here
        finally:
            bar.close()
            for f in [*futures, *inputs, *sent.values()]:
                f.release()


def partition_by(df: pd.DataFrame, column: str, n: int) -> list[pd.DataFrame]:
    """`df` in `n` parts by a hash of `column`.

    Args:
        df: the table.
        column: every row with one value of it goes to the same part; the hash is pandas'
            own, so a value goes to the same part on every machine and run.
        n: the number of parts; 1 gives `[df]` itself.

    Returns:
        The parts, each in `df`'s row order and keeping its index labels (some may be empty).
    """
    if n <= 1:
        return [df]
    part = pd.util.hash_pandas_object(df[column], index=False).to_numpy() % np.uint64(n)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(1, n, dtype=np.uint64))
    return [df.iloc[rows] for rows in np.split(order, bounds)]


@contextmanager
def open_engine(cfg: EngineConfig, progress: bool = False) -> Iterator[Engine]:
    """The engine `cfg` names, for the length of the `with` block.

    `dask` without `cfg.address` starts a LocalCluster on 127.0.0.1 (worker processes with one
    thread each; every port on loopback, none fixed) and stops it on exit. It starts in the background, so the stage
    reads its inputs meanwhile; the first `map` waits for it. With an address, connects to that
    scheduler, waits for a worker and checks that the workers run the versions of Python,
    pandas, NumPy and Dask this process runs; the cluster is left running.

    Raises:
        EngineError: no scheduler or worker answers at `cfg.address`, its versions differ, or
            the LocalCluster cannot start (from the first `map`, or on leaving the block).
    """
    if cfg.kind == "local":
        yield LocalEngine(progress)
        return
    if cfg.address:
        client = _connect(cfg.address)
        with client:
            workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            log.info("engine: Dask scheduler %s with %d workers", cfg.address, workers)
            yield DaskEngine(lambda: client, workers, progress)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="dask-start") as pool:
        starting = pool.submit(_start_local, cfg)
        try:
            yield DaskEngine(lambda: starting.result()[1], cfg.workers, progress)
        except BaseException:
            if starting.exception() is None:  # the block's error goes on; the cluster stops
                _stop(*starting.result())
            raise
        _stop(*starting.result())  # a failed start is raised here if the block did not use it


def _stop(cluster: Any, client: Any) -> None:
    client.close()
    cluster.close()


def _connect(address: str) -> Any:
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        raise EngineError(
            f"engine.address {address}: no Dask scheduler answered within "
            f"{CONNECT_TIMEOUT_S} s ({e}); start one (`dask scheduler`) or set "
            "engine.address: null to start a LocalCluster"
        ) from e
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        client.get_versions(check=True)
    except (OSError, TimeoutError, ValueError) as e:
        client.close()
        raise EngineError(f"engine.address {address}: the cluster cannot take work ({e})") from e
    return client


def _start_local(cfg: EngineConfig) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    try:
        cluster = LocalCluster(
            n_workers=cfg.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # its metrics page only (no bokeh): any free port
            memory_limit=cfg.memory_limit,
            silence_logs=logging.WARNING,
        )
    except (OSError, TimeoutError, RuntimeError, ValueError) as e:
        raise EngineError(
            f"engine: a Dask LocalCluster of {cfg.workers} workers (engine.workers) with "
            f"engine.memory_limit {cfg.memory_limit} could not start ({e})"
        ) from e
    try:
        client = Client(cluster)
    except (OSError, TimeoutError) as e:
        cluster.close()
        raise EngineError(f"engine: no client could join the Dask LocalCluster ({e})") from e
    log.info("engine: Dask LocalCluster of %d worker processes at %s", cfg.workers,
             cluster.scheduler_address)  # fmt: skip
    return cluster, client
