"""Beyond-accuracy measures of top-k lists (pure NumPy).

- coverage: distinct recommended items / catalogue size;
- intra-list diversity: mean over lists of 1 - mean pairwise cosine of the items' embeddings;
- novelty: mean self-information -log2(p) of recommended items, p = the item's share of users
  who chose it (smoothed by one);
- long-tail share: share of recommended items outside the head, the most popular items that
  together hold `head_share` of all interactions.
"""

from __future__ import annotations

import numpy as np


def coverage(ranked: np.ndarray, n_items: int) -> float:
    items = ranked[ranked >= 0]
    return float(len(np.unique(items)) / n_items) if n_items else 0.0


def intra_list_diversity(ranked: np.ndarray, embeddings: np.ndarray) -> float:
    values = []
    for row in ranked:
        items = row[row >= 0]
        if len(items) < 2:
            continue
        e = embeddings[items]
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        sim = e @ e.T
        n = len(items)
        values.append(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))
    return float(np.mean(values)) if values else 0.0


def novelty(ranked: np.ndarray, item_users: np.ndarray, n_users: int) -> float:
    items = ranked[ranked >= 0]
    if len(items) == 0:
        return 0.0
    p = (item_users[items] + 1.0) / (n_users + 1.0)
    return float(np.mean(-np.log2(p)))


def long_tail_items(counts: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """[n_items] True for tail items: outside the most popular items that hold `head_share` of
    all interactions."""
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order]) / max(counts.sum(), 1)
    head = order[: int(np.searchsorted(cumulative, head_share) + 1)]
    tail = np.ones(len(counts), dtype=bool)
    tail[head] = False
    return tail


def long_tail_share(ranked: np.ndarray, tail: np.ndarray) -> float:
    items = ranked[ranked >= 0]
    return float(tail[items].mean()) if len(items) else 0.0
