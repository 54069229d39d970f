"""Stage `train_retrieval`: the two-tower retrieval model (TFRS).

Reads data/prepared/; writes models/retrieval/:
- user_tower/: SavedModel, signature serving_default(user_id, gender, region, age, history);
- index/ (TFRS BruteForce SavedModel: user inputs -> top-K scores and item ids) or index.faiss
  (HNSW over the item embeddings) by `train.retrieval.index`;
- item_embeddings.npy and item_ids.txt (catalogue order), weights/ (a checkpoint of both towers
  for transfer learning), meta.json (sizes and settings needed to rebuild the towers);
and reports/retrieval.json (DVC metrics: validation selection, test metrics overall and for
cold-start users and items, each beside popularity, devices and training time).

Per-epoch checkpoints live in .recfusion/checkpoints/train_retrieval/<fingerprint>/, outside
DVC's outputs, so an interrupted run resumes; they are removed when training completes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from recfusion.config import Config
from recfusion.data.io import write_json
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.devices import plan_devices
from recfusion.models.export import (
    choose_index,
    save_brute_force,
    save_faiss,
    save_user_tower,
)
from recfusion.models.retrieval import FittedRetrieval, fit_retrieval, holdout_report, tower_sizes
from recfusion.models.tf_setup import tf
from recfusion.paths import CHECKPOINTS_DIR, PREPARED_DIR, REPORTS_DIR, RETRIEVAL_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)
OUT = RETRIEVAL_DIR
KS = (10, 50)


def fingerprint(cfg: Config, prepared_dir: Path) -> str:
    """A short hash of what training depends on, naming its checkpoint folder."""
    h = hashlib.sha256(json.dumps([cfg.seed, dataclasses.asdict(cfg.train)]).encode())
    for name in ("train.parquet", "val.parquet", "items.parquet", "users.parquet"):
        path = prepared_dir / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def write_outputs(fitted: FittedRetrieval, data: ModelData, cfg: Config, report: dict,
                  devices: dict, out: Path = OUT) -> None:  # fmt: skip
    rc = cfg.train.retrieval
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = fitted.model
    save_user_tower(model.user_tower, cfg.train.history_len, out / "user_tower")
    np.save(out / "item_embeddings.npy", fitted.item_embeddings)
    (out / "item_ids.txt").write_text("".join(f"{i}\n" for i in data.catalog.item_ids))
    tf.train.Checkpoint(user_tower=model.user_tower, item_tower=model.item_tower).write(
        str(out / "weights" / "towers")
    )
    index = choose_index(rc.index, len(data.catalog), rc.faiss_above)
    if index == "faiss":
        save_faiss(fitted.item_embeddings, out / "index.faiss")
    else:
        save_brute_force(model.user_tower, fitted.item_embeddings, data.catalog.item_ids, 100,
                         cfg.train.history_len, out / "index")  # fmt: skip
    sizes = tower_sizes(data, rc.embedding_dim)
    write_json({"sizes": dataclasses.asdict(sizes), "history_len": cfg.train.history_len,
                "index": index, "retrieval": dataclasses.asdict(rc)}, out / "meta.json")  # fmt: skip
    k = rc.eval_k
    write_json(
        {
            "best_epoch": fitted.state["best_epoch"],
            f"val_ndcg@{k}": fitted.state["best_score"],
            "train_seconds": round(fitted.seconds, 1),
            "devices": devices,
            "test": report,
            "epochs": fitted.state["history"],
        },
        REPORTS_DIR / "retrieval.json",
    )


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    plan = plan_devices(cfg.train.device)
    data = build_model_data(read_prepared(PREPARED_DIR), cfg.train)
    checkpoints = CHECKPOINTS_DIR / "train_retrieval" / fingerprint(cfg, PREPARED_DIR)
    fitted = fit_retrieval(data, cfg.train, cfg.seed, checkpoints, plan)
    report = holdout_report(fitted, data, KS, cfg.seed)
    write_outputs(fitted, data, cfg, report, plan.describe())
    shutil.rmtree(checkpoints, ignore_errors=True)
    a = report["all"]
    log.info("train_retrieval: test ndcg@10 %.4f (popularity %.4f), recall@10 %.4f in %.1fs",
             a["two_tower"]["ndcg@10"], a["popularity"]["ndcg@10"], a["two_tower"]["recall@10"],
             fitted.seconds)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
