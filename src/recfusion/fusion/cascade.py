"""Cascade: retrieve from every source (the candidate set), rank with the stacker, then apply
business rules and re-rank for diversity.

Rules: drop items the user already purchased and items out of stock, and keep at most
`max_per_brand` items of one brand. Diversity: maximal marginal relevance (MMR), which picks
greedily the item maximising lambda * relevance - (1 - lambda) * max similarity to the items
already picked (similarity = cosine of the two-tower item embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recfusion.fusion.candidates import CandidateSet


def apply_rules(
    cands: CandidateSet,
    scores: np.ndarray,
    in_stock: np.ndarray,
    purchased: Sequence[np.ndarray],
) -> np.ndarray:
    """`scores` with -inf for out-of-stock items and items the user already purchased."""
    out = np.where(in_stock[np.maximum(cands.items, 0)] & cands.valid, scores, -np.inf)
    for u, bought in enumerate(purchased):
        if len(bought):
            out[u, np.isin(cands.items[u], bought)] = -np.inf
    return out


def mmr_rerank(
    cands: CandidateSet,
    scores: np.ndarray,
    item_embeddings: np.ndarray,
    brands: np.ndarray,
    k: int,
    diversity: float,
    max_per_brand: int,
    pool: int = 100,
) -> np.ndarray:
    """[U, k] catalogue positions chosen greedily by MMR among each user's `pool` best-scored
    candidates, at most `max_per_brand` per brand (0 = no cap); -1 pads short lists.

    Args:
        diversity: 1 - lambda of MMR; 0 keeps the score order.
    """
    out = np.full((len(cands.rows), k), -1, dtype=np.int64)
    lam = 1.0 - diversity
    for u in range(len(cands.rows)):
        finite = np.isfinite(scores[u])
        order = np.argsort(-np.where(finite, scores[u], -np.inf))[:pool]
        order = order[finite[order]]
        if len(order) == 0:
            continue
        items = cands.items[u, order]
        rel = scores[u, order]
        rel = (rel - rel.min()) / (rel.max() - rel.min() if rel.max() > rel.min() else 1.0)
        emb = item_embeddings[items]
        chosen: list[int] = []
        max_sim = np.full(len(items), -np.inf)
        per_brand: dict[int, int] = {}
        available = np.ones(len(items), dtype=bool)
        while len(chosen) < k and available.any():
            gain = lam * rel - (1 - lam) * np.where(np.isfinite(max_sim), max_sim, 0.0)
            gain[~available] = -np.inf
            j = int(np.argmax(gain))
            available[j] = False
            brand = int(brands[items[j]])
            if max_per_brand and brand > 0 and per_brand.get(brand, 0) >= max_per_brand:
                continue
            per_brand[brand] = per_brand.get(brand, 0) + 1
            chosen.append(j)
            max_sim = np.maximum(max_sim, emb @ emb[j])
        out[u, : len(chosen)] = items[chosen]
    return out
