"""The ease source at scale: dense EASE against its sparse approximation (EASE on the most chosen
`head` items plus cosine co-occurrence neighbours for the rest, `neighbours` weights per item;
fusion/sources.sparse_ease_weights), where both fit, so the loss of the sparse model is known.

On MovieLens-100K (the protocol of retrieval_movielens.py: random per-user 80/10/10, ratings as
positives) and on a synthetic shop (default `small`, with params.yaml's split and positives): the source is fitted on
train + validation and ranks the full catalogue for every test user (train + validation items
excluded); NDCG@10 and Recall@10, the paired bootstrap interval of each variant against dense
EASE, fit seconds and the weights' size.

    python benchmarks/item_to_item.py [--datasets movielens small medium] [--at-scale]

Results: benchmarks/results/item_to_item.json (a run of some datasets keeps the others' entries;
the machine is the last run's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from common import movielens_config, prepared_movielens, write_result  # noqa: E402
from recfusion.config import load_config, with_overrides  # noqa: E402
from recfusion.data.synthetic import generate  # noqa: E402
from recfusion.fusion.sources import ease_weights, sparse_ease_weights  # noqa: E402
from recfusion.metrics.ranking import (  # noqa: E402
    ndcg_per_user,
    paired_bootstrap,
    ranking_metrics,
    top_k,
)
from recfusion.models.dataset import PreparedData, build_history, build_model_data  # noqa: E402
from recfusion.models.inputs import Vocabularies  # noqa: E402
from recfusion.stages import prepare  # noqa: E402

L2 = 250.0
BATCH = 2048
DEFAULT_HEAD = 5_000  # fusion.ease_head_items in params.yaml


def model_data(name: str) -> Any:
    if name == "movielens":
        cfg = movielens_config()
        p = prepared_movielens(cfg)
    else:  # the default params at that size
        cfg = with_overrides(load_config("params.yaml"), {"ingest": {"synthetic": {"size": name}}})
        p = prepare.run(cfg, generate(cfg.ingest.synthetic, cfg.seed, progress=False))
    vocab = Vocabularies.from_lists(p.vocabularies)
    return build_model_data(PreparedData(p.splits, p.users, p.items, vocab), cfg.train)


def evaluate(b: np.ndarray | sp.csr_matrix, x: sp.csr_matrix, users: np.ndarray,
             relevant: list[np.ndarray]) -> tuple[dict[str, float], np.ndarray]:  # fmt: skip
    ranked = []
    for start in range(0, len(users), BATCH):
        rows = users[start : start + BATCH]
        scores = x[rows] @ b
        scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
        seen = [x[r].indices for r in rows]
        ranked.append(top_k(scores, 10, seen))
    r = np.concatenate(ranked)
    return ranking_metrics(r, relevant, [10]), ndcg_per_user(r, relevant, 10)


def run(name: str) -> dict[str, Any]:
    data = model_data(name)
    x = build_history(data, ["train", "val"]).matrix
    held = data.items_by_user(["test"])
    users = np.array(sorted(held), dtype=np.int64)
    relevant = [held[int(u)] for u in users]
    n = x.shape[1]
    out: dict[str, Any] = {"items": n, "users": x.shape[0], "test_users": len(users),
                           "interactions": int(x.nnz)}  # fmt: skip
    t = time.perf_counter()
    dense = ease_weights(x, L2)
    out["dense"] = {"fit_seconds": round(time.perf_counter() - t, 2),
                    "mb": round(dense.nbytes / 1e6, 1)}  # fmt: skip
    metrics, base = evaluate(dense, x, users, relevant)
    out["dense"].update(metrics)
    for head, neighbours in variants(n):
        t = time.perf_counter()
        b = sparse_ease_weights(x, L2, head, neighbours)
        seconds = time.perf_counter() - t
        metrics, per_user = evaluate(b, x, users, relevant)
        size = (b.data.nbytes + b.indices.nbytes + b.indptr.nbytes) / 1e6
        out[f"sparse head={head} neighbours={neighbours}"] = {
            **metrics, "fit_seconds": round(seconds, 2), "mb": round(size, 1),
            "head_share": round(head / n, 3),
            "versus_dense": paired_bootstrap(per_user, base),
            "within_0.01_of_dense": out["dense"]["ndcg@10"] - metrics["ndcg@10"] <= 0.01}  # fmt: skip
        print(name, head, neighbours, metrics, flush=True)
    return out


def variants(n_items: int) -> list[tuple[int, int]]:
    """(head, neighbours) to fit: shares of the catalogue with 100 and 200 neighbours; above
    DEFAULT_HEAD x 4 items, the default head (params.yaml) and a tenth with 200 instead (a head
    of the whole catalogue is dense EASE again)."""
    if n_items <= DEFAULT_HEAD * 4:
        return [(h, k) for h in sorted({n_items, n_items // 2, n_items // 4, n_items // 10})
                for k in (100, 200)]  # fmt: skip
    return [(h, 200) for h in sorted({DEFAULT_HEAD, n_items // 10})]


def fit_at_scale(n_items: int, n_users: int, n_events: int, head: int, neighbours: int,
                 seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Time and peak memory of the sparse fit alone on a random log of a large shop's shape:
    Zipf(0.9) item popularity, log-normal history lengths (median 20). No quality here (dense
    EASE cannot be fitted at this size to compare with)."""
    import resource

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    lengths = np.maximum(1, rng.lognormal(np.log(20), 1.0, n_users))
    lengths = (lengths * n_events / lengths.sum()).astype(np.int64) + 1
    users = np.repeat(np.arange(n_users), lengths)
    items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
    x = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                      shape=(n_users, n_items))  # fmt: skip
    x.data[:] = 1.0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    b = sparse_ease_weights(x, L2, head, neighbours)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"items": n_items, "users": n_users, "interactions": int(x.nnz),
            "longest_history": int(lengths.max()), "head": head, "neighbours": neighbours,
            "fit_seconds": round(seconds, 1), "peak_rss_mb": round(peak),
            "peak_rss_mb_before_fit": round(before), "weights_nnz": int(b.nnz),
            "weights_mb": round((b.data.nbytes + b.indices.nbytes + b.indptr.nbytes) / 1e6, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--datasets", nargs="+", default=["movielens", "small"],
                        help="movielens and synthetic sizes (medium: 30K items, a dense inverse "
                             "of 7 GB)")  # fmt: skip
    parser.add_argument("--at-scale", action="store_true",
                        help="also time the sparse fit on a random 200K-item, 13M-event log")  # fmt: skip
    args = parser.parse_args()
    path = Path(__file__).parent / "results" / "item_to_item.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("l2") != L2:
        earlier = {}
    # a run of some datasets keeps the others' earlier entries
    datasets = {**earlier.get("datasets", {}), **{d: run(d) for d in args.datasets}}
    result: dict[str, Any] = {"l2": L2, "datasets": datasets}
    if "fit_at_scale" in earlier and not args.at_scale:
        result["fit_at_scale"] = earlier["fit_at_scale"]
    if args.at_scale:
        result["fit_at_scale"] = fit_at_scale(200_000, 500_000, 13_000_000, 5_000, 200)
        print(result["fit_at_scale"], flush=True)
    result["within_0.01_of_dense"] = {
        d: [k for k, v in r.items() if k.startswith("sparse") and v["within_0.01_of_dense"]]
        for d, r in result["datasets"].items()
    }
    print(write_result("item_to_item", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
