"""Ranking model (DCN-v2, rating + like heads) on MovieLens-100K: test RMSE of the rating head.

Same split protocol as retrieval_movielens.py (random per-user 80/10/10, seeded). Negatives are
random catalogue items only (hard negatives need a trained retrieval model; the pipeline stage
uses them). Writes benchmarks/results/ranking_movielens.json.

    python benchmarks/ranking_movielens.py
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import movielens_config, prepared_movielens, write_result  # noqa: E402
from recfusion.logs import setup_logging  # noqa: E402
from recfusion.models.dataset import PreparedData, build_model_data  # noqa: E402
from recfusion.models.devices import plan_devices  # noqa: E402
from recfusion.models.inputs import Vocabularies  # noqa: E402
from recfusion.models.ranking import fit_ranking  # noqa: E402
from recfusion.models.retrieval import tower_sizes  # noqa: E402
from recfusion.stages.train_ranking import build_examples, head_reports  # noqa: E402

SEEDS = [42, 43, 44]


def run_seed(seed: int) -> dict:
    cfg = movielens_config({"seed": seed, "train": {"ranking": {"hard_negatives": 0}}})
    prepared = prepared_movielens(cfg)
    prep = PreparedData(prepared.splits, prepared.users, prepared.items,
                        Vocabularies.from_lists(prepared.vocabularies))  # fmt: skip
    data = build_model_data(prep, cfg.train)
    heads, sets = build_examples(cfg, data, prep, None, np.random.default_rng(seed))
    sizes = tower_sizes(data, cfg.train.retrieval.embedding_dim)
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_ranking(data, sizes, heads, sets["train"], sets["val"], cfg.train.ranking,
                             seed, Path(tmp) / "backup", plan_devices("cpu"))  # fmt: skip
    report = head_reports(fitted.model, heads, sets["val"], sets["test"], data)
    for r in report.values():
        r.pop("calibration", None)
    return {"seed": seed, "heads": report, "train_seconds": round(fitted.seconds, 1),
            "epochs": len(fitted.history)}  # fmt: skip


def main() -> None:
    setup_logging()
    runs = [run_seed(seed) for seed in SEEDS]
    rmse = [r["heads"]["rating"]["rmse"] for r in runs]
    result = {
        "protocol": "MovieLens-100K, random per-user 80/10/10 split, rating head RMSE on the "
                    "test ratings; like = rating >= 4 on observed ratings",
        "rating_rmse": {"mean": round(float(np.mean(rmse)), 4), "std": round(float(np.std(rmse)), 4),
                        "per_seed": [round(v, 4) for v in rmse]},
        "runs": runs,
        "params": {"ranking": dataclasses.asdict(movielens_config().train.ranking)},
        "targets": {"rating_rmse": 0.93, "tfrs_tutorial_rmse": 1.11},
    }  # fmt: skip
    path = write_result("ranking_movielens", result)
    logging.getLogger("benchmark").info("rating RMSE %s -> %s", result["rating_rmse"], path)


if __name__ == "__main__":
    main()
