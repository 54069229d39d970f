"""Two-tower retrieval with TFRS: the model, its evaluation, and training with checkpoints.

The TFRS `Retrieval` task owns the loss: in-batch softmax with temperature, the logQ
correction (candidate sampling probability = the item's share of training examples), removal
of accidental hits (the same item twice in a batch) and optional hard-negative mining.
Model selection and early stopping use full-catalogue NDCG@K on the validation split, with the
items a user already has excluded. A checkpoint is written every epoch, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.config import RetrievalConfig, TrainConfig
from recfusion.metrics.ranking import ranking_metrics, top_k
from recfusion.models.dataset import ModelData
from recfusion.models.devices import DevicePlan
from recfusion.models.inputs import (
    Examples,
    UserTable,
    item_popularity,
    training_examples,
    user_inputs,
)
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
    for start in range(0, len(eval_set), 4096):
        sl = slice(start, start + 4096)
        q = user_tower({k: v[sl] for k, v in eval_set.inputs.items()}, training=False).numpy()
        ranked = top_k(q @ item_embeddings.T, max(ks), eval_set.exclude[sl])
        part = ranking_metrics(ranked, eval_set.relevant[sl], ks)
        n = sum(len(r) > 0 for r in eval_set.relevant[sl])
        weights.append(n)
        for k, v in part.items():
            metrics.setdefault(k, []).append(v)
    total = max(sum(weights), 1)
    return {k: float(np.dot(v, weights) / total) for k, v in metrics.items()}


class SelectAndCheckpoint(keras.callbacks.Callback):
    """Each epoch: evaluate on validation, keep the best weights, stop after `patience` epochs
    without improvement, and checkpoint everything needed to resume."""

    def __init__(
        self,
        model: TwoTowerModel,
        eval_set: EvalSet,
        k: int,
        patience: int,
        checkpoint_dir: Path,
    ) -> None:
        super().__init__()
        self.two_tower = model
        self.eval_set = eval_set
        self.k = k
        self.patience = patience
        self.dir = checkpoint_dir
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                        epoch=self.epoch_var)  # fmt: skip
        self.manager = tf.train.CheckpointManager(self.ckpt, str(checkpoint_dir / "last"), 1)
        self.best_ckpt = tf.train.Checkpoint(model=model)
        self.state: dict[str, Any] = {"best_score": -1.0, "best_epoch": -1, "wait": 0,
                                      "history": []}  # fmt: skip

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the epoch to start from."""
        state_file = self.dir / "state.json"
        if self.manager.latest_checkpoint and state_file.is_file():
            self.ckpt.restore(self.manager.latest_checkpoint)
            self.state = json.loads(state_file.read_text())
            log.info("retrieval: resuming after epoch %d from %s", int(self.epoch_var.numpy()),
                     self.manager.latest_checkpoint)  # fmt: skip
            return int(self.epoch_var.numpy())
        return 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        t = time.perf_counter()
        items = self.two_tower.item_tower.embed_all()
        metrics = evaluate(self.two_tower.user_tower, items, self.eval_set, [self.k])
        score = metrics.get(f"ndcg@{self.k}", 0.0)
        entry = {"epoch": epoch + 1, "loss": float((logs or {}).get("loss", np.nan)), **metrics}
        self.state["history"].append(entry)
        if score > self.state["best_score"]:
            self.state.update(best_score=score, best_epoch=epoch + 1, wait=0)
            self.best_ckpt.write(str(self.dir / "best" / "weights"))
        else:
            self.state["wait"] += 1
            if self.state["wait"] >= self.patience:
                self.model.stop_training = True
        self.epoch_var.assign(epoch + 1)
        self.manager.save()
        (self.dir / "state.json").write_text(json.dumps(self.state, indent=2))
        log.info("retrieval epoch %d: loss %.2f, val recall@%d %.4f, ndcg@%d %.4f (eval %.1fs)",
                 epoch + 1, entry["loss"], self.k, metrics.get(f"recall@{self.k}", 0.0), self.k,
                 score, time.perf_counter() - t)  # fmt: skip

    def restore_best(self) -> None:
        if self.state["best_epoch"] > 0:
            self.best_ckpt.read(str(self.dir / "best" / "weights")).expect_partial()


def make_dataset(
    examples: Examples, users: UserTable, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Shuffled (seeded, reshuffled each epoch) batches of {"user": ..., "item": ...}."""
    features = {
        "user": user_inputs(users, examples.user, examples.history),
        "item": examples.item.astype(np.int32),
    }
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=len(examples) >= batch_size).prefetch(2)


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
        checkpoint_dir: per-epoch checkpoints; an existing one is resumed.
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
        model.compile(optimizer=keras.optimizers.Adam(rc.learning_rate))
        # build the variables in the strategy's scope, so a checkpoint can restore into them
        model.user_tower(user_inputs(data.users, examples.user[:1], examples.history[:1]))
        model.item_tower(examples.item[:1])
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    callback = SelectAndCheckpoint(model, eval_set, rc.eval_k, rc.patience, checkpoint_dir)
    dataset = make_dataset(examples, data.users, rc.batch_size * plan.strategy.num_replicas_in_sync,
                           seed)  # fmt: skip
    start_epoch = callback.restore()
    log.info("retrieval: %d examples, %d items, %d validation users, epochs %d..%d",
             len(examples), len(data.catalog), len(eval_set), start_epoch + 1, rc.epochs)  # fmt: skip
    t = time.perf_counter()
    if start_epoch < rc.epochs and callback.state["wait"] < rc.patience:
        model.fit(dataset, epochs=rc.epochs, initial_epoch=start_epoch, callbacks=[callback],
                  verbose=0)  # fmt: skip
    seconds = time.perf_counter() - t
    callback.restore_best()
    return FittedRetrieval(model, model.item_tower.embed_all(), callback.state, seconds)


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
    ranked = top_k(np.tile(counts.astype(np.float32), (len(eval_set), 1)), max(ks),
                   eval_set.exclude)  # fmt: skip
    return ranking_metrics(ranked, eval_set.relevant, ks)


def holdout_report(fitted: FittedRetrieval, data: ModelData, ks: Sequence[int], seed: int) -> dict:
    """Test-split metrics, overall and for cold-start users and items, with popularity beside."""
    test = build_eval_set(data.users, data.history(["train", "val"]),
                          data.items_by_user(["train", "val"]), data.items_by_user(["test"]),
                          0, seed)  # fmt: skip
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
    return report
