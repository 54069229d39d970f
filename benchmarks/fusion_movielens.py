"""Candidate sources and fusion methods on MovieLens-100K (the protocol of retrieval_movielens.py).

For each seed: the two-tower, ranking (random negatives only) and tag models train as the
pipeline's stages do; EASE and the popularity sources are fitted on train for the validation
period and on train + validation for the test period; fusion weights and the LightGBM stacker
(with the ranking and tag models' features) are fitted on the validation period's candidates. Reports NDCG@10 / Recall@10 on test for every single source and every fusion
method, and a paired bootstrap interval of each method against the best single source.
Writes benchmarks/results/fusion_movielens.json.

    python benchmarks/fusion_movielens.py
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import movielens_config, prepared_movielens, write_result  # noqa: E402
from recfusion.fusion import methods  # noqa: E402
from recfusion.fusion.candidates import source_ranking  # noqa: E402
from recfusion.fusion.fused import fit_fusion  # noqa: E402
from recfusion.fusion.period import build_period  # noqa: E402
from recfusion.fusion.sources import ease_weights  # noqa: E402
from recfusion.fusion.sub_model_scores import sub_model_scores  # noqa: E402
from recfusion.logs import setup_logging  # noqa: E402
from recfusion.metrics.ranking import ndcg_per_user, paired_bootstrap, ranking_metrics  # noqa: E402
from recfusion.models.dataset import PreparedData, build_model_data  # noqa: E402
from recfusion.models.devices import plan_devices  # noqa: E402
from recfusion.models.inputs import Vocabularies  # noqa: E402
from recfusion.models.ranking import fit_ranking  # noqa: E402
from recfusion.models.ranking_data import usual_hour  # noqa: E402
from recfusion.models.retrieval import fit_retrieval, tower_sizes  # noqa: E402
from recfusion.models.tags import TagHead, item_tags, load_frozen_user_tower  # noqa: E402
from recfusion.models.tf_setup import tf  # noqa: E402
from recfusion.stages import train_tags  # noqa: E402
from recfusion.stages.train_ranking import build_examples  # noqa: E402

SEEDS = [42, 43, 44]
EASE_L2 = 250.0
PER_SOURCE = 100


def run_seed(seed: int) -> dict:
    cfg = movielens_config({"seed": seed})
    p = prepared_movielens(cfg)
    data = build_model_data(
        PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies)),
        cfg.train,
    )
    plan = plan_devices("cpu")
    tmp = Path(tempfile.mkdtemp())
    fitted = fit_retrieval(data, cfg.train, seed, tmp / "ckpt", plan)
    tower = fitted.model.user_tower

    def encode(inputs: dict) -> np.ndarray:
        return tower(inputs, training=False).numpy()

    # the ranking and tag models, trained as their stages train them
    prep = PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies))
    rcfg = movielens_config({"seed": seed, "train": {"ranking": {"hard_negatives": 0}}})
    heads, sets = build_examples(rcfg, data, prep, None, np.random.default_rng(seed))
    sizes = tower_sizes(data, cfg.train.retrieval.embedding_dim)
    ranking = fit_ranking(data, sizes, heads, sets["train"], sets["val"], rcfg.train.ranking,
                          seed, tmp / "backup", plan)  # fmt: skip
    tf.train.Checkpoint(user_tower=tower).write(str(tmp / "towers"))
    frozen = load_frozen_user_tower(sizes, tmp / "towers", cfg.train.history_len)
    tags = train_tags.run(cfg, train_tags.TagsInputs(data, frozen, dataclasses.asdict(sizes)))
    tag_of_item, categories = item_tags(data, cfg.train.tags.level)
    tag_head = TagHead(tags.fitted.head, tag_of_item, categories)

    def period(seen: list[str], held: list[str]):
        features = sub_model_scores(ranking.model, tag_head, data, encode, usual_hour(data, seen))
        return build_period(data, seen, held, encode, fitted.item_embeddings, lambda x: ease_weights(x, EASE_L2),
                            PER_SOURCE, model_features=features)  # fmt: skip

    val = period(["train"], ["val"])
    test = period(["train", "val"], ["test"])
    shutil.rmtree(tmp, ignore_errors=True)
    ct, rel = test.candidates, test.relevant
    rankings = {f"source:{n}": source_ranking(ct, n, 10) for n in ct.scores}
    fusion = fit_fusion(val, cfg.fusion, seed)
    weights = fusion.weights
    fused = {
        "rrf": methods.rrf(ct),
        "borda": methods.borda(ct),
        "weighted": methods.weighted(ct, weights),
        "stacking": fusion.stack(test),
    }
    rankings.update({f"fusion:{n}": ct.top(s, 10) for n, s in fused.items()})
    metrics = {n: ranking_metrics(r, rel, [10]) for n, r in rankings.items()}
    best_source = max((n for n in metrics if n.startswith("source:")),
                      key=lambda n: metrics[n]["ndcg@10"])  # fmt: skip
    base = ndcg_per_user(rankings[best_source], rel, 10)
    versus = {n: paired_bootstrap(ndcg_per_user(rankings[n], rel, 10), base, seed=seed)
              for n in rankings if n.startswith("fusion:")}  # fmt: skip
    return {"seed": seed, "metrics": metrics, "best_source": best_source,
            "versus_best_source": versus, "weights": weights}  # fmt: skip


def main() -> None:
    setup_logging()
    runs = [run_seed(s) for s in SEEDS]
    names = list(runs[0]["metrics"])
    summary = {
        n: {m: round(float(np.mean([r["metrics"][n][m] for r in runs])), 4)
            for m in ("ndcg@10", "recall@10")}
        for n in names
    }  # fmt: skip
    result = {
        "protocol": "MovieLens-100K, random per-user 80/10/10 split, full ranking, train+val "
                    "items excluded, test metrics; mean over seeds",
        "summary": summary,
        "runs": runs,
        "settings": {"ease_l2": EASE_L2, "per_source": PER_SOURCE,
                     "stacking": dataclasses.asdict(movielens_config().fusion.stacking)},
        "targets": {"fused_ndcg@10": 0.36, "ease_measured_by_issue": 0.348},
    }  # fmt: skip
    path = write_result("fusion_movielens", result)
    log = logging.getLogger("benchmark")
    for n, m in summary.items():
        log.info("%-28s ndcg@10 %.4f recall@10 %.4f", n, m["ndcg@10"], m["recall@10"])
    log.info("-> %s", path)


if __name__ == "__main__":
    main()
