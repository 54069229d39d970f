"""Two-tower retrieval with TFRS: the model, its evaluation, and training with checkpoints.

The TFRS `Retrieval` task owns the loss: in-batch softmax with temperature, the logQ
correction (candidate sampling probability = the item's share of training examples), removal
of accidental hits (the same item twice in a batch) and optional hard-negative mining.
Model selection and early stopping use full-catalogue NDCG@K on the validation split, with the
items a user already has excluded. A checkpoint is written every epoch, so an interrupted run
resumes exactly where it stopped (`epochs.train_epochs`, the ranking model's loop too, makes each
epoch's data order and dropout a function of the seed and the epoch alone).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.config import RetrievalConfig, TrainConfig
from recfusion.metrics.ranking import ranking_metrics, rows_per_batch, top_k
from recfusion.models.dataset import ModelData
from recfusion.models.devices import DevicePlan
from recfusion.models.epochs import Selection, epoch_seed, gathered_batches, train_epochs
from recfusion.models.inputs import (
    Examples,
    UserTable,
    item_popularity,
    training_examples,
    user_inputs,
)
from recfusion.models.optimizers import LazyAdam
from recfusion.models.tf_setup import keras, tf, tfrs
from recfusion.models.towers import ItemTower, TowerSizes, UserTower

log = logging.getLogger(__name__)


class TwoTowerModel(tfrs.Model):
    """Wires the towers to the TFRS Retrieval task; batches are {"user": {...}, "item": [b]}."""

    def __init__(
        self,
        user_tower: UserTower,
        item_tower: ItemTower,
        cfg: RetrievalConfig,
        sampling_probability: np.ndarray | None,
    ) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.remove_accidental_hits = cfg.remove_accidental_hits
        self.sampling_probability = (
            None
            if sampling_probability is None
            else tf.constant(np.maximum(sampling_probability, 1e-12), dtype=tf.float32)
        )
        self.task = tfrs.tasks.Retrieval(
            temperature=cfg.temperature,
            num_hard_negatives=cfg.hard_negatives or None,
            remove_accidental_hits=cfg.remove_accidental_hits,
        )

    def get_config(self) -> dict:
        return {"name": self.name}

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        query = self.user_tower(features["user"], training=training)
        items = features["item"]
        candidates = self.item_tower(items, training=training)
        probability = (
            None if self.sampling_probability is None
            else tf.gather(self.sampling_probability, items)
        )  # fmt: skip
        return self.task(
            query,
            candidates,
            candidate_sampling_probability=probability,
            candidate_ids=items if self.remove_accidental_hits else None,
            compute_metrics=False,
            compute_batch_metrics=False,
        )


@dataclass(frozen=True)
class EvalSet:
    """Users to rank the whole catalogue for, what they hold out, and what to exclude."""

    inputs: dict[str, np.ndarray]  # user tower inputs, one row per user
    relevant: list[np.ndarray]  # catalogue positions each user interacted with (held out)
    exclude: list[np.ndarray]  # catalogue positions each user already has
    user_rows: np.ndarray  # rows in the UserTable

    def __len__(self) -> int:
        return len(self.user_rows)


def build_eval_set(
    users: UserTable,
    history: np.ndarray,
    seen: dict[int, np.ndarray],
    held_out: dict[int, np.ndarray],
    max_users: int,
    seed: int,
) -> EvalSet:
    """Users with held-out items (a seeded sample of at most `max_users`).

    Args:
        users: the user table.
        history: [n_users, n] histories known at prediction time.
        seen: user row -> catalogue positions to exclude (already interacted with).
        held_out: user row -> relevant catalogue positions.
        max_users: cap on the number of users (0 = all).
        seed: sampling seed.
    """
    rows = np.array(sorted(held_out), dtype=np.int64)
    if max_users and len(rows) > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_users, replace=False))
    empty = np.array([], dtype=np.int64)
    return EvalSet(
        inputs=user_inputs(users, rows, history[rows]),
        relevant=[held_out[r] for r in rows],
        exclude=[seen.get(r, empty) for r in rows],
        user_rows=rows,
    )


def evaluate(
    user_tower: UserTower, item_embeddings: np.ndarray, eval_set: EvalSet, ks: Sequence[int]
) -> dict[str, float]:
    """Full-catalogue ranking metrics of the towers on `eval_set`."""
    if len(eval_set) == 0:
        return {}
    metrics: dict[str, list[float]] = {}
    weights = []
    step = rows_per_batch(len(item_embeddings))
    for start in range(0, len(eval_set), step):
        sl = slice(start, start + step)
        q = user_tower({k: v[sl] for k, v in eval_set.inputs.items()}, training=False).numpy()
        ranked = top_k(q @ item_embeddings.T, max(ks), eval_set.exclude[sl])
        part = ranking_metrics(ranked, eval_set.relevant[sl], ks)
        n = sum(len(r) > 0 for r in eval_set.relevant[sl])
        weights.append(n)
        for k, v in part.items():
            metrics.setdefault(k, []).append(v)
    total = max(sum(weights), 1)
    return {k: float(np.dot(v, weights) / total) for k, v in metrics.items()}


def make_dataset(
    examples: Examples, users: UserTable, batch_size: int, order_seed: int
) -> tf.data.Dataset:
    """One epoch of batches of {"user": ..., "item": ...}, the examples shuffled by
    `order_seed`, each batch gathered when training asks for it (`gathered_batches`); a last
    batch smaller than `batch_size` is left out (it would have fewer in-batch negatives)."""

    def batch(idx: np.ndarray) -> dict:
        return {"user": user_inputs(users, examples.user[idx], examples.history[idx]),
                "item": examples.item[idx].astype(np.int32)}  # fmt: skip

    return gathered_batches(batch, len(examples), batch_size, order_seed, drop_remainder=True)


@dataclass
class FittedRetrieval:
    model: TwoTowerModel
    item_embeddings: np.ndarray  # [n_items, dim], catalogue order
    state: dict[str, Any]  # best epoch, best validation score, per-epoch history
    seconds: float  # wall time of fit()


def tower_sizes(data: ModelData, dim: int) -> TowerSizes:
    v = data.vocab
    return TowerSizes(
        n_user_ids=v.user_id.size,
        n_item_ids=v.item_id.size,
        n_genders=v.gender.size,
        n_regions=v.region.size,
        n_categories=v.category.size,
        n_brands=v.brand.size,
        n_price_buckets=int(data.catalog.price_bucket.max()) + 1,
        n_tokens=v.token.size,
        dim=dim,
    )


def fit_retrieval(
    data: ModelData,
    cfg: TrainConfig,
    seed: int,
    checkpoint_dir: Path,
    plan: DevicePlan,
) -> FittedRetrieval:
    """Trains the two-tower model on the train split, selecting on validation.

    Args:
        data: the model data.
        cfg: the train section of params.
        seed: the run's seed.
        checkpoint_dir: per-epoch checkpoints (`EpochCheckpoints`); an existing one is resumed,
            to the same end as a run that was never interrupted.
        plan: devices and strategy.

    Raises:
        ValueError: there are no training examples or no validation users.
    """
    rc = cfg.retrieval
    keras.utils.set_random_seed(seed)
    examples = training_examples(data.pairs["train"], data.users, data.catalog, cfg.history_len)
    if len(examples) == 0:
        raise ValueError(
            f"no training examples: no train events of types {cfg.positive_events} "
            "(train.positive_events) with a known user and item"
        )
    eval_set = build_eval_set(
        data.users,
        data.history(["train"]),
        data.items_by_user(["train"]),
        data.items_by_user(["val"]),
        rc.max_eval_users,
        seed,
    )
    if len(eval_set) == 0:
        raise ValueError("no validation users with positive events: cannot select a model")
    probability = item_popularity(examples, len(data.catalog)) if rc.logq_correction else None
    with plan.strategy.scope():
        sizes = tower_sizes(data, rc.embedding_dim)
        model = TwoTowerModel(
            UserTower(sizes, rc.id_dropout, rc.dropout, seed),
            ItemTower(sizes, data.catalog, rc.id_dropout, rc.item_dropout, seed),
            rc,
            probability,
        )
        model.compile(optimizer=LazyAdam(rc.learning_rate))
        # build the variables in the strategy's scope, so a checkpoint can restore into them
        model.user_tower(user_inputs(data.users, examples.user[:1], examples.history[:1]))
        model.item_tower(examples.item[:1])
    batch_size = rc.batch_size * plan.strategy.num_replicas_in_sync
    k = rc.eval_k

    def measure(logs: dict[str, float]) -> dict[str, float]:
        items = model.item_tower.embed_all()
        return {"loss": logs["loss"], **evaluate(model.user_tower, items, eval_set, [k])}

    log.info(
        "retrieval: %d examples, %d items, %d validation users, at most %d epochs",
        len(examples),
        len(data.catalog),
        len(eval_set),
        rc.epochs,
    )
    t = time.perf_counter()
    selection = train_epochs(
        model,
        Selection(monitor=f"ndcg@{k}", higher_is_better=True),
        checkpoint_dir,
        lambda epoch: make_dataset(examples, data.users, batch_size, epoch_seed(seed, epoch)),
        measure,
        rc.epochs,
        rc.patience,
        seed,
        "retrieval",
        random_step=True,  # id dropout and dropout in both towers
    )
    seconds = time.perf_counter() - t
    state = dataclasses.asdict(selection)
    return FittedRetrieval(model, model.item_tower.embed_all(), state, seconds)


def subset(eval_set: EvalSet, users: np.ndarray | None = None,
           keep_items: np.ndarray | None = None) -> EvalSet:  # fmt: skip
    """An EvalSet restricted to some users (boolean mask over its rows) and/or to relevant items
    in `keep_items` (boolean mask over the catalogue); users left with no relevant item drop."""
    rows = np.ones(len(eval_set), dtype=bool) if users is None else users.copy()
    relevant = eval_set.relevant
    if keep_items is not None:
        relevant = [r[keep_items[r]] for r in relevant]
        rows &= np.array([len(r) > 0 for r in relevant])
    idx = np.flatnonzero(rows)
    return EvalSet(
        inputs={k: v[idx] for k, v in eval_set.inputs.items()},
        relevant=[relevant[i] for i in idx],
        exclude=[eval_set.exclude[i] for i in idx],
        user_rows=eval_set.user_rows[idx],
    )


def popularity_metrics(
    counts: np.ndarray, eval_set: EvalSet, ks: Sequence[int]
) -> dict[str, float]:
    """Metrics of ranking every user's catalogue by `counts` (most popular first)."""
    if len(eval_set) == 0:
        return {}
    row = counts.astype(np.float32)[None, :]
    step = rows_per_batch(len(counts))
    ranked = []
    for start in range(0, len(eval_set), step):
        excluded = eval_set.exclude[start : start + step]
        ranked.append(top_k(np.repeat(row, len(excluded), axis=0), max(ks), excluded))
    return ranking_metrics(np.concatenate(ranked), eval_set.relevant, ks)


def holdout_report(fitted: FittedRetrieval, data: ModelData, ks: Sequence[int], seed: int,
                   max_users: int = 0) -> dict:  # fmt: skip
    """Test-split metrics, overall and for cold-start users and items, with popularity beside,
    on at most `max_users` test users (a seeded sample; 0 = all: a full scan of every test user
    against 200,000 items takes an hour on two cores)."""
    held = data.items_by_user(["test"])
    test = build_eval_set(data.users, data.history(["train", "val"]),
                          data.items_by_user(["train", "val"]), held, max_users, seed)  # fmt: skip
    seen = data.pairs_of(["train", "val"])
    counts = np.bincount(np.maximum(data.catalog.positions(seen["item_id"]), 0),
                         minlength=len(data.catalog)).astype(np.float64)  # fmt: skip
    slices = {
        "all": test,
        "cold_users": subset(test, users=data.users.id_idx[test.user_rows] == 0),
        "cold_items": subset(test, keep_items=data.catalog.id_idx == 0),
    }
    report: dict = {}
    for name, s in slices.items():
        report[name] = {
            "users": len(s),
            "two_tower": evaluate(fitted.model.user_tower, fitted.item_embeddings, s, ks),
            "popularity": popularity_metrics(counts, s, ks),
        }
    report["all"]["users_total"] = len(held)  # before sampling
    return report
