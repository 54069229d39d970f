"""Stage `train_retrieval`: the two-tower retrieval model (TFRS).

Reads data/prepared/; writes models/retrieval/:
- user_tower/: SavedModel, signature serving_default(user_id, gender, region, age, history);
- index/ (TFRS BruteForce SavedModel: user inputs -> top-K scores and item ids) or index.faiss
  (HNSW over the item embeddings) by `train.retrieval.index`;
- item_embeddings.npy and item_ids.txt (catalogue order), weights/ (a checkpoint of both towers
  for transfer learning), meta.json (sizes and settings needed to rebuild the towers);
and reports/retrieval.json (DVC metrics: validation selection, test metrics overall and for
cold-start users and items on at most `evaluate.max_users` test users, each beside popularity,
devices and training time).

Per-epoch checkpoints live in .recfusion/checkpoints/train_retrieval/<fingerprint>/, outside
DVC's outputs, so an interrupted run resumes (the one folder `run` writes); `write_outputs`
removes them once the model is saved.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recfusion.config import Config
from recfusion.data.io import write_json
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.devices import plan_devices
from recfusion.models.export import choose_index, save_retrieval
from recfusion.models.retrieval import FittedRetrieval, fit_retrieval, holdout_report, tower_sizes
from recfusion.models.workers import kept_outputs, training_processes
from recfusion.paths import CHECKPOINTS_DIR, PREPARED_DIR, REPORTS_DIR, RETRIEVAL_DIR
from recfusion.stages.entry import fingerprint, guarded, stage_config

log = logging.getLogger(__name__)
KS = (10, 50)
MODULE = "recfusion.stages.train_retrieval"  # what multi-worker training starts more of


@dataclass(frozen=True)
class RetrievalInputs:
    data: ModelData  # the prepared data as the models see it
    checkpoints: Path  # per-epoch resume state of this data and configuration


@dataclass(frozen=True)
class TrainedRetrieval:
    fitted: FittedRetrieval  # the two-tower model and its item embeddings
    item_ids: np.ndarray  # [n_items] catalogue order
    meta: dict  # models/retrieval/meta.json
    report: dict  # reports/retrieval.json
    checkpoints: Path  # the resume state, removed once the model is saved


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR,
                checkpoints_dir: Path = CHECKPOINTS_DIR) -> RetrievalInputs:  # fmt: skip
    """The model data of `prepared_dir`, and the checkpoint folder its fingerprint names."""
    data = build_model_data(read_prepared(prepared_dir), cfg.train)
    checkpoints = checkpoints_dir / "train_retrieval" / fingerprint(cfg, prepared_dir)
    return RetrievalInputs(data, checkpoints)


def run(cfg: Config, inputs: RetrievalInputs) -> TrainedRetrieval:
    """Trains the two-tower model on the train split (selecting on validation) and tests it."""
    plan = plan_devices(cfg.train.device, cfg.train.distribute)
    fitted = fit_retrieval(inputs.data, cfg.train, cfg.seed, inputs.checkpoints, plan)
    test = holdout_report(fitted, inputs.data, KS, cfg.seed, cfg.evaluate.max_users)
    return retrieval_outputs(cfg, inputs.data, fitted, test, plan.describe(), inputs.checkpoints)


def retrieval_outputs(cfg: Config, data: ModelData, fitted: FittedRetrieval, test: dict,
                      devices: dict, checkpoints: Path) -> TrainedRetrieval:  # fmt: skip
    """What `write_outputs` writes for a fitted model and its test report."""
    rc = cfg.train.retrieval
    index = choose_index(rc.index, len(data.catalog), rc.faiss_above)
    sizes = tower_sizes(data, rc.embedding_dim)
    meta = {"sizes": dataclasses.asdict(sizes), "history_len": cfg.train.history_len,
            "index": index, "retrieval": dataclasses.asdict(rc)}  # fmt: skip
    report = {
        "best_epoch": fitted.state["best_epoch"],
        f"val_ndcg@{rc.eval_k}": fitted.state["best_score"],
        "train_seconds": round(fitted.seconds, 1),
        "devices": devices,
        "test": test,
        "epochs": fitted.state["history"],
    }
    return TrainedRetrieval(fitted, data.catalog.item_ids, meta, report, checkpoints)


def write_outputs(trained: TrainedRetrieval, out_dir: Path = RETRIEVAL_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """models/retrieval (see `models.export.save_retrieval`) and reports/retrieval.json; then
    the resume checkpoints go."""
    model = trained.fitted.model
    save_retrieval(model.user_tower, model.item_tower, trained.fitted.item_embeddings,
                   trained.item_ids, trained.meta, out_dir)  # fmt: skip
    write_json(trained.report, reports_dir / "retrieval.json")
    shutil.rmtree(trained.checkpoints, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    tc = cfg.train
    with training_processes(tc.distribute, tc.workers, MODULE, argv) as role:
        plan_devices(tc.device, tc.distribute)  # before anything starts TensorFlow's runtime
        trained = run(cfg, read_inputs(cfg))
        with kept_outputs(role, RETRIEVAL_DIR, REPORTS_DIR, trained.checkpoints) as (m, r, c):
            write_outputs(dataclasses.replace(trained, checkpoints=c), m, r)
    if not role.chief:
        return 0
    a = trained.report["test"]["all"]
    log.info("train_retrieval: test ndcg@10 %.4f (popularity %.4f), recall@10 %.4f in %.1fs",
             a["two_tower"]["ndcg@10"], a["popularity"]["ndcg@10"], a["two_tower"]["recall@10"],
             trained.fitted.seconds)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
