"""The fitted fusion (weights and stacker) applied to a period's candidates: every method's
top-k lists, and the reason of each recommended item."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from recfusion.config import FUSION_METHODS, FusionConfig
from recfusion.fusion import methods
from recfusion.fusion.candidates import CandidateSet, source_ranking
from recfusion.fusion.cascade import apply_rules, mmr_rerank
from recfusion.fusion.period import Period
from recfusion.fusion.stacking import fit_stacker, stack_scores
from recfusion.models.dataset import ModelData


@dataclass
class FittedFusion:
    weights: dict[str, float]  # weighted fusion: source -> weight
    stacker: lgb.Booster  # lambdarank trees, cut at the best iteration

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.json").write_text(json.dumps(self.weights, indent=2) + "\n")
        self.stacker.save_model(str(folder / "stacker.txt"))

    @classmethod
    def load(cls, folder: Path) -> FittedFusion:
        weights = json.loads((folder / "weights.json").read_text())
        return cls(weights, lgb.Booster(model_file=str(folder / "stacker.txt")))

    def stack(self, period: Period) -> np.ndarray:
        """[U, C] stacker scores of the period's candidates (-inf for empty slots)."""
        return stack_scores(self.stacker, period.candidates, period.extra)


def fit_fusion(val: Period, cfg: FusionConfig, seed: int) -> FittedFusion:
    """Weights by coordinate ascent on validation NDCG@10, and the lambdarank stacker."""
    ranker = fit_stacker(val.candidates, val.extra, val.relevant, cfg.stacking, seed)
    best = ranker.best_iteration_ or None
    # a Booster saved with the best iteration only, so saved and in-memory models score alike
    booster = lgb.Booster(model_str=ranker.booster_.model_to_string(num_iteration=best))
    return FittedFusion(methods.fit_weights(val.candidates, val.relevant, 10), booster)


METHODS = FUSION_METHODS  # the names, defined once in recfusion.config


def method_scores(method: str, period: Period, fitted: FittedFusion) -> np.ndarray:
    """[U, C] the scores a fusion method orders the candidates by (the cascade re-ranks the
    stacker's).

    Raises:
        ValueError: an unknown method.
    """
    c = period.candidates
    if method == "weighted":
        return methods.weighted(c, fitted.weights)
    if method == "rrf":
        return methods.rrf(c)
    if method == "borda":
        return methods.borda(c)
    if method in ("stacking", "cascade"):
        return fitted.stack(period)
    raise ValueError(f"unknown fusion method '{method}' (methods: {', '.join(METHODS)})")


def rank_method(method: str, period: Period, fitted: FittedFusion, cfg: FusionConfig,
                data: ModelData, item_embeddings: np.ndarray, purchased: list[np.ndarray], k: int,
                scores: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """[U, k] top-k lists of one fusion method.

    Args:
        purchased: per candidate user, items the cascade's rules never recommend again.
        scores: the method's `method_scores`, when already computed.

    Raises:
        ValueError: an unknown method.
    """
    scores = method_scores(method, period, fitted) if scores is None else scores
    c = period.candidates
    if method != "cascade":
        return c.top(scores, k)
    ruled = apply_rules(c, scores, data.catalog.in_stock, purchased)
    return mmr_rerank(c, ruled, item_embeddings, data.catalog.brand, k, cfg.cascade.diversity,
                      cfg.cascade.max_per_brand, max(cfg.cascade.pool, k))  # fmt: skip


def rank_all(period: Period, fitted: FittedFusion, cfg: FusionConfig, data: ModelData,
             item_embeddings: np.ndarray, purchased: list[np.ndarray], k: int
             ) -> dict[str, np.ndarray]:  # fmt: skip
    """[U, k] top-k lists of every source ("source:<name>") and method ("fusion:<name>")."""
    c = period.candidates
    out = {f"source:{n}": source_ranking(c, n, k) for n in c.scores}
    stacked = fitted.stack(period)
    for m in METHODS:
        scores = stacked if m in ("stacking", "cascade") else None
        out[f"fusion:{m}"] = rank_method(m, period, fitted, cfg, data, item_embeddings, purchased,
                                         k, scores)  # fmt: skip
    return out


def reasons(period: Period, u: int, items: np.ndarray) -> list[tuple[str, str]]:
    """(source, reason) of each item in user slot `u`'s list: the source that ranked it best."""
    c: CandidateSet = period.candidates
    by_name = {s.name: s for s in period.sources}
    out = []
    for item in items:
        if item < 0:
            continue
        slot = int(np.flatnonzero(c.items[u] == item)[0])
        best = min(c.ranks, key=lambda n: c.ranks[n][u, slot])
        row = int(c.rows[u])
        out.append((best, by_name[best].explain_item(row, int(item), period.history)))
    return out
