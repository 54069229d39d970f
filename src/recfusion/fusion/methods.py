"""Fusion methods over a CandidateSet: each returns [U, C] fused scores (higher is better).

- weighted: sum of per-user min-max normalised source scores, weights fitted on validation;
- rrf: reciprocal rank fusion, sum of 1 / (k + rank) over the sources that listed the item;
- borda: Borda count, sum of (n + 1 - rank) over the sources that listed the item;
- stacking and cascade live in stacking.py and cascade.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recfusion.fusion.candidates import CandidateSet
from recfusion.metrics.ranking import ranking_metrics

RRF_K = 60


def normalised(cands: CandidateSet, name: str) -> np.ndarray:
    """Per-user min-max normalised scores of source `name` over the valid candidates."""
    s = np.where(cands.valid, cands.scores[name], np.nan)
    lo = np.nanmin(s, axis=1, keepdims=True)
    hi = np.nanmax(s, axis=1, keepdims=True)
    out = (s - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.nan_to_num(out, nan=0.0)


def weighted(cands: CandidateSet, weights: dict[str, float]) -> np.ndarray:
    return sum(w * normalised(cands, name) for name, w in weights.items())  # type: ignore[return-value]


def rrf(cands: CandidateSet, k: int = RRF_K) -> np.ndarray:
    n = cands.per_source
    return sum(np.where(r <= n, 1.0 / (k + r), 0.0) for r in cands.ranks.values())  # type: ignore[return-value]


def borda(cands: CandidateSet) -> np.ndarray:
    n = cands.per_source
    return sum(np.where(r <= n, n + 1 - r, 0) for r in cands.ranks.values()).astype(np.float64)  # type: ignore[union-attr]


def fit_weights(
    cands: CandidateSet,
    relevant: Sequence[np.ndarray],
    k: int,
    grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
    rounds: int = 2,
) -> dict[str, float]:
    """Coordinate ascent on validation NDCG@k over a grid of weights per source."""
    names = list(cands.scores)
    weights = {name: 1.0 for name in names}
    norm = {name: normalised(cands, name) for name in names}

    def score(w: dict[str, float]) -> float:
        fused = sum(w[n] * norm[n] for n in names)
        return ranking_metrics(cands.top(fused, k), relevant, [k])[f"ndcg@{k}"]  # type: ignore[arg-type]

    best = score(weights)
    for _ in range(rounds):
        for name in names:
            for value in grid:
                trial = {**weights, name: value}
                if not any(trial.values()):
                    continue
                s = score(trial)
                if s > best + 1e-9:
                    best, weights = s, trial
    return weights
