"""Search quality on held-out queries: NDCG@10, MRR@10 and Recall@10 of each variant, and the
choice of the fusion weights on validation queries.

A query counts when its searcher clicked a catalogue item (the one relevant item); queries
without a click have no label and are left out (counted in `queries_without_click`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recfusion.metrics.ranking import ranking_metrics
from recfusion.models.dataset import ModelData
from recfusion.search.hybrid import reciprocal_rank_fusion
from recfusion.search.searcher import VARIANTS, Searcher

log = logging.getLogger(__name__)
K = 10


@dataclass(frozen=True)
class QuerySet:
    texts: list[str]
    rows: np.ndarray  # [n] user rows, -1 = anonymous or unknown user
    clicked: np.ndarray  # [n] catalogue positions clicked
    without_click: int  # queries of the split left out for want of a label

    def __len__(self) -> int:
        return len(self.texts)


def query_set(queries: pd.DataFrame, data: ModelData, splits: Sequence[str]) -> QuerySet:
    """The labelled queries of `splits` (prepared queries carry a `split` column)."""
    q = queries[queries["split"].isin(list(splits))]
    clicked = data.catalog.positions(q["clicked_item_id"].where(q["clicked_item_id"].notna(), ""))
    keep = clicked >= 0
    q = q[keep]
    rows = data.users.positions(q["user_id"].where(q["user_id"].notna(), ""))
    return QuerySet(q["query"].astype(str).tolist(), rows.astype(np.int64),
                    clicked[keep].astype(np.int64), int((~keep).sum()))  # fmt: skip


def metrics_of(ranked: np.ndarray, clicked: np.ndarray) -> dict[str, float]:
    """NDCG, MRR and Recall at 10 of [n, m] rankings (-1 padded) with one relevant item each."""
    if ranked.shape[1] < K:
        ranked = np.pad(ranked, ((0, 0), (0, K - ranked.shape[1])), constant_values=-1)
    m = ranking_metrics(ranked[:, :K], [np.array([c]) for c in clicked], [K])
    return {f"{name}@{K}": m[f"{name}@{K}"] for name in ("ndcg", "mrr", "recall")}


def evaluate_variants(searcher: Searcher, queries: QuerySet) -> dict[str, dict[str, float]]:
    """Every variant's metrics on the same queries."""
    return {v: metrics_of(searcher.rank(v, queries.texts, queries.rows), queries.clicked)
            for v in VARIANTS}  # fmt: skip


def choose_weights(searcher: Searcher, queries: QuerySet, lexical_weights: Sequence[float],
                   personal_weights: Sequence[float]) -> tuple[float, float, dict]:  # fmt: skip
    """The BM25 weight with the best hybrid NDCG@10, then the ranking-model weight with the best
    personalised NDCG@10 (ties: the first in the list)."""
    if not lexical_weights or not personal_weights:
        raise ValueError("train.search.lexical_weights and personal_weights need a value each")
    lexical, semantic = lists = searcher.retrieve(queries.texts)
    trials: dict[str, dict[str, float]] = {}
    for w in lexical_weights:
        ranked, _ = reciprocal_rank_fusion([lexical, semantic], [w, 1.0], searcher.settings.rrf_k)
        trials[f"lexical_weight={w}"] = metrics_of(ranked, queries.clicked)
    best_lex = max(lexical_weights, key=lambda w: trials[f"lexical_weight={w}"]["ndcg@10"])
    # the ranking model orders the hybrid list once; each weight only re-fuses the two orders
    hybrid, scores = searcher.hybrid(queries.texts, best_lex, lists)
    by_model = searcher.model_order(hybrid, queries.rows) if any(personal_weights) else None
    for w in personal_weights:
        ranked, _ = searcher.fuse_model_order(hybrid, scores, by_model, w)
        trials[f"personal_weight={w}"] = metrics_of(ranked, queries.clicked)
    best_pers = max(personal_weights, key=lambda w: trials[f"personal_weight={w}"]["ndcg@10"])
    log.info("search weights on validation: lexical %.2f, personal %.2f", best_lex, best_pers)
    return float(best_lex), float(best_pers), trials
