"""The Dask engine (a real LocalCluster on 127.0.0.1) gives what the local engine gives."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pandas as pd
import pytest
import yaml

from recfusion import engine as engines
from recfusion.config import Config
from recfusion.data import synthetic
from recfusion.data.io import read_json, write_table
from recfusion.engine import Engine, EngineError, LocalEngine, open_engine, partition_by
from recfusion.preparation.clean import Ledger, clean_events
from recfusion.preparation.partitions import clean_events_on
from recfusion.stages import prepare
from tests.conftest import PARAMS, repo_config
from tests.unit.test_prepare import corrupt
from tests.workspace import free_port


def dask_config(cfg: Config, **engine: object) -> Config:
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="dask", **engine))


class Counted:
    """An engine that counts the `map` calls it passes on, so a test knows the work ran there."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.workers, self.calls = engine, engine.workers, 0

    def map(self, fn, parts, desc, **shared):
        self.calls += 1
        return self.engine.map(fn, parts, desc, **shared)


class InProcess:
    """`workers` partitions run here, each input and output pickled as Dask would send it."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn, parts, desc, **shared):
        return [pickle.loads(pickle.dumps(fn(pickle.loads(pickle.dumps(p)), **shared)))
                for p in parts]  # fmt: skip


@pytest.fixture(scope="module")
def dask_engine() -> Iterator[Engine]:
    """One LocalCluster of two worker processes for the module, started as a stage starts it."""
    with open_engine(dask_config(repo_config()).engine) as engine:
        yield engine


@pytest.fixture
def cluster(dask_engine) -> Iterator[Counted]:
    counted = Counted(dask_engine)
    yield counted
    assert counted.calls > 0, "nothing ran on the cluster"


def test_partitions_keep_each_user_whole_and_every_row_once(tiny_tables) -> None:
    events = tiny_tables["events"]
    parts = partition_by(events, "user_id", 3)
    assert sum(len(p) for p in parts) == len(events)
    assert sorted(pd.concat(parts).index) == list(events.index)
    owners = [set(p["user_id"]) for p in parts]
    assert all(a.isdisjoint(b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert all(p.index.is_monotonic_increasing for p in parts)  # the table's order within a part
    assert partition_by(events, "user_id", 1)[0] is events


def divide(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


@pytest.mark.parametrize("workers", [2, 7])
def test_cleaning_in_partitions_matches_cleaning_the_whole_table(tiny_tables, workers) -> None:
    users, items = tiny_tables["users"], tiny_tables["items"]
    events = corrupt(tiny_tables)["events"]
    events.loc[events.index[3:6], "user_id"] = None  # rows without a user: one partition
    for table in (events, events.head(4), events.head(0)):  # 7 workers, 4 rows: empty parts
        for dedup in (True, False):
            whole, parts = Ledger(), Ledger()
            expected = clean_events(table, users, items, dedup, whole)
            got = clean_events_on(InProcess(workers), table, users, items, dedup, parts)
            pd.testing.assert_frame_equal(got, expected)
            assert parts.as_dict() == whole.as_dict()


def test_the_cluster_runs_partitions_in_order_and_reports_a_failing_one(cluster) -> None:
    assert cluster.workers == 2
    assert cluster.map(divide, [7, 9, 11], "divide", b=4) == [(1, 3), (2, 1), (2, 3)]
    with pytest.raises(ZeroDivisionError):
        cluster.map(divide, [1, 2], "divide", b=0)


def test_synthetic_chunks_on_the_cluster_give_the_same_shop(cluster, tiny_cfg, monkeypatch) -> None:
    monkeypatch.setattr(synthetic, "USERS_PER_CHUNK", 70)  # the tiny shop's 300 users in 5 chunks
    here = synthetic.generate(tiny_cfg.ingest.synthetic, 5, progress=False)
    there = synthetic.generate(tiny_cfg.ingest.synthetic, 5, progress=False, engine=cluster)
    for name in here:
        pd.testing.assert_frame_equal(here[name], there[name])


@pytest.mark.parametrize("method", ["temporal", "leave_last_n", "random_ratio"])
def test_prepare_on_the_cluster_gives_the_local_outputs(cluster, tiny_tables, method) -> None:
    cfg = repo_config({"prepare": {"split": {"method": method}}})
    tables = corrupt(tiny_tables)  # duplicates, unknown users and items, bad types, no time
    here = prepare.run(cfg, tables, LocalEngine())
    there = prepare.run(cfg, tables, cluster)
    assert there.summary == here.summary  # the ledger's drops by reason included
    dropped = here.summary["tables"]["events"]["dropped"]
    assert {"duplicate", "unknown_user", "unknown_item", "bad_event_type",
            "missing_timestamp"} <= set(dropped)  # fmt: skip
    for name in here.splits:
        pd.testing.assert_frame_equal(there.splits[name], here.splits[name])
    pd.testing.assert_frame_equal(there.users, here.users)
    pd.testing.assert_frame_equal(there.items, here.items)
    assert there.vocabularies == here.vocabularies


def test_the_prepare_stage_runs_on_a_cluster_it_starts(tmp_path, tiny_tables) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["engine"]["kind"] = "dask"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name, df in tiny_tables.items():
        write_table(df, tmp_path / "data/validated" / f"{name}.parquet")
    done = subprocess.run([sys.executable, "-m", "recfusion.stages.prepare", "--params",
                           "params.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Dask LocalCluster of 2 worker processes at tcp://127.0.0.1:" in done.stderr
    local = prepare.run(repo_config(), tiny_tables)
    assert read_json(tmp_path / "data/prepared/summary.json")["tables"] == local.summary["tables"]
    train = pd.read_parquet(tmp_path / "data/prepared/train.parquet")
    pd.testing.assert_frame_equal(train, local.splits["train"])
    shutil.rmtree(tmp_path / "data")


def test_a_cluster_stops_when_the_work_fails() -> None:
    with pytest.raises(KeyError), open_engine(dask_config(repo_config()).engine) as engine:
        client = engine.client
        raise KeyError("the stage failed")
    assert client.status == "closed"


def test_a_cluster_that_cannot_start_is_an_error_even_if_unused(monkeypatch) -> None:
    def cannot(cfg):
        raise EngineError("engine: a Dask LocalCluster could not start (no ports)")

    monkeypatch.setattr(engines, "_start_local", cannot)
    with (
        pytest.raises(EngineError, match="could not start"),
        open_engine(dask_config(repo_config()).engine),
    ):
        pass


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(engines, "CONNECT_TIMEOUT_S", 1)
    address = f"tcp://127.0.0.1:{free_port()}"
    cfg = dask_config(repo_config(), address=address)
    with (pytest.raises(EngineError, match=f"engine.address {address}: no Dask scheduler"),
          open_engine(cfg.engine)):  # fmt: skip
        pass
