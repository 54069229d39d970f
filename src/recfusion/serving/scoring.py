"""Scoring a packaged recommender on a test split through its request interface.

The gate scores the candidate and the production model alike: both are asked, as a client
would ask them, for each test user's top-k (knowing the users by train + validation only), and
both answers are scored against the same test positives. Items are matched by id, so a champion
trained on another catalogue is scored fairly on the items both know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recfusion.evaluation.beyond import coverage, long_tail_items
from recfusion.evaluation.slices import (
    MIN_GROUP_USERS,
    slice_ndcg_per_user,
    summarise_slices,
    user_groups,
)
from recfusion.metrics.ranking import mean_metrics, per_user_metrics, sample_users
from recfusion.models.dataset import ModelData, PreparedData, build_history
from recfusion.serving.recommender import Recommender


@dataclass(frozen=True)
class TestSet:
    user_ids: np.ndarray  # [U] test users (with a positive in the test split)
    relevant: list[np.ndarray]  # per user, catalogue positions of their test positives
    groups: dict[str, dict[str, np.ndarray]]  # attribute -> group -> [U] mask
    tail: np.ndarray  # [n_items] True for long-tail items (by train + validation popularity)
    data: ModelData  # the catalogue the positions refer to


@dataclass(frozen=True)
class Scores:
    overall: dict[str, float]  # ranking metrics at each k, coverage@10
    slices: dict[str, float]  # "attribute=group" and "long_tail_items" -> NDCG@10
    per_user: dict[str, np.ndarray]  # metric of `overall` -> [U] values, for paired bootstraps
    slice_per_user: dict[str, np.ndarray]  # slice of `slices` -> its users' NDCG@10, paired too


def build_test_set(prepared: PreparedData, data: ModelData, head_share: float,
                   max_users: int | None = None, seed: int = 0) -> TestSet:  # fmt: skip
    """The test users (at most `max_users`, the same draw as the evaluate stage's) with their
    held-out items, slices and the long tail."""
    held = data.items_by_user(["test"])
    rows = np.array(sorted(held), dtype=np.int64)
    if max_users is not None:
        rows = sample_users(rows, max_users, seed)
    counts = np.asarray(build_history(data, ["train", "val"]).matrix.sum(axis=0)).ravel()
    return TestSet(data.users.user_ids[rows].astype(str), [held[int(r)] for r in rows],
                   user_groups(prepared, data, rows), long_tail_items(counts, head_share),
                   data)  # fmt: skip


def score_recommender(recommender: Recommender, test: TestSet, ks: list[int]) -> Scores:
    """Asks `recommender` for every test user's top max(ks) and scores the answers. The users
    are sent in requests of at most the model's `serving.max_rows`, as a client must."""
    k = max(ks)
    per_request = recommender.cfg.serving.max_rows
    answer = pd.concat(
        [
            recommender.recommend(pd.DataFrame({"user_id": users, "k": k}))
            for users in np.split(
                test.user_ids, range(per_request, len(test.user_ids), per_request)
            )
        ],
        ignore_index=True,
    )
    ranked = np.full((len(test.user_ids), k), -1, dtype=np.int64)
    slot = pd.Index(test.user_ids).get_indexer(answer["user_id"])
    if (slot < 0).any():  # e.g. an id the request parser changed (stripped of blanks)
        stray = answer["user_id"][slot < 0].iloc[0]
        raise ValueError(f"the recommender answered for user {stray!r}, whom it was not asked "
                         "about; the test users' ids and the served ids disagree")  # fmt: skip
    pos = test.data.catalog.positions(answer["item_id"])
    ranked[slot, answer["rank"].to_numpy() - 1] = pos  # unknown ids stay -1: never relevant
    per_user = per_user_metrics(ranked, test.relevant, sorted(ks))
    overall = mean_metrics(per_user)
    overall["coverage@10"] = coverage(ranked[:, :10], len(test.data.catalog))
    slices: dict[str, float] = {}
    per_slice = slice_ndcg_per_user(ranked, test.relevant, test.groups, test.tail, 10)
    for attribute, s in summarise_slices(per_slice, test.groups).items():
        if attribute == "long_tail_items":
            slices[attribute] = s["ndcg"]
            continue
        for group, value in s["groups"].items():
            if s["users"][group] >= MIN_GROUP_USERS:  # smaller groups are too noisy to gate on
                slices[f"{attribute}={group}"] = value
    return Scores(overall, slices, per_user, {name: per_slice[name] for name in slices})
