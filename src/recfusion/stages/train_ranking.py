"""Stage `train_ranking`: the DCN-v2 multi-task ranking model (TFRS).

Reads data/prepared/ and models/retrieval/ (for hard negatives); writes models/ranking/
(weights/ checkpoint and meta.json: heads, sizes, settings, decision thresholds) and
reports/ranking.json (DVC metrics: per head on the test split AUC, log loss, accuracy,
precision, recall and F1 at the threshold that maximised validation F1, calibration; RMSE and
MAE for ratings). Keras BackupAndRestore state in .recfusion/checkpoints/train_ranking/ lets an
interrupted run resume.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from recfusion.config import Config
from recfusion.data.io import read_json, write_json
from recfusion.evaluation.classification import best_f1_threshold, binary_report
from recfusion.evaluation.metrics import top_k
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.devices import plan_devices
from recfusion.models.export import load_user_encoder
from recfusion.models.features import user_inputs
from recfusion.models.ranking import RankingModel, fit_ranking, predict
from recfusion.models.ranking_data import (
    RankingExamples,
    example_histories,
    heads_for,
    observed_examples,
    touched_items,
    with_negatives,
)
from recfusion.models.retrieval import tower_sizes
from recfusion.models.tf_setup import tf
from recfusion.models.towers import TowerSizes
from recfusion.paths import (
    CHECKPOINTS_DIR,
    PREPARED_DIR,
    RANKING_DIR,
    REPORTS_DIR,
    RETRIEVAL_DIR,
)
from recfusion.stages.entry import guarded, stage_config
from recfusion.stages.train_retrieval import fingerprint

log = logging.getLogger(__name__)
OUT = RANKING_DIR
RETRIEVAL = RETRIEVAL_DIR


def retrieval_top_k(retrieval_dir: Path, data: ModelData, rows: np.ndarray, k: int,
                    exclude: dict[int, np.ndarray]) -> dict[int, np.ndarray]:  # fmt: skip
    """user row -> the retrieval model's top-k catalogue positions, excluding `exclude`."""
    encode = load_user_encoder(retrieval_dir / "user_tower")
    items = np.load(retrieval_dir / "item_embeddings.npy")
    queries = encode(user_inputs(data.users, rows, data.history(["train"])[rows]))
    empty = np.array([], dtype=np.int64)
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(rows), 4096):
        part = rows[start : start + 4096]
        ranked = top_k(queries[start : start + 4096] @ items.T, k,
                       [exclude.get(int(u), empty) for u in part])  # fmt: skip
        out.update({int(u): r for u, r in zip(part, ranked, strict=True)})
    return out


def head_reports(
    model: RankingModel,
    heads: tuple[str, ...],
    val: tuple[RankingExamples, np.ndarray],
    test: tuple[RankingExamples, np.ndarray],
    data: ModelData,
) -> dict:
    """Per head: test metrics at the threshold chosen on validation."""
    val_pred = predict(model, val[0], val[1], data)
    test_pred = predict(model, test[0], test[1], data)
    report = {}
    for h in heads:
        vw, tw = val[0].weights[h] > 0, test[0].weights[h] > 0
        y_val, y_test = val[0].labels[h][vw], test[0].labels[h][tw]
        p_val, p_test = val_pred[h][vw], test_pred[h][tw]
        if h == "rating":
            err = p_test - y_test
            report[h] = {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))),
                         "examples": int(tw.sum())}  # fmt: skip
        else:
            report[h] = {**binary_report(y_test, p_test, best_f1_threshold(y_val, p_val)),
                         "examples": int(tw.sum())}  # fmt: skip
    return report


def build_examples(cfg: Config, data: ModelData, prepared, hard, rng):
    """(train, val, test) example sets with their histories."""
    rc = cfg.train.ranking
    heads = heads_for(prepared.splits["train"])
    sets = {}
    for split, history_splits, n_hard in (
        ("train", ["train"], rc.hard_negatives),
        ("val", ["train"], 0),
        ("test", ["train", "val"], 0),
    ):
        events = prepared.splits[split]
        observed = observed_examples(events, data, heads)
        touched = touched_items(events, data)
        if split == "train":
            touched_all = touched
        else:
            touched = {u: np.union1d(v, touched_all.get(u, v)) for u, v in touched.items()}
        examples = with_negatives(observed, data, touched, hard if n_hard else None,
                                  rc.random_negatives, n_hard, rng)  # fmt: skip
        sets[split] = (examples, example_histories(examples, data, history_splits))
    return heads, sets


def save(model: RankingModel, heads: tuple[str, ...], sizes: TowerSizes, cfg: Config,
         report: dict, out: Path = OUT) -> None:  # fmt: skip
    """models/ranking: weights and meta.json (what load_ranking_model needs)."""
    if out.exists():
        shutil.rmtree(out)
    tf.train.Checkpoint(model=model).write(str(out / "weights" / "ranking"))
    write_json({"heads": list(heads), "sizes": dataclasses.asdict(sizes),
                "ranking": dataclasses.asdict(cfg.train.ranking),
                "history_len": cfg.train.history_len,
                "thresholds": {h: r.get("threshold") for h, r in report.items()}},
               out / "meta.json")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    rc = cfg.train.ranking
    plan = plan_devices(cfg.train.device)
    prepared = read_prepared(PREPARED_DIR)
    data = build_model_data(prepared, cfg.train)
    rng = np.random.default_rng(cfg.seed)
    hard = None
    if rc.hard_negatives:
        train_touched = touched_items(prepared.splits["train"], data)
        rows = np.array(sorted(train_touched), dtype=np.int64)
        hard = retrieval_top_k(RETRIEVAL, data, rows, rc.hard_negative_k, train_touched)
    heads, sets = build_examples(cfg, data, prepared, hard, rng)
    backup = CHECKPOINTS_DIR / "train_ranking" / fingerprint(cfg, PREPARED_DIR)
    meta = read_json(RETRIEVAL / "meta.json")
    sizes = tower_sizes(data, meta["sizes"]["dim"])
    fitted = fit_ranking(data, sizes, heads, sets["train"], sets["val"], rc, cfg.seed, backup,
                         plan)  # fmt: skip
    report = head_reports(fitted.model, heads, sets["val"], sets["test"], data)
    save(fitted.model, heads, sizes, cfg, report)
    write_json({"heads": report, "train_seconds": round(fitted.seconds, 1),
                "examples": {s: len(e[0]) for s, e in sets.items()},
                "hard_negatives": bool(hard), "devices": plan.describe(),
                "epochs": fitted.history}, REPORTS_DIR / "ranking.json")  # fmt: skip
    shutil.rmtree(backup, ignore_errors=True)
    log.info(
        "train_ranking: %s",
        {
            h: {k: round(v, 4) for k, v in r.items() if k in ("auc", "f1", "rmse")}
            for h, r in report.items()
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
