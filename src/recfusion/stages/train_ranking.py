"""Stage `train_ranking`: the DCN-v2 multi-task ranking model (TFRS).

Reads data/prepared/ and models/retrieval/ (meta.json for the embedding size; the user tower and
item embeddings for hard negatives); writes models/ranking/ (weights/ checkpoint and meta.json:
heads, sizes, settings, decision thresholds) and reports/ranking.json (DVC metrics: per head on
the test split AUC, log loss, accuracy, precision, recall and F1 at the threshold that maximised
validation F1, calibration; RMSE and MAE for ratings). Per-epoch checkpoints in
.recfusion/checkpoints/train_ranking/<fingerprint>/ let an interrupted run resume exactly (the
one folder `run` writes); `write_outputs` removes them once the model is saved.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recfusion.config import Config, RankingConfig
from recfusion.data.io import read_json, write_json
from recfusion.metrics.classification import best_f1_threshold, binary_report
from recfusion.models.dataset import ModelData, PreparedData, build_model_data, read_prepared
from recfusion.models.devices import plan_devices
from recfusion.models.export import load_user_encoder
from recfusion.models.inputs import user_inputs
from recfusion.models.item_index import ItemIndex
from recfusion.models.ranking import RankingModel, fit_ranking, predict, save_ranking_model
from recfusion.models.ranking_data import (
    Histories,
    RankingExamples,
    example_histories,
    heads_for,
    observed_examples,
    touched_items,
    with_negatives,
)
from recfusion.models.retrieval import tower_sizes
from recfusion.models.towers import TowerSizes
from recfusion.models.workers import kept_outputs, training_processes
from recfusion.paths import (
    CHECKPOINTS_DIR,
    PREPARED_DIR,
    RANKING_DIR,
    REPORTS_DIR,
    RETRIEVAL_DIR,
)
from recfusion.stages.entry import fingerprint, guarded, stage_config

log = logging.getLogger(__name__)
MODULE = "recfusion.stages.train_ranking"  # what multi-worker training starts more of


@dataclass(frozen=True)
class RankingInputs:
    prepared: PreparedData  # the prepared splits (impressions and their sessions)
    data: ModelData  # the same as the models see it
    retrieval_dim: int  # the retrieval model's embedding size (the towers' sizes)
    encode: Callable[[dict], np.ndarray] | None  # the retrieval user tower (hard negatives)
    items: ItemIndex | None  # the retrieval item embeddings (and faiss index when exported)
    backup: Path  # per-epoch resume state of this data and configuration


@dataclass(frozen=True)
class TrainedRanking:
    model: RankingModel
    heads: tuple[str, ...]
    sizes: TowerSizes
    settings: RankingConfig  # train.ranking, recorded beside the weights
    history_len: int  # train.history_len, the user inputs' history length
    report: dict  # reports/ranking.json
    backup: Path  # the resume state, removed once the model is saved


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR,
                retrieval_dir: Path = RETRIEVAL_DIR,
                checkpoints_dir: Path = CHECKPOINTS_DIR) -> RankingInputs:  # fmt: skip
    """The prepared data; the retrieval model's size, and its user tower and item embeddings
    when `train.ranking.hard_negatives` asks for hard negatives."""
    prepared = read_prepared(prepared_dir)
    data = build_model_data(prepared, cfg.train)
    encode, items = None, None
    if cfg.train.ranking.hard_negatives:
        encode = load_user_encoder(retrieval_dir / "user_tower")
        items = ItemIndex.load(retrieval_dir, np.load(retrieval_dir / "item_embeddings.npy"))
    backup = checkpoints_dir / "train_ranking" / fingerprint(cfg, prepared_dir)
    dim = int(read_json(retrieval_dir / "meta.json")["sizes"]["dim"])
    return RankingInputs(prepared, data, dim, encode, items, backup)


def retrieval_top_k(encode: Callable[[dict], np.ndarray], items: ItemIndex, data: ModelData,
                    rows: np.ndarray, k: int, exclude: dict[int, np.ndarray],
                    ) -> dict[int, np.ndarray]:  # fmt: skip
    """user row -> the retrieval model's top-k catalogue positions, excluding `exclude`: an
    exact scan, or the faiss index the retrieval model exported for a large catalogue (an exact
    scan of every train user against 200,000 items is 90 billion scores). Fewer than k when the
    approximate index finds fewer."""
    queries = encode(user_inputs(data.users, rows, data.history(["train"])[rows]))
    empty = np.array([], dtype=np.int64)
    ranked = items.top(queries, k, [exclude.get(int(u), empty) for u in rows])
    return {int(u): r[r >= 0] for u, r in zip(rows, ranked, strict=True)}


def head_reports(
    model: RankingModel,
    heads: tuple[str, ...],
    val: tuple[RankingExamples, Histories],
    test: tuple[RankingExamples, Histories],
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


def run(cfg: Config, inputs: RankingInputs) -> TrainedRanking:
    """Builds the examples (with hard negatives from the retrieval model when asked), trains
    the ranking model and tests each head at its validation threshold."""
    rc = cfg.train.ranking
    plan = plan_devices(cfg.train.device, cfg.train.distribute)
    prepared, data = inputs.prepared, inputs.data
    rng = np.random.default_rng(cfg.seed)
    hard = None
    if rc.hard_negatives:
        if inputs.encode is None or inputs.items is None:
            raise ValueError("train.ranking.hard_negatives needs the retrieval model's user "
                             "tower and item embeddings in the inputs")  # fmt: skip
        train_touched = touched_items(prepared.splits["train"], data)
        rows = np.array(sorted(train_touched), dtype=np.int64)
        hard = retrieval_top_k(inputs.encode, inputs.items, data, rows,
                               rc.hard_negative_k, train_touched)  # fmt: skip
    heads, sets = build_examples(cfg, data, prepared, hard, rng)
    sizes = tower_sizes(data, inputs.retrieval_dim)
    fitted = fit_ranking(data, sizes, heads, sets["train"], sets["val"], rc, cfg.seed,
                         inputs.backup, plan)  # fmt: skip
    heads_report = head_reports(fitted.model, heads, sets["val"], sets["test"], data)
    report = {"heads": heads_report, "train_seconds": round(fitted.seconds, 1),
              "examples": {s: len(e[0]) for s, e in sets.items()},
              "hard_negatives": bool(hard), "devices": plan.describe(),
              "epochs": fitted.history}  # fmt: skip
    return TrainedRanking(fitted.model, heads, sizes, rc, cfg.train.history_len, report,
                          inputs.backup)  # fmt: skip


def write_outputs(trained: TrainedRanking, out_dir: Path = RANKING_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """models/ranking (`models.ranking.save_ranking_model`) and reports/ranking.json; then the
    resume state goes."""
    thresholds = {h: r.get("threshold") for h, r in trained.report["heads"].items()}
    save_ranking_model(trained.model, trained.heads, trained.sizes, trained.settings,
                       trained.history_len, thresholds, out_dir)  # fmt: skip
    write_json(trained.report, reports_dir / "ranking.json")
    shutil.rmtree(trained.backup, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    tc = cfg.train
    with training_processes(tc.distribute, tc.workers, MODULE, argv) as role:
        plan_devices(tc.device, tc.distribute)  # before read_inputs starts TensorFlow's runtime
        trained = run(cfg, read_inputs(cfg))
        with kept_outputs(role, RANKING_DIR, REPORTS_DIR, trained.backup) as (m, r, b):
            write_outputs(dataclasses.replace(trained, backup=b), m, r)
    if not role.chief:
        return 0
    log.info(
        "train_ranking: %s",
        {
            h: {k: round(v, 4) for k, v in r.items() if k in ("auc", "f1", "rmse")}
            for h, r in trained.report["heads"].items()
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
