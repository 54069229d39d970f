"""Sub-model scores used as stacking features: the ranking model's head probabilities (click /
add_to_cart / purchase, or like and the predicted rating) and the tag model's affinity of the
user for the item's category.

Each builder returns a function CandidateSet -> {feature name: [U, C] array}, used by
`fit_sources` for both the validation (fitting) and the test (evaluation) period. The models
come in loaded (`models.ranking.load_ranking_model`, `models.tags.load_tag_head`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recfusion.fusion.candidates import CandidateSet
from recfusion.models.dataset import History, ModelData
from recfusion.models.inference import traced
from recfusion.models.inputs import user_inputs
from recfusion.models.ranking import RankingModel, head_scorer
from recfusion.models.tags import TagHead

Features = Callable[[CandidateSet], dict[str, np.ndarray]]


def ranking_features(model: RankingModel, data: ModelData, history: np.ndarray, hour: int
                     ) -> Features:  # fmt: skip
    """Per candidate, each ranking head's output ("ranking_<head>") for the user and item at
    `hour` (0-23)."""
    score = head_scorer(model, data, history, hour)

    def features(cands: CandidateSet) -> dict[str, np.ndarray]:
        return {f"ranking_{head}": v for head, v in score(cands.rows, cands.items).items()}

    return features


def tag_features(tags: TagHead, data: ModelData, encode: Callable[[dict], np.ndarray],
                 history: np.ndarray) -> Features:  # fmt: skip
    """Per candidate, the tag head's probability that the item's category is one of the user's
    interests (the head reads the same user embedding the two-tower model serves)."""
    forward = traced(tags.head)

    def features(cands: CandidateSet) -> dict[str, np.ndarray]:
        emb = encode(user_inputs(data.users, cands.rows, history[cands.rows]))
        parts = [forward(emb[i : i + 4096]).numpy() for i in range(0, len(emb), 4096)]
        probs = (np.concatenate(parts) if parts
                 else np.zeros((0, len(tags.categories)), np.float32))  # fmt: skip
        affinity = np.take_along_axis(probs, tags.tag_of_item[np.maximum(cands.items, 0)], axis=1)
        return {"tag_affinity": np.where(cands.valid, affinity, 0.0).astype(np.float32)}

    return features


def sub_model_scores(ranking: RankingModel, tags: TagHead, data: ModelData,
                     encode: Callable[[dict], np.ndarray], hour: int,
                     ) -> Callable[[History], list[Features]]:  # fmt: skip
    """For `fit_sources`: the ranking and tag features of a period's history."""

    def make(history: History) -> list[Features]:
        return [
            ranking_features(ranking, data, history.recent, hour),
            tag_features(tags, data, encode, history.recent),
        ]

    return make
