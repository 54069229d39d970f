"""Multi-task ranking with TFRS: a DCN-v2 cross network over user, item and context features,
one TFRS `Ranking` task per head (click / add_to_cart / purchase, or rating / like).

Binary heads output logits and train with sigmoid cross-entropy; the rating head regresses the
rating with mean squared error. Rows without a label for a head carry weight 0 for it.
Training keeps the best epoch by validation loss (validation rating RMSE when there is a rating
head), stops after `patience` epochs without gain, and checkpoints every epoch, so an interrupted
run resumes exactly where it stopped (`epochs.train_epochs`, shared with the two-tower model).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recfusion.config import RankingConfig
from recfusion.data.io import write_json
from recfusion.models.dataset import ModelData
from recfusion.models.devices import DevicePlan
from recfusion.models.epochs import Selection, epoch_seed, gathered_batches, train_epochs
from recfusion.models.inference import traced
from recfusion.models.inputs import ItemTable, user_inputs
from recfusion.models.optimizers import LazyAdam
from recfusion.models.ranking_data import Histories, RankingExamples
from recfusion.models.tf_setup import keras, tf, tfrs
from recfusion.models.towers import TowerSizes, masked_mean

log = logging.getLogger(__name__)
SUM = keras.losses.Reduction.SUM
# (user rows [U], catalogue positions [U, C], -1 = empty slot) -> head -> [U, C] outputs
HeadScorer = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


class RankingModel(tfrs.Model):
    """Inputs {"user": user tower inputs, "item": [b] positions, "hour": [b]};
    outputs {head: [b] logit or rating}."""

    def __init__(self, sizes: TowerSizes, catalog: ItemTable, heads: tuple[str, ...],
                 cfg: RankingConfig) -> None:  # fmt: skip
        super().__init__()
        d = cfg.embedding_dim
        self.heads = heads
        self.table_id = tf.constant(catalog.id_idx, dtype=tf.int32)
        self.table_category = tf.constant(catalog.category, dtype=tf.int32)
        self.table_brand = tf.constant(catalog.brand, dtype=tf.int32)
        self.table_price = tf.constant(catalog.price_bucket, dtype=tf.int32)
        self.table_tokens = tf.constant(catalog.tokens, dtype=tf.int32)
        emb = keras.layers.Embedding
        self.user_id = emb(sizes.n_user_ids, d)
        self.gender = emb(sizes.n_genders, 4)
        self.region = emb(sizes.n_regions, 4)
        self.history_embedding = emb(sizes.n_item_ids, d)
        self.item_id = emb(sizes.n_item_ids, d)
        self.category = emb(sizes.n_categories, d)
        self.brand = emb(sizes.n_brands, d // 2)
        self.price = emb(sizes.n_price_buckets, 4)
        self.token = emb(sizes.n_tokens, d // 2)
        self.hour_embedding = emb(25, 4)
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=cfg.projection_dim or None,
                                            kernel_initializer="glorot_uniform")
                      for _ in range(cfg.cross_layers)]  # fmt: skip
        self.deep = [keras.layers.Dense(n, activation="relu") for n in cfg.deep_layers]
        self.head_layers = {h: keras.layers.Dense(1, name=f"head_{h}") for h in heads}
        self.tasks = {
            h: tfrs.tasks.Ranking(
                # summed here, divided by the global batch in compute_loss (what a
                # distribution strategy needs; in one process the same as the batch mean)
                loss=keras.losses.MeanSquaredError(reduction=SUM) if h == "rating"
                else keras.losses.BinaryCrossentropy(from_logits=True, reduction=SUM),
                metrics=[keras.metrics.RootMeanSquaredError(name=f"{h}_rmse")] if h == "rating"
                else [keras.metrics.AUC(from_logits=True, name=f"{h}_auc")],
            )
            for h in heads
        }  # fmt: skip

    def get_config(self) -> dict:
        return {"name": self.name}

    def call(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        user, items = features["user"], tf.cast(features["item"], tf.int32)
        tokens = tf.gather(self.table_tokens, items)
        x = tf.concat(
            [
                self.user_id(user["user_id"]),
                self.gender(user["gender"]),
                self.region(user["region"]),
                tf.reshape(tf.cast(user["age"], tf.float32), (-1, 1)),
                masked_mean(self.history_embedding(user["history"]), user["history"]),
                self.item_id(tf.gather(self.table_id, items)),
                tf.reduce_sum(self.category(tf.gather(self.table_category, items)), axis=1),
                self.brand(tf.gather(self.table_brand, items)),
                self.price(tf.gather(self.table_price, items)),
                masked_mean(self.token(tokens), tokens),
                self.hour_embedding(features["hour"]),
            ],
            axis=1,
        )
        x0, h = x, x
        for layer in self.cross:
            h = layer(x0, h)
        for layer in self.deep:
            h = layer(h)
        return {name: tf.squeeze(out(h), axis=1) for name, out in self.head_layers.items()}

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        features, labels, weights = inputs
        outputs = self(features, training=training)
        # every replica's loss is its sum over the global batch (the strategy sums the replicas'
        # gradients); a replica may hold fewer examples than another, or none
        batch = tf.cast(tf.shape(labels[self.heads[0]])[0], tf.float32)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            batch = context.all_reduce(tf.distribute.ReduceOp.SUM, batch)
        return tf.add_n([
            # losses reduce the last axis: give them [batch, 1]
            tf.math.divide_no_nan(self.tasks[h](labels[h][:, None], outputs[h][:, None],
                                                sample_weight=weights[h], training=training),
                                  batch)
            for h in self.heads
        ])  # fmt: skip


def make_dataset(examples: RankingExamples, history: Histories, data: ModelData,
                 batch_size: int, order_seed: int | None) -> tf.data.Dataset:  # fmt: skip
    """(features, labels, weights) batches: one epoch shuffled by `order_seed`, or in order
    when it is None, each batch gathered when training asks for it (`gathered_batches`)."""

    def batch(idx: np.ndarray) -> tuple[dict, dict, dict]:
        features = {
            "user": user_inputs(data.users, examples.user[idx], history.take(idx, axis=0)),
            "item": examples.item[idx].astype(np.int32),
            "hour": examples.hour[idx].astype(np.int32),
        }
        labels = {h: v[idx] for h, v in examples.labels.items()}
        return features, labels, {h: v[idx] for h, v in examples.weights.items()}

    return gathered_batches(batch, len(examples), batch_size, order_seed)


def predict(model: RankingModel, examples: RankingExamples, history: Histories,
            data: ModelData, batch_size: int = 8192) -> dict[str, np.ndarray]:  # fmt: skip
    """Per head: probabilities (binary heads) or predicted ratings.

    Calls one traced function per model on array slices: a tf.data pipeline and eager calls
    cost more than the model itself for the few hundred candidates of one served request.
    """
    forward = traced(model, lambda out: {h: out[h] if h == "rating" else tf.sigmoid(out[h])
                                         for h in model.heads})  # fmt: skip
    item, hour = examples.item.astype(np.int32), examples.hour.astype(np.int32)
    parts: dict[str, list[np.ndarray]] = {h: [] for h in model.heads}
    for start in range(0, len(examples), batch_size):
        idx = np.arange(start, min(start + batch_size, len(examples)))
        users = user_inputs(data.users, examples.user[idx], history.take(idx, axis=0))
        out = forward({"user": users, "item": item[idx], "hour": hour[idx]})
        for h in model.heads:
            parts[h].append(out[h].numpy())
    return {h: np.concatenate(v) if v else np.zeros(0) for h, v in parts.items()}


@dataclass
class FittedRanking:
    model: RankingModel
    history: list[dict]  # per-epoch train and validation losses
    seconds: float


def fit_ranking(
    data: ModelData,
    sizes: TowerSizes,
    heads: tuple[str, ...],
    train: tuple[RankingExamples, Histories],
    val: tuple[RankingExamples, Histories],
    cfg: RankingConfig,
    seed: int,
    checkpoint_dir: Path,
    plan: DevicePlan,
) -> FittedRanking:
    """Trains the ranking model; keeps the epoch with the lowest validation loss (validation
    rating RMSE when there is a rating head).

    Args:
        train, val: examples and their [E, history_len] histories (`ranking_data.Histories`).
        checkpoint_dir: per-epoch checkpoints (`epochs.train_epochs`); an interrupted run
            resumes from them exactly.
    """
    keras.utils.set_random_seed(seed)
    with plan.strategy.scope():
        model = RankingModel(sizes, data.catalog, heads, cfg)
        # the tasks weight their own losses; nothing for Keras' weighted_metrics to add
        model.compile(optimizer=LazyAdam(cfg.learning_rate), weighted_metrics=[])
    batch = cfg.batch_size * plan.strategy.num_replicas_in_sync
    with plan.strategy.scope():
        # built before training, so that a checkpoint restores into its variables
        model(next(iter(make_dataset(*train, data, batch, None)))[0])
    # a rating head is judged by its RMSE: the summed loss mixes scales across heads
    monitor = "val_rating_rmse" if "rating" in heads else "val_loss"
    log.info("ranking: heads %s, %d train and %d validation examples", heads, len(train[0]),
             len(val[0]))  # fmt: skip
    t = time.perf_counter()
    selection = train_epochs(
        model,
        Selection(monitor=monitor, higher_is_better=False),
        checkpoint_dir,
        lambda epoch: make_dataset(*train, data, batch, epoch_seed(seed, epoch)),
        lambda logs: logs,
        cfg.epochs,
        cfg.patience,
        seed,
        "ranking",
        random_step=False,  # no dropout: the data order is the one thing that varies by epoch
        validation_data=make_dataset(*val, data, batch, None),
    )
    return FittedRanking(model, selection.history, time.perf_counter() - t)


def save_ranking_model(model: RankingModel, heads: tuple[str, ...], sizes: TowerSizes,
                       cfg: RankingConfig, history_len: int, thresholds: dict[str, float | None],
                       out: Path) -> None:  # fmt: skip
    """`out` (emptied first): the weights checkpoint and meta.json, what `load_ranking_model`
    needs (heads, sizes, settings) and the decision threshold of each head."""
    if out.exists():
        shutil.rmtree(out)
    tf.train.Checkpoint(model=model).write(str(out / "weights" / "ranking"))
    write_json({"heads": list(heads), "sizes": dataclasses.asdict(sizes),
                "ranking": dataclasses.asdict(cfg), "history_len": history_len,
                "thresholds": thresholds}, out / "meta.json")  # fmt: skip


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


def head_scorer(model: RankingModel, data: ModelData, history: np.ndarray, hour: int
                ) -> HeadScorer:  # fmt: skip
    """Each head's output (`predict`) for users and their candidate items at `hour` (0-23).

    Args:
        history: [n_users, history_len] what the model knows of every user.

    Returns:
        (rows [U], items [U, C]) -> head -> [U, C] float32, 0 where items is -1.
    """

    def score(rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        valid = items >= 0
        users = np.repeat(rows, valid.sum(axis=1))
        chosen = items[valid]
        n = len(chosen)
        examples = RankingExamples(users, chosen, np.full(n, hour + 1, np.int32), {}, {})
        out = {}
        for head, values in predict(model, examples, history[users], data).items():
            full = np.zeros(items.shape, dtype=np.float32)
            full[valid] = values
            out[head] = full
        return out

    return score
