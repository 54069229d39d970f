"""Candidates for one prediction period: sources refitted on everything known before it.

The validation period sees the train split; the test period sees train + validation. EASE and
the popularity sources are refitted on what the period sees; the two-tower model (trained on
train, selected on validation) is used as it is, with the period's histories as input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recfusion.config import SOURCES
from recfusion.fusion.candidates import CandidateSet, gather
from recfusion.fusion.sources import EaseFit, Source, TwoTowerSource, build_sources
from recfusion.fusion.stacking import context_features
from recfusion.metrics.ranking import sample_users
from recfusion.models.dataset import History, ModelData, build_history
from recfusion.models.item_index import ItemIndex


@dataclass(frozen=True)
class Period:
    history: History
    sources: list[Source]
    candidates: CandidateSet
    relevant: list[np.ndarray]  # per candidate user, the held-out items
    extra: dict[str, np.ndarray]  # context features for stacking


def item_days_since_last(data: ModelData, splits: Sequence[str]) -> np.ndarray:
    """[n_items] days from each item's last positive to the end of `splits` (9999 if none)."""
    pairs = data.pairs_of(list(splits))
    out = np.full(len(data.catalog), 9999.0, dtype=np.float32)
    if len(pairs) == 0:
        return out
    pos = data.catalog.positions(pairs["item_id"])
    last = pd.Series(pairs["timestamp"].to_numpy(), index=pos).groupby(level=0).max()
    last = last[last.index >= 0]
    out[last.index.to_numpy()] = (pairs["timestamp"].max() - last).dt.total_seconds() / 86400
    return out


@dataclass(frozen=True)
class FittedSources:
    """The sources fitted on what is known before a period, ready to score any user."""

    data: ModelData
    history: History
    sources: list[Source]
    counts: np.ndarray  # [n_items] positives per item in the history
    item_age_days: np.ndarray  # [n_items] days since the item was last chosen
    features: list[Callable[[CandidateSet], dict]]  # stacking features from other sub-models

    def candidates(self, rows: np.ndarray, exclude: Sequence[np.ndarray], per_source: int
                   ) -> tuple[CandidateSet, dict[str, np.ndarray]]:  # fmt: skip
        """Candidates of users `rows` (their `exclude` items removed) and their stacking features."""
        cands = gather(self.sources, rows, self.history, exclude, per_source)
        extra = context_features(cands, self.counts, self.item_age_days,
                                 np.asarray(self.history.matrix.sum(axis=1)).ravel())  # fmt: skip
        for add in self.features:
            extra.update(add(cands))
        return cands, extra

    def period(self, held_splits: Sequence[str], per_source: int, max_users: int | None = None,
               seed: int = 0) -> Period:  # fmt: skip
        """Candidates of the users with positives in `held_splits` (their history excluded),
        and those positives as the relevant items; at most `max_users` of them, drawn with
        `seed` (metrics.ranking.sample_users)."""
        held = self.data.items_by_user(list(held_splits))
        rows = np.array(sorted(held), dtype=np.int64)
        if max_users is not None:
            rows = sample_users(rows, max_users, seed)
        candidates, extra = self.candidates(rows, self.seen(rows), per_source)
        return Period(self.history, self.sources, candidates, [held[int(r)] for r in rows], extra)

    def seen(self, rows: np.ndarray) -> list[np.ndarray]:
        """Per user row, the catalogue positions in their history (excluded from their lists)."""
        m = self.history.matrix
        return [m.indices[m.indptr[r] : m.indptr[r + 1]] for r in rows]


def fit_sources(
    data: ModelData,
    seen_splits: Sequence[str],
    encode: Callable[[dict], np.ndarray],
    item_embeddings: np.ndarray,
    ease: EaseFit,
    names: Sequence[str] = SOURCES,
    model_features: Callable[[History], Sequence[Callable[[CandidateSet], dict]]] | None = None,
    index: ItemIndex | None = None,
) -> FittedSources:
    """Every source in `names` fitted on `seen_splits`.

    Args:
        ease: fits the ease source's weights on the period's interactions (`ease_fit`).
        model_features: given the period's history, functions adding [U, C] stacking features
            from other sub-models (see sub_model_scores.py).
        index: the two-tower source finds its candidates through this index when it is
            approximate (faiss); None or exact: a full scan.

    Raises:
        ValueError: an unknown source name.
    """
    history = build_history(data, list(seen_splits))
    counts = np.asarray(history.matrix.sum(axis=0)).ravel()
    sources = build_sources(names, data, counts, lambda: ease(history.matrix),
                            lambda: TwoTowerSource(data, encode, item_embeddings, index))  # fmt: skip
    features = list(model_features(history)) if model_features else []
    return FittedSources(data, history, sources, counts, item_days_since_last(data, seen_splits),
                         features)  # fmt: skip


def build_period(
    data: ModelData,
    seen_splits: Sequence[str],
    held_splits: Sequence[str],
    encode: Callable[[dict], np.ndarray],
    item_embeddings: np.ndarray,
    ease: EaseFit,
    per_source: int,
    names: Sequence[str] = SOURCES,
    model_features: Callable[[History], Sequence[Callable[[CandidateSet], dict]]] | None = None,
) -> Period:
    """Sources fitted on `seen_splits`, candidates for users with positives in `held_splits`.

    Args:
        model_features: see `fit_sources`.
    """
    fitted = fit_sources(data, seen_splits, encode, item_embeddings, ease, names,
                         model_features)  # fmt: skip
    return fitted.period(held_splits, per_source)
