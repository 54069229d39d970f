"""Stacking features from the other sub-models: the ranking model's head probabilities (click /
add_to_cart / purchase, or like and the predicted rating) and the tag model's affinity of the
user for the item's category.

Each builder returns a function CandidateSet -> {feature name: [U, C] array}, used by
`build_period` for both the validation (fitting) and the test (evaluation) period.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recfusion.config import RankingConfig, TagsConfig
from recfusion.fusion.candidates import CandidateSet
from recfusion.fusion.sources import History
from recfusion.models.dataset import ModelData
from recfusion.models.features import user_inputs
from recfusion.models.inference import traced
from recfusion.models.ranking import RankingModel, predict
from recfusion.models.ranking_data import RankingExamples
from recfusion.models.tags import item_tags
from recfusion.models.tf_setup import keras, tf
from recfusion.models.towers import TowerSizes

Features = Callable[[CandidateSet], dict[str, np.ndarray]]


def load_ranking_model(folder: Path, data: ModelData) -> RankingModel:
    """The trained ranking model rebuilt from meta.json and restored from its checkpoint."""
    meta = json.loads((folder / "meta.json").read_text())
    model = RankingModel(TowerSizes(**meta["sizes"]), data.catalog, tuple(meta["heads"]),
                         RankingConfig(**meta["ranking"]))  # fmt: skip
    one = np.zeros(1, dtype=np.int32)
    model({"user": {"user_id": one, "gender": one, "region": one, "age": np.zeros(1, np.float32),
                    "history": np.zeros((1, meta["history_len"]), np.int32)},
           "item": one, "hour": one})  # fmt: skip
    tf.train.Checkpoint(model=model).read(str(folder / "weights" / "ranking")).expect_partial()
    return model


def ranking_features(folder: Path, data: ModelData, history: np.ndarray, hour: int) -> Features:
    """Per candidate, each ranking head's output for the user and item at `hour` (0-23)."""
    model = load_ranking_model(folder, data)

    def features(cands: CandidateSet) -> dict[str, np.ndarray]:
        valid = cands.valid
        users = np.repeat(cands.rows, valid.sum(axis=1))
        items = cands.items[valid]
        n = len(items)
        examples = RankingExamples(users, items, np.full(n, hour + 1, np.int32), {}, {})
        preds = predict(model, examples, history[users], data)
        out = {}
        for head, values in preds.items():
            full = np.zeros(cands.items.shape, dtype=np.float32)
            full[valid] = values
            out[f"ranking_{head}"] = full
        return out

    return features


def tag_features(folder: Path, data: ModelData, encode: Callable[[dict], np.ndarray],
                 history: np.ndarray, cfg: TagsConfig) -> Features:  # fmt: skip
    """Per candidate, the tag head's probability that the item's category is one of the user's
    interests (the head reads the same user embedding the two-tower model serves)."""
    meta = json.loads((folder / "meta.json").read_text())
    tag_of_item, categories = item_tags(data, meta["level"])
    head = keras.Sequential([keras.layers.Dense(cfg.hidden_units, activation="relu"),
                             keras.layers.Dense(len(categories), activation="sigmoid")])  # fmt: skip
    head.build((None, int(meta["tower_sizes"]["dim"])))
    tf.train.Checkpoint(head=head).read(str(folder / "weights" / "head")).expect_partial()

    forward = traced(head)

    def features(cands: CandidateSet) -> dict[str, np.ndarray]:
        emb = encode(user_inputs(data.users, cands.rows, history[cands.rows]))
        parts = [forward(emb[i : i + 4096]).numpy() for i in range(0, len(emb), 4096)]
        probs = np.concatenate(parts) if parts else np.zeros((0, len(categories)), np.float32)
        affinity = np.take_along_axis(probs, tag_of_item[np.maximum(cands.items, 0)], axis=1)
        return {"tag_affinity": np.where(cands.valid, affinity, 0.0).astype(np.float32)}

    return features


def sub_model_features(models_dir: Path, data: ModelData, encode: Callable[[dict], np.ndarray],
                       tags_cfg: TagsConfig, hour: int) -> Callable[[History], list[Features]]:  # fmt: skip
    """For `build_period`: ranking and tag features from models_dir/ranking and models_dir/tags."""

    def make(history: History) -> list[Features]:
        return [
            ranking_features(models_dir / "ranking", data, history.recent, hour),
            tag_features(models_dir / "tags", data, encode, history.recent, tags_cfg),
        ]

    return make
