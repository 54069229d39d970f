"""Examples for the ranking model (pure NumPy / pandas).

E-commerce logs: one example per impression (a user seeing an item in a session), labelled
click / add_to_cart / purchase by whether that happened to the item in the same session.
Rating logs (MovieLens): one example per rating, labelled with the rating and like = rating >= 4.
Both add negatives: random catalogue items and hard ones (the retrieval model's top-K items the
user never touched), labelled 0 for the binary heads and weighted 0 for the rating head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from recfusion.models.dataset import ModelData
from recfusion.models.inputs import history_without_target, last_items

ECOMMERCE_HEADS = ("click", "add_to_cart", "purchase")
RATING_HEADS = ("rating", "like")
LIKE_THRESHOLD = 4.0


def usual_hour(data: ModelData, splits: Sequence[str]) -> int:
    """The most common hour of the positives in `splits` (the ranking model's context input
    when a request carries no time)."""
    hours = data.pairs_of(list(splits))["timestamp"].dt.hour
    return int(hours.mode().iloc[0]) if len(hours) else 12


def heads_for(events: pd.DataFrame) -> tuple[str, ...]:
    """Rating heads for a log of ratings only, e-commerce heads otherwise."""
    types = set(events["event_type"].unique())
    return RATING_HEADS if types == {"rating"} else ECOMMERCE_HEADS


@dataclass(frozen=True)
class RankingExamples:
    user: np.ndarray  # [E] user rows
    item: np.ndarray  # [E] catalogue positions
    hour: np.ndarray  # [E] hour of day + 1 (0 = unknown)
    labels: dict[str, np.ndarray]  # head -> [E] float32
    weights: dict[str, np.ndarray]  # head -> [E] float32 (0 = no label for this head)

    def __len__(self) -> int:
        return len(self.user)

    def concat(self, other: RankingExamples) -> RankingExamples:
        return RankingExamples(
            np.concatenate([self.user, other.user]),
            np.concatenate([self.item, other.item]),
            np.concatenate([self.hour, other.hour]),
            {h: np.concatenate([self.labels[h], other.labels[h]]) for h in self.labels},
            {h: np.concatenate([self.weights[h], other.weights[h]]) for h in self.weights},
        )


def observed_examples(events: pd.DataFrame, data: ModelData, heads: tuple[str, ...]
                      ) -> RankingExamples:  # fmt: skip
    """One example per impression (e-commerce) or rating, for known users and items."""
    u = data.users.positions(events["user_id"])
    item = data.catalog.positions(events["item_id"])
    ev = events.assign(_u=u, _i=item)
    ev = ev[(ev["_u"] >= 0) & (ev["_i"] >= 0)]
    if heads == RATING_HEADS:
        rating = ev["value"].to_numpy(dtype=np.float32)
        labels = {"rating": rating, "like": (rating >= LIKE_THRESHOLD).astype(np.float32)}
        grouped = ev
    else:
        session = ev["session_id"]
        missing = session.isna()
        if missing.any():  # a day stands in for a missing session (only those rows formatted)
            day = ev.loc[missing, "timestamp"].dt.strftime("%Y-%m-%d")
            session = session.astype(object).where(~missing, day)
        # integer codes in the order of the ids: the same groups and order, far less memory
        ev = ev.assign(_s=pd.factorize(session, sort=True)[0])
        by = ev.groupby(["_u", "_i", "_s"], sort=True)
        grouped = by["timestamp"].min().reset_index()
        group = by.ngroup().to_numpy()  # each event's row of `grouped` (groups in sorted order)
        kinds = ev["event_type"].to_numpy()
        for kind in pd.unique(kinds):  # which event types each (user, item, session) had
            seen = np.zeros(len(grouped), dtype=bool)
            seen[group[kinds == kind]] = True
            grouped[kind] = seen
        labels = {
            h: (grouped[h].to_numpy() if h in grouped else np.zeros(len(grouped))).astype(
                np.float32
            )
            for h in heads
        }
    hour = (grouped["timestamp"].dt.hour.to_numpy() + 1).astype(np.int32)
    n = len(grouped)
    return RankingExamples(
        user=grouped["_u"].to_numpy(dtype=np.int64),
        item=grouped["_i"].to_numpy(dtype=np.int64),
        hour=hour,
        labels=labels,
        weights={h: np.ones(n, dtype=np.float32) for h in heads},
    )


def negative_examples(
    users: np.ndarray,
    n_items: int,
    touched: dict[int, np.ndarray],
    hard: dict[int, np.ndarray] | None,
    n_random: np.ndarray,
    n_hard: int,
    heads: tuple[str, ...],
    hours: np.ndarray,
    rng: np.random.Generator,
) -> RankingExamples:
    """`n_random` random and up to `n_hard` hard negatives for each user in `users`.

    Args:
        users: user rows to draw negatives for.
        n_items: catalogue size.
        touched: user row -> catalogue positions the user interacted with (never negatives).
        hard: user row -> the retrieval model's top-K positions, best first (or None).
        n_random: [len(users)] random negatives per user.
        n_hard: hard negatives per user (the best-ranked untouched ones).
        heads: the label heads.
        hours: observed hours to draw the context feature from.
        rng: randomness.
    """
    out_u, out_i = [], []
    empty = np.array([], dtype=np.int64)
    for u, n_u in zip(users, n_random, strict=True):
        seen = touched.get(int(u), empty)
        picks = rng.integers(0, n_items, int(n_u))
        picks = picks[~np.isin(picks, seen)]
        if hard is not None and n_hard:
            candidates = hard.get(int(u), empty)
            picks = np.concatenate([picks, candidates[~np.isin(candidates, seen)][:n_hard]])
        out_u.append(np.full(len(picks), u, dtype=np.int64))
        out_i.append(picks.astype(np.int64))
    user = np.concatenate(out_u) if out_u else empty
    item = np.concatenate(out_i) if out_i else empty
    n = len(user)
    zeros = np.zeros(n, dtype=np.float32)
    return RankingExamples(
        user=user,
        item=item,
        hour=rng.choice(hours, n).astype(np.int32) if len(hours) else np.zeros(n, np.int32),
        labels={h: zeros.copy() for h in heads},
        weights={
            h: (zeros if h == "rating" else np.ones(n, dtype=np.float32)).copy() for h in heads
        },  # fmt: skip
    )


class Histories(Protocol):
    """[E, history_len] histories, one row per example, read a few rows at a time: a plain
    NumPy array, or `ExampleHistories`, which computes the rows asked for."""

    def take(self, indices: np.ndarray, axis: int = 0) -> np.ndarray: ...


@dataclass(frozen=True)
class ExampleHistories:
    """Each example's user history, the example's own item removed (`history_without_target`),
    computed for the rows asked for: at a large shop's millions of examples the whole [E, n]
    array and the sort that removes the targets would take gigabytes."""

    last: np.ndarray  # [n_users, n + 1] each user's last item vocabulary indices (`last_items`)
    user: np.ndarray  # [E] each example's user row
    target: np.ndarray  # [E] item vocabulary index of each example's item
    n: int  # history length

    def __len__(self) -> int:
        return len(self.user)

    def take(self, indices: np.ndarray, axis: int = 0) -> np.ndarray:
        """The [len(indices), n] histories of examples `indices` (as ndarray.take on axis 0)."""
        if axis != 0:
            raise ValueError("ExampleHistories rows are examples: take along axis 0")
        return history_without_target(self.last[self.user[indices]], self.target[indices],
                                      self.n)  # fmt: skip


def example_histories(examples: RankingExamples, data: ModelData, splits: list[str]
                      ) -> ExampleHistories:  # fmt: skip
    """[E, history_len] each example's user history within `splits`, the example's item removed."""
    last = last_items(data.pairs_of(splits), data.users, data.catalog, data.history_len + 1)
    return ExampleHistories(last, examples.user, data.catalog.id_idx[examples.item],
                            data.history_len)  # fmt: skip


def touched_items(events: pd.DataFrame, data: ModelData) -> dict[int, np.ndarray]:
    """user row -> catalogue positions the user had any event with in `events`."""
    u = data.users.positions(events["user_id"])
    item = data.catalog.positions(events["item_id"])
    keep = (u >= 0) & (item >= 0)
    df = pd.DataFrame({"u": u[keep], "item": item[keep]}).drop_duplicates()
    return {int(k): g.to_numpy(dtype=np.int64) for k, g in df.groupby("u")["item"]}


def with_negatives(
    observed: RankingExamples,
    data: ModelData,
    touched: dict[int, np.ndarray],
    hard: dict[int, np.ndarray] | None,
    ratio: float,
    n_hard: int,
    rng: np.random.Generator,
) -> RankingExamples:
    """`observed` plus `ratio` random negatives per observed example of each user (rounded,
    at least one per user) and up to `n_hard` hard negatives per user."""
    users, counts = np.unique(observed.user, return_counts=True)
    n_random = np.maximum(np.round(counts * ratio), 1 if ratio > 0 else 0).astype(np.int64)
    heads = tuple(observed.labels)
    negatives = negative_examples(users, len(data.catalog), touched, hard, n_random, n_hard,
                                  heads, observed.hour, rng)  # fmt: skip
    return observed.concat(negatives)
