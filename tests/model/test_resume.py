"""A training run killed after an epoch and resumed from its checkpoint ends exactly where an
uninterrupted run ends: the same weights, the same per-epoch validation metrics, the same best
epoch.

Every run is its own Python process, as in production: the interrupted one gets a real SIGKILL
once epoch 1's checkpoint is written, so only what is on disk reaches the run that resumes. The
uninterrupted run and the run to be killed start side by side to save time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

EPOCHS = 2  # the resumed run trains the last one
KILL_AFTER = 1  # the epoch whose checkpoint the killed run leaves behind
PAUSED = "paused after the checkpoint of epoch"
# enough epochs to diverge, patience high so that no run stops early
OVERRIDES = {
    "train": {
        "retrieval": {"epochs": EPOCHS, "patience": 9},
        "ranking": {"epochs": EPOCHS, "patience": 9, "hard_negatives": 0},
    }
}


class PauseAfterEpoch(logging.Handler):
    """In the child: once the training loop logs `model`'s epoch `epoch` (it logs an epoch after
    writing its checkpoint), tells the parent and waits to be killed."""

    def __init__(self, model: str, epoch: int) -> None:
        super().__init__()
        self.prefix = f"{model} epoch {epoch}:"

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            print(f"{PAUSED} {self.prefix}", flush=True)
            time.sleep(600)


def child(model: str, checkpoints: str, out: str, pause: bool) -> None:
    """Runs in a subprocess: the `train_<model>` stage's `run` on the tiny data with
    `checkpoints` as its resume folder; writes every model variable (weights.npz) and the report
    without its timing (report.json) to `out`."""
    from recfusion.config import with_overrides
    from recfusion.data.synthetic import generate
    from recfusion.models.dataset import build_model_data
    from recfusion.stages import prepare, train_ranking, train_retrieval
    from tests.conftest import repo_config
    from tests.model.conftest import TRAIN, prepared_data

    logging.basicConfig(level=logging.INFO)
    if pause:
        logging.getLogger("recfusion").addHandler(PauseAfterEpoch(model, KILL_AFTER))
    cfg = with_overrides(repo_config(TRAIN), OVERRIDES)
    prepared = prepared_data(
        prepare.run(cfg, generate(cfg.ingest.synthetic, cfg.seed, progress=False))
    )
    data = build_model_data(prepared, cfg.train)
    if model == "retrieval":
        trained = train_retrieval.run(cfg, train_retrieval.RetrievalInputs(data, Path(checkpoints)))
        variables, report = trained.fitted.model.variables, trained.report
    else:
        dim = cfg.train.retrieval.embedding_dim  # the ranking model reads only its vocab sizes
        inputs = train_ranking.RankingInputs(prepared, data, dim, None, None, Path(checkpoints))
        ranked = train_ranking.run(cfg, inputs)
        variables, report = ranked.model.variables, ranked.report
    np.savez(Path(out) / "weights.npz", *[v.numpy() for v in variables])
    timeless = {k: v for k, v in report.items() if k not in ("train_seconds", "devices")}
    (Path(out) / "report.json").write_text(json.dumps(timeless, indent=1))


def start(model: str, checkpoints: Path, out: Path, pause: bool = False) -> subprocess.Popen:
    """`child` in a new Python process; its log goes to out/log.txt, not to a pipe nobody reads
    while the parent waits for the pause line."""
    out.mkdir(parents=True, exist_ok=True)
    call = (
        f"from tests.model.test_resume import child; "
        f"child({model!r}, {str(checkpoints)!r}, {str(out)!r}, {pause})"
    )
    with open(out / "log.txt", "w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", call], cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True
        )


def finish(proc: subprocess.Popen, out: Path) -> str:
    """Waits for the child; returns its log."""
    proc.communicate(timeout=600)
    log = (out / "log.txt").read_text()
    assert proc.returncode == 0, log[-3000:]
    return log


def kill_when_paused(proc: subprocess.Popen) -> None:
    """Reads the child's output until it says it paused after an epoch's checkpoint, then kills
    it with SIGKILL (no handler, no clean-up: the process just stops)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(PAUSED):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL
            return
    proc.wait(timeout=60)
    pytest.fail(
        f"the run ended (exit code {proc.returncode}) without pausing after epoch {KILL_AFTER}"
    )


def results(out: Path) -> tuple[list[np.ndarray], dict]:
    with np.load(out / "weights.npz") as z:
        weights = [z[f"arr_{i}"] for i in range(len(z.files))]
    return weights, json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("model", ["retrieval", "ranking"])
def test_a_killed_run_resumes_exactly_where_an_uninterrupted_one_goes(
    model: str, tmp_path: Path
) -> None:
    whole = start(model, tmp_path / "whole_ckpt", tmp_path / "whole")
    killed = start(model, tmp_path / "ckpt", tmp_path / "killed", pause=True)
    kill_when_paused(killed)
    resumed = start(model, tmp_path / "ckpt", tmp_path / "resumed")
    assert "resuming after" not in finish(whole, tmp_path / "whole")
    assert f"{model}: resuming after epoch {KILL_AFTER} " in finish(resumed, tmp_path / "resumed")

    expected_weights, expected = results(tmp_path / "whole")
    weights, report = results(tmp_path / "resumed")
    assert len(expected["epochs"]) == EPOCHS  # no early stop: every epoch is compared
    assert report["epochs"] == expected["epochs"]
    assert report == expected
    assert len(weights) == len(expected_weights)
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(got, want)
