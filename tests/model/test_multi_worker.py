"""Multi-worker training (`train.distribute: multi_worker`): the training stages run as two
processes on 127.0.0.1 under MultiWorkerMirroredStrategy; the chief's exports load and work,
and neither a failed worker nor a killed chief leaves a process waiting forever."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from recfusion.models.workers import SINGLE, Role, cluster_config, kept_outputs, role_of
from tests.conftest import PARAMS, REPO
from tests.model.conftest import TRAIN, prepared_data
from tests.model.test_retrieval import one_category_shares

STARTED = re.compile(r"workers started \(pids \[(\d+)\]\)")


def stage(workspace: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("TF_CONFIG", None)
    # not params.yaml: a worker that read another file than its chief would find none
    return subprocess.Popen([sys.executable, "-m", f"recfusion.stages.{name}", "--params",
                             "multi.yaml"], cwd=workspace, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def started_worker(proc: subprocess.Popen, seen: list[str]) -> int:
    """Reads the stage's output up to the line naming the worker it started; that pid."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if m := STARTED.search(line):
            return int(m.group(1))
    raise AssertionError("no worker was started:\n" + "".join(seen[-30:]))


def gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.2)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_tables) -> Path:
    """A folder with the tiny data prepared and multi.yaml asking for two workers."""
    from recfusion.stages import prepare
    from tests.conftest import repo_config

    root = tmp_path_factory.mktemp("multi_worker")
    prepare.write_outputs(prepare.run(repo_config(), tiny_tables), root / "data/prepared",
                          root / "reports")  # fmt: skip
    params = yaml.safe_load(PARAMS.read_text())
    params["ingest"]["synthetic"]["size"] = "tiny"
    params["train"].update(distribute="multi_worker", workers=2)
    # two replicas of 128: the global batch, and so the steps, of the single-process tests;
    # every epoch runs (on 730 examples an early stop after 2 epochs stays near popularity)
    params["train"]["retrieval"].update({**TRAIN["train"]["retrieval"], "batch_size": 128,
                                         "patience": 6})  # fmt: skip
    params["train"]["ranking"].update(epochs=1, hard_negatives=0)
    (root / "multi.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def trained(workspace) -> Path:
    for name in ("train_retrieval", "train_ranking"):
        proc = stage(workspace, name)
        try:
            out, _ = proc.communicate(timeout=600)
        finally:
            proc.kill()  # after a timeout: its supervisor and worker die with it
        assert proc.returncode == 0, out[-4000:]
    return workspace


def test_two_workers_train_and_the_chief_exports_a_model_that_ranks(trained, tiny_tables) -> None:
    from recfusion.models.dataset import build_model_data
    from recfusion.models.export import load_retrieval
    from recfusion.models.ranking import load_ranking_model
    from recfusion.stages import prepare
    from tests.conftest import repo_config

    report = json.loads((trained / "reports/retrieval.json").read_text())
    assert report["devices"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert report["devices"]["workers"] == 2
    assert report["best_epoch"] >= 1
    ranking = json.loads((trained / "reports/ranking.json").read_text())
    assert ranking["devices"]["workers"] == 2
    assert all(0.0 <= h["auc"] <= 1.0 for h in ranking["heads"].values())
    # only the chief kept its resume state: both stages removed it after exporting
    assert not any((trained / ".recfusion/checkpoints").rglob("*.index"))

    cfg = repo_config(TRAIN)
    data = build_model_data(prepared_data(prepare.run(cfg, tiny_tables)), cfg.train)
    retrieval = load_retrieval(data, trained / "models/retrieval")
    assert load_ranking_model(trained / "models/ranking", data) is not None
    # a new user who bought only one category's items gets that category back
    shares = one_category_shares(retrieval.encode, retrieval.items, data, tiny_tables["items"])
    # 48 leaves: a category-blind model would give about 0.02
    assert np.mean(shares) >= 0.5, shares


def test_a_killed_chief_takes_its_workers_with_it(workspace) -> None:
    proc = stage(workspace, "train_retrieval")
    seen: list[str] = []
    worker = None
    try:
        worker = started_worker(proc, seen)
        time.sleep(3)
        proc.send_signal(signal.SIGKILL)
        assert gone(worker, within=30), "the worker outlived its chief"
    finally:
        proc.kill()
        proc.wait()
        if worker is not None and not gone(worker, within=0):
            os.kill(worker, signal.SIGKILL)  # the test failed: leave no process behind


def test_a_failed_worker_fails_the_stage(workspace) -> None:
    proc = stage(workspace, "train_retrieval")
    seen: list[str] = []
    try:
        worker = started_worker(proc, seen)
        time.sleep(3)
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert "worker 1" in "".join(seen) + out and "failed" in out


def test_tf_config_names_the_role() -> None:
    hosts = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    assert role_of(None) == SINGLE and role_of("") == SINGLE
    assert role_of(cluster_config(hosts, 0)) == Role(0, 3)
    assert role_of(cluster_config(hosts, 2)) == Role(2, 3) and not Role(2, 3).chief
    with_chief = {"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]},
                  "task": {"type": "worker", "index": 0}}  # fmt: skip
    assert role_of(json.dumps(with_chief)) == Role(1, 3)
    for bad in ("not json", '{"cluster": {}}', json.dumps({**with_chief, "task": {
            "type": "ps", "index": 0}}), cluster_config(hosts, 3)):  # fmt: skip
        with pytest.raises(ValueError, match="TF_CONFIG"):
            role_of(bad)


def test_only_the_chief_writes_where_outputs_go(tmp_path: Path) -> None:
    with kept_outputs(Role(0, 2), tmp_path / "models") as (out,):
        assert out == tmp_path / "models"
    with kept_outputs(Role(1, 2), tmp_path / "models") as (out,):
        assert not out.is_relative_to(tmp_path) and out.name.endswith("models")
        out.mkdir()
    assert not out.exists()
