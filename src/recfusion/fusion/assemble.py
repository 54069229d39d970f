"""The fused recommender's parts assembled from a workspace folder: the exported retrieval model,
the sources fitted on a period's history with the ranking and tag models' stacking features.

The `fuse` and `evaluate` stages and the packaged (served) recommender all assemble through here,
so they score alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from recfusion.config import Config
from recfusion.fusion.model_features import sub_model_features
from recfusion.fusion.period import FittedSources, Period, fit_sources
from recfusion.models.dataset import ModelData, PreparedData
from recfusion.models.export import load_user_encoder
from recfusion.models.item_index import ItemIndex
from recfusion.paths import MODELS_DIR, RETRIEVAL_DIR


class Retrieval(NamedTuple):
    encode: Callable[[dict], np.ndarray]  # user tower inputs -> [users, dim] embeddings
    items: np.ndarray  # [n_items, dim] item embeddings, catalogue order
    item_index: ItemIndex  # exact scan, or faiss above train.retrieval.faiss_above


def load_retrieval(data: ModelData, folder: Path = RETRIEVAL_DIR) -> Retrieval:
    """The exported user encoder, item embeddings and item index, checked against the catalogue.

    Raises:
        ValueError: the model was trained on another catalogue.
    """
    encode = load_user_encoder(folder / "user_tower")
    items = np.load(folder / "item_embeddings.npy")
    ids = (folder / "item_ids.txt").read_text().splitlines()
    if ids != list(data.catalog.item_ids):
        raise ValueError(f"{folder} was trained on another catalogue; run dvc repro")
    return Retrieval(encode, items, ItemIndex.load(folder, items))


def usual_hour(data: ModelData, splits: Sequence[str]) -> int:
    """The most common hour of the positives in `splits` (the ranking model's context input)."""
    hours = data.pairs_of(list(splits))["timestamp"].dt.hour
    return int(hours.mode().iloc[0]) if len(hours) else 12


def fit_with_sub_models(cfg: Config, data: ModelData, seen: Sequence[str], retrieval: Retrieval,
                        models_dir: Path = MODELS_DIR) -> FittedSources:  # fmt: skip
    """The sources fitted on `seen`, with stacking features from models_dir's ranking and tags."""
    encode, items, index = retrieval
    features = sub_model_features(models_dir, data, encode, cfg.train.tags, usual_hour(data, seen))
    return fit_sources(data, seen, encode, items, cfg.fusion.ease_l2, cfg.fusion.sources, features,
                       index)  # fmt: skip


def period(cfg: Config, data: ModelData, seen: list[str], held: list[str], retrieval: Retrieval,
           models_dir: Path = MODELS_DIR) -> Period:  # fmt: skip
    """The candidates of users with positives in `held`, sources fitted on `seen`."""
    return fit_with_sub_models(cfg, data, seen, retrieval, models_dir).period(
        held, cfg.fusion.per_source
    )


def purchases(prepared: PreparedData, data: ModelData, splits: Sequence[str], rows: np.ndarray
              ) -> list[np.ndarray]:  # fmt: skip
    """Per user row in `rows`, the catalogue positions they purchased within `splits` (the
    cascade's rules never recommend them again)."""
    ev = pd.concat([prepared.splits[s] for s in splits])
    ev = ev[ev["event_type"] == "purchase"]
    u = data.users.positions(ev["user_id"])
    i = data.catalog.positions(ev["item_id"])
    by_user = pd.Series(i, index=u).groupby(level=0).apply(lambda s: s.to_numpy())
    empty = np.array([], dtype=np.int64)
    return [by_user.get(int(r), empty) for r in rows]
