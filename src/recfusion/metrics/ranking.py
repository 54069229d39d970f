"""Top-K ranking metrics over full-catalogue rankings (pure NumPy).

Definitions follow RecBole so numbers compare with published benchmarks: for each user with at
least one relevant item, Recall@K = hits / |relevant|, Precision@K = hits / K,
NDCG@K = DCG@K / IDCG@K with IDCG over min(|relevant|, K) ideal hits, MRR@K = 1 / rank of the
first hit, MAP@K = sum of precision at each hit / min(|relevant|, K), Hit@K = any hit.
Each is averaged over users.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("recall", "precision", "ndcg", "mrr", "map", "hit")


SCORE_CELLS = 2**24  # users x items scores ranked at once (64 MB of float32; top_k needs ~4x)


def rows_per_batch(n_items: int, most: int = 4096) -> int:
    """How many users to score against `n_items` items at once: `most`, fewer for a large
    catalogue, so that memory stays bounded whatever the catalogue's size."""
    return max(1, min(most, SCORE_CELLS // max(n_items, 1)))


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The indices of the k highest scores per row, best first, skipping excluded columns.

    Args:
        scores: [users, items] scores.
        k: how many to return (at most the number of items).
        exclude: per user, item indices that may not be returned (already seen).

    Returns:
        [users, k] item indices.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [users, items], got shape {scores.shape}")
    k = min(k, scores.shape[1])
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        rows = np.repeat(np.arange(len(exclude)), [len(e) for e in exclude])
        cols = (
            np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude])
            if len(rows)
            else np.array([], dtype=np.int64)
        )
        scores[rows, cols] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def hits_matrix(ranked: np.ndarray, relevant: Sequence[np.ndarray]) -> np.ndarray:
    """[users, k] booleans: is the item at each rank relevant for that user."""
    out = np.zeros(ranked.shape, dtype=bool)
    for u, rel in enumerate(relevant):
        if len(rel):
            out[u] = np.isin(ranked[u], rel)
    return out


def ranking_metrics(
    ranked: np.ndarray, relevant: Sequence[np.ndarray], ks: Sequence[int]
) -> dict[str, float]:
    """Mean metrics at each k over users with at least one relevant item.

    Args:
        ranked: [users, max(ks)] item indices, best first (from `top_k`).
        relevant: per user, the relevant item indices.
        ks: cut-offs, each at most ranked.shape[1].

    Returns:
        {"recall@10": ..., "ndcg@10": ..., ...} for every metric in METRICS and k in ks.
    """
    return mean_metrics(per_user_metrics(ranked, relevant, ks))


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """`ranking_metrics` from the vectors of `per_user_metrics` (NaN when no user counts)."""
    return {name: float(np.mean(v)) if len(v) else float("nan") for name, v in per_user.items()}


def per_user_metrics(
    ranked: np.ndarray, relevant: Sequence[np.ndarray], ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Each metric of `ranking_metrics` per user with at least one relevant item (for paired
    comparisons of two models on the same users)."""
    if max(ks) > ranked.shape[1]:
        raise ValueError(f"ranked has {ranked.shape[1]} columns, fewer than k={max(ks)}")
    n_rel = np.array([len(r) for r in relevant])
    keep = n_rel > 0
    hits = hits_matrix(ranked, relevant)[keep]
    n_rel = n_rel[keep]
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        n_hits = h.sum(axis=1)
        dcg = (h * discounts[:k]).sum(axis=1)
        ideal = np.cumsum(discounts[:k])[np.minimum(n_rel, k) - 1]
        first = np.where(h.any(axis=1), h.argmax(axis=1) + 1, np.inf)
        precision_at_hit = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        out[f"recall@{k}"] = n_hits / n_rel
        out[f"precision@{k}"] = n_hits / k
        out[f"ndcg@{k}"] = dcg / ideal
        out[f"mrr@{k}"] = 1.0 / first
        out[f"map@{k}"] = (precision_at_hit * h).sum(axis=1) / np.minimum(n_rel, k)
        out[f"hit@{k}"] = (n_hits > 0).astype(np.float64)
    return out


def ndcg_per_user(ranked: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> np.ndarray:
    """NDCG@k of each user with at least one relevant item (for paired comparisons)."""
    n_rel = np.array([len(r) for r in relevant])
    keep = n_rel > 0
    hits = hits_matrix(ranked[:, :k], relevant)[keep]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_rel[keep], k) - 1]
    return (hits * discounts).sum(axis=1) / ideal


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:  # fmt: skip
    """Mean of a - b over paired users with a percentile bootstrap interval."""
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("paired_bootstrap needs two 1-d arrays of the same users")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"mean_diff": float(diff.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "level": level, "users": int(len(diff))}  # fmt: skip


def sample_users(rows: np.ndarray, max_users: int, seed: int) -> np.ndarray:
    """At most `max_users` of `rows`, drawn without replacement with `seed` and returned sorted
    (all of `rows` when there are no more): evaluate and the gate draw the same test users
    from the same sorted rows."""
    if len(rows) <= max_users:
        return rows
    chosen = np.random.default_rng(seed).choice(len(rows), size=max_users, replace=False)
    return rows[np.sort(chosen)]
