"""Two-tower retrieval on MovieLens-100K with the published protocol.

Random per-user 80/10/10 split (seeded), full ranking over all items with each user's train
and validation items excluded, metrics at k=10 on the test split. Reports the two-tower model
and a popularity baseline, the training time, and writes benchmarks/results/retrieval_movielens.json.

    python benchmarks/retrieval_movielens.py
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import movielens_config, prepared_movielens, write_result  # noqa: E402
from recfusion.logs import setup_logging  # noqa: E402
from recfusion.models.dataset import PreparedData, build_model_data  # noqa: E402
from recfusion.models.devices import plan_devices  # noqa: E402
from recfusion.models.inputs import Vocabularies  # noqa: E402
from recfusion.models.retrieval import (  # noqa: E402
    build_eval_set,
    evaluate,
    fit_retrieval,
    popularity_metrics,
)

KS = [10, 20]
SEEDS = [42, 43, 44]


def run_seed(seed: int) -> dict:
    cfg = movielens_config({"seed": seed})
    prepared = prepared_movielens(cfg)
    data = build_model_data(
        PreparedData(prepared.splits, prepared.users, prepared.items,
                     Vocabularies.from_lists(prepared.vocabularies)),
        cfg.train,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_retrieval(data, cfg.train, cfg.seed, Path(tmp), plan_devices("cpu"))
    test = build_eval_set(data.users, data.history(["train", "val"]),
                          data.items_by_user(["train", "val"]), data.items_by_user(["test"]),
                          0, cfg.seed)  # fmt: skip
    t = time.perf_counter()
    two_tower = evaluate(fitted.model.user_tower, fitted.item_embeddings, test, KS)
    eval_seconds = time.perf_counter() - t
    counts = np.bincount(
        data.catalog.positions(data.pairs_of(["train", "val"])["item_id"]),
        minlength=len(data.catalog),
    )
    return {
        "seed": seed,
        "test_users": len(test),
        "two_tower": two_tower,
        "popularity": popularity_metrics(counts, test, KS),
        "train_seconds": round(fitted.seconds, 1),
        "eval_seconds": round(eval_seconds, 2),
        "best_epoch": fitted.state["best_epoch"],
        "epochs": fitted.state["history"],
    }


def summarise(runs: list[dict], model: str, metric: str) -> dict:
    values = [r[model][metric] for r in runs]
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "per_seed": [round(v, 4) for v in values]}  # fmt: skip


def main() -> None:
    setup_logging()
    runs = [run_seed(seed) for seed in SEEDS]
    cfg = movielens_config()
    result = {
        "protocol": "MovieLens-100K (RecBole 1.2.1 atomic files), random per-user 80/10/10 "
        "split, full ranking over all items, each user's train+val items excluded, "
        "test metrics; one run per seed (the seed drives the split and the model)",
        "summary": {
            f"{model}_{metric}": summarise(runs, model, metric)
            for model in ("two_tower", "popularity")
            for metric in ("ndcg@10", "recall@10")
        },
        "train_seconds": summarise([{"t": {"s": r["train_seconds"]}} for r in runs], "t", "s"),
        "runs": runs,
        "params": {"train": dataclasses.asdict(cfg.train)},
        "targets": {"ndcg@10": 0.30, "recall@10": 0.26, "train_seconds": 60},
    }
    path = write_result("retrieval_movielens", result)
    s = result["summary"]
    logging.getLogger("benchmark").info(
        "two-tower ndcg@10 %s recall@10 %s train %ss; popularity ndcg@10 %s -> %s",
        s["two_tower_ndcg@10"]["mean"],
        s["two_tower_recall@10"]["mean"],
        result["train_seconds"]["mean"],
        s["popularity_ndcg@10"]["mean"],
        path,
    )


if __name__ == "__main__":
    main()
