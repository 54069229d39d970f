"""Merging candidate lists (pure NumPy): weighted reciprocal rank fusion.

Lists are [n_queries, length] catalogue positions, best first, -1 padded. An item scores
sum over lists of weight / (rrf_k + rank) with ranks from 1; items missing from a list get
nothing from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reciprocal_rank_fusion(lists: Sequence[np.ndarray], weights: Sequence[float], rrf_k: int,
                           ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Fuses ranked lists per query.

    Args:
        lists: each [n, length_i] catalogue positions, best first, -1 padded.
        weights: one weight per list.
        rrf_k: the RRF constant (60 in the original paper).

    Returns:
        ([n, m] positions best first, -1 padded; [n, m] fused scores), m = the longest union.

    Example (hand-checked): lists [[7, 3]] and [[3, 9]], weights 1 and 1, rrf_k 0:
        item 3 scores 1/2 + 1/1 = 1.5, item 7 scores 1, item 9 scores 1/2 -> [[3, 7, 9]].
    """
    if len(lists) != len(weights) or not lists:
        raise ValueError(
            f"need one weight per list, got {len(lists)} lists, {len(weights)} weights"
        )
    n = len(lists[0])
    fused: list[dict[int, float]] = [{} for _ in range(n)]
    for ranked, weight in zip(lists, weights, strict=True):
        if len(ranked) != n:
            raise ValueError(f"every list needs {n} rows, got {len(ranked)}")
        if weight == 0:
            continue
        for q in range(n):
            acc = fused[q]
            for rank, item in enumerate(ranked[q], start=1):
                if item >= 0:
                    acc[int(item)] = acc.get(int(item), 0.0) + weight / (rrf_k + rank)
    width = max((len(f) for f in fused), default=0)
    items = np.full((n, width), -1, dtype=np.int64)
    scores = np.zeros((n, width), dtype=np.float64)
    for q, acc in enumerate(fused):
        if not acc:
            continue
        keys = np.fromiter(acc.keys(), dtype=np.int64, count=len(acc))
        vals = np.fromiter(acc.values(), dtype=np.float64, count=len(acc))
        order = np.lexsort((keys, -vals))  # best score first, ties by position: deterministic
        items[q, : len(acc)] = keys[order]
        scores[q, : len(acc)] = vals[order]
    return items, scores


def rank_by_score(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[n, m] positions of `items` reordered by `scores` (best first), -1 entries kept last."""
    masked = np.where(items >= 0, scores, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1)
