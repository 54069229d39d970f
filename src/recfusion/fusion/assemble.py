"""The fused recommender's parts: the sub-models it draws on (loaded from a workspace's models/),
and the sources fitted on a period's history with the ranking and tag models' stacking features.

The `fuse` and `evaluate` stages assemble through here; the packaged (served) recommender loads
its sub-models here and builds the same sources (`fusion/sources.build_sources`) over its fitted
state and each request's users, so they score alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.config import FusionConfig, TagsConfig
from recfusion.fusion.period import FittedSources, Period, fit_sources
from recfusion.fusion.sources import ease_fit
from recfusion.fusion.sub_model_scores import sub_model_scores
from recfusion.models.dataset import ModelData, PreparedData, group_by_user
from recfusion.models.export import Retrieval, load_retrieval
from recfusion.models.ranking import RankingModel, load_ranking_model
from recfusion.models.ranking_data import usual_hour
from recfusion.models.tags import TagHead, load_tag_head
from recfusion.paths import MODELS_DIR


@dataclass(frozen=True)
class SubModels:
    """The trained sub-models the fusion draws on."""

    retrieval: Retrieval  # the two-tower source: user encoder, item embeddings, item index
    ranking: RankingModel  # stacking features: each head's output
    tags: TagHead  # stacking feature: the user's affinity for the item's category


def load_sub_models(data: ModelData, tags_cfg: TagsConfig, models_dir: Path = MODELS_DIR
                    ) -> SubModels:  # fmt: skip
    """models_dir/retrieval, models_dir/ranking and models_dir/tags, checked against `data`.

    Raises:
        ValueError: the retrieval model was trained on another catalogue.
    """
    return SubModels(load_retrieval(data, models_dir / "retrieval"),
                     load_ranking_model(models_dir / "ranking", data),
                     load_tag_head(models_dir / "tags", data, tags_cfg))  # fmt: skip


def fit_with_sub_models(fc: FusionConfig, data: ModelData, seen: Sequence[str],
                        models: SubModels) -> FittedSources:  # fmt: skip
    """The sources fitted on `seen`, with stacking features from the ranking and tag models."""
    encode, items, index = models.retrieval
    features = sub_model_scores(models.ranking, models.tags, data, encode, usual_hour(data, seen))
    return fit_sources(data, seen, encode, items, ease_fit(fc), fc.sources, features, index)


def period(fc: FusionConfig, data: ModelData, seen: list[str], held: list[str],
           models: SubModels, max_users: int | None = None, seed: int = 0) -> Period:  # fmt: skip
    """The candidates of users with positives in `held` (at most `max_users` of them, drawn
    with `seed`), sources fitted on `seen`."""
    fitted = fit_with_sub_models(fc, data, seen, models)
    return fitted.period(held, fc.per_source, max_users, seed)


def purchases(prepared: PreparedData, data: ModelData, splits: Sequence[str], rows: np.ndarray
              ) -> list[np.ndarray]:  # fmt: skip
    """Per user row in `rows`, the catalogue positions they purchased within `splits` (the
    cascade's rules never recommend them again)."""
    ev = pd.concat([prepared.splits[s] for s in splits])
    ev = ev[ev["event_type"] == "purchase"]
    u = data.users.positions(ev["user_id"])
    i = data.catalog.positions(ev["item_id"])
    keep = np.isin(u, rows)  # only the users asked for: a sample of a large shop's
    by_user = group_by_user(u[keep], i[keep])
    empty = np.array([], dtype=np.int64)
    return [by_user.get(int(r), empty) for r in rows]
