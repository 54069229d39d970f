"""Stage `fuse`: fit the fusion of the candidate sources on the validation period.

Reads data/prepared/ and models/retrieval, ranking and tags; builds every source's candidates for the
validation users (sources see the train split only), fits the weighted fusion's weights by
coordinate ascent on NDCG@10 and the LightGBM lambdarank stacker (a fifth of the users held out
for early stopping). Writes models/fusion/ (weights.json, stacker.txt, settings.json) and
reports/fusion.json (validation NDCG@10 / Recall@10 of each source and of the voting methods;
the weighted and stacking numbers there are fitted on the same users and so optimistic — the
evaluate stage gives the test numbers).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from collections.abc import Callable

import numpy as np

from recfusion.config import Config
from recfusion.data.io import write_json
from recfusion.evaluation.metrics import ranking_metrics
from recfusion.fusion import methods
from recfusion.fusion.candidates import source_ranking
from recfusion.fusion.fused import fit_fusion
from recfusion.fusion.model_features import sub_model_features
from recfusion.fusion.period import Period, build_period
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.export import load_user_encoder
from recfusion.paths import FUSION_DIR, MODELS_DIR, PREPARED_DIR, REPORTS_DIR, RETRIEVAL_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)
OUT = FUSION_DIR
RETRIEVAL = RETRIEVAL_DIR


def load_retrieval(data: ModelData) -> tuple[Callable[[dict], np.ndarray], np.ndarray]:
    """The exported user encoder and item embeddings, checked against the catalogue."""
    encode = load_user_encoder(RETRIEVAL / "user_tower")
    items = np.load(RETRIEVAL / "item_embeddings.npy")
    ids = (RETRIEVAL / "item_ids.txt").read_text().splitlines()
    if ids != list(data.catalog.item_ids):
        raise ValueError("models/retrieval was trained on another catalogue; run dvc repro")
    return encode, items


def usual_hour(data: ModelData, splits: list[str]) -> int:
    """The most common hour of the positives in `splits` (the ranking model's context input)."""
    hours = data.pairs_of(splits)["timestamp"].dt.hour
    return int(hours.mode().iloc[0]) if len(hours) else 12


def period(cfg: Config, data: ModelData, seen: list[str], held: list[str],
           retrieval: tuple[Callable[[dict], np.ndarray], np.ndarray]) -> Period:  # fmt: skip
    """The period's candidates with stacking features from the ranking and tag models.

    Args:
        retrieval: the user encoder and item embeddings from `load_retrieval`.
    """
    encode, items = retrieval
    fc = cfg.fusion
    hour = usual_hour(data, seen)

    features = sub_model_features(MODELS_DIR, data, encode, cfg.train.tags, hour)
    return build_period(data, seen, held, encode, items, fc.ease_l2, fc.per_source, fc.sources,
                        features)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    data = build_model_data(read_prepared(PREPARED_DIR), cfg.train)
    val = period(cfg, data, ["train"], ["val"], load_retrieval(data))
    log.info("fuse: %d validation users, up to %d candidates each", len(val.candidates.rows),
             val.candidates.items.shape[1])  # fmt: skip
    fitted = fit_fusion(val, cfg.fusion, cfg.seed)
    c = val.candidates
    rankings = {f"source:{n}": source_ranking(c, n, 10) for n in c.scores}
    rankings["fusion:rrf"] = c.top(methods.rrf(c), 10)
    rankings["fusion:borda"] = c.top(methods.borda(c), 10)
    rankings["fusion:weighted"] = c.top(methods.weighted(c, fitted.weights), 10)
    rankings["fusion:stacking"] = c.top(fitted.stack(val), 10)
    report = {n: ranking_metrics(r, val.relevant, [10]) for n, r in rankings.items()}
    if OUT.exists():
        shutil.rmtree(OUT)
    fitted.save(OUT)
    write_json(dataclasses.asdict(cfg.fusion), OUT / "settings.json")
    write_json({"validation": {n: {k: round(v, 4) for k, v in m.items()
                                   if k in ("ndcg@10", "recall@10")} for n, m in report.items()},
                "weights": fitted.weights, "stacker_trees": fitted.stacker.num_trees(),
                "validation_users": len(c.rows)}, REPORTS_DIR / "fusion.json")  # fmt: skip
    log.info("fuse: weights %s; %d stacker trees", fitted.weights, fitted.stacker.num_trees())
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
