"""User interest tags by transfer learning: the trained two-tower user tower, frozen, feeds a
small multi-label head that predicts which categories a user's future activity will be about.

A user's tags in a period are the categories (at `level` of the category path) holding at least
`min_share` of their positive events in it. The head is trained with inputs from the train
period and tags from the validation period, and tested with inputs from train + validation and
tags from the test period, against the "same as past top categories" baseline.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.config import TagsConfig
from recfusion.data.io import write_json
from recfusion.metrics.classification import multilabel_report
from recfusion.models.dataset import ModelData
from recfusion.models.inputs import user_inputs
from recfusion.models.tf_setup import keras, tf
from recfusion.models.towers import TowerSizes, UserTower

log = logging.getLogger(__name__)
EMBED_BATCH = 8192  # users the tower embeds at once


def load_frozen_user_tower(sizes: TowerSizes, weights: Path, history_len: int) -> UserTower:
    """The trained user tower rebuilt from its checkpoint, with every weight frozen."""
    tower = UserTower(sizes, id_dropout=0.0, dropout=0.0, seed=0)
    zeros = np.zeros(1, dtype=np.int32)
    tower({"user_id": zeros, "gender": zeros, "region": zeros,
           "age": np.zeros(1, np.float32), "history": np.zeros((1, history_len), np.int32)})  # fmt: skip
    tf.train.Checkpoint(user_tower=tower).read(
        str(weights)
    ).expect_partial().assert_existing_objects_matched()
    tower.trainable = False
    return tower


def tag_matrix(data: ModelData, splits: list[str], level: int, min_share: float,
               n_tags: int, tag_of_item: np.ndarray) -> np.ndarray:  # fmt: skip
    """[n_users, n_tags] booleans: the user's tags within `splits`."""
    pairs = data.pairs_of(splits)
    u = data.users.positions(pairs["user_id"])
    item = data.catalog.positions(pairs["item_id"])
    keep = (u >= 0) & (item >= 0)
    counts = np.zeros((len(data.users), n_tags), dtype=np.float64)
    np.add.at(counts, (u[keep], tag_of_item[item[keep]]), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.asarray((counts / np.maximum(totals, 1.0)) >= min_share)


def item_tags(data: ModelData, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(tag index of each catalogue item, the category vocabulary index of each tag)."""
    column = data.catalog.category[:, min(level, 3) - 1]
    values, index = np.unique(column, return_inverse=True)
    return index.astype(np.int64), values


def decide_tags(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Tags at or above `threshold`, and always each user's most likely tag (every user has at
    least one interest)."""
    top = probs == probs.max(axis=1, keepdims=True)
    return (probs >= threshold) | top


@dataclass
class FittedTags:
    head: keras.Model
    threshold: float
    seconds: float


def fit_tag_head(embeddings: np.ndarray, labels: np.ndarray, cfg: TagsConfig, seed: int
                 ) -> FittedTags:  # fmt: skip
    """Trains Dense -> sigmoid on frozen user embeddings; picks the decision threshold that
    maximises micro-F1 on a held-out tenth of the users."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(embeddings))
    n_val = max(1, len(order) // 10)
    val, train = order[:n_val], order[n_val:]
    head = keras.Sequential([
        keras.layers.Dense(cfg.hidden_units, activation="relu"),
        keras.layers.Dense(labels.shape[1], activation="sigmoid"),
    ])  # fmt: skip
    head.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                 loss=keras.losses.BinaryCrossentropy())  # fmt: skip
    t = time.perf_counter()
    head.fit(embeddings[train], labels[train].astype(np.float32),
             validation_data=(embeddings[val], labels[val].astype(np.float32)),
             epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0,
             callbacks=[keras.callbacks.EarlyStopping(patience=cfg.patience,
                                                      restore_best_weights=True)])  # fmt: skip
    seconds = time.perf_counter() - t
    probs = head.predict(embeddings[val], verbose=0)
    best = max(
        np.linspace(0.05, 0.95, 19),
        key=lambda th: multilabel_report(labels[val], decide_tags(probs, th))["micro_f1"],
    )
    return FittedTags(head, float(best), seconds)


def user_embeddings(tower: UserTower, data: ModelData, rows: np.ndarray, history: np.ndarray,
                    batch: int = EMBED_BATCH) -> np.ndarray:  # fmt: skip
    """[len(rows), dim] the tower's embeddings of `rows`, `batch` users at a time (the tower's
    [users, history, dim] intermediates of 450,000 users at once would take 20 GB)."""
    starts = range(0, max(len(rows), 1), batch)  # one (empty) call for no rows: its shape
    return np.concatenate([
        tower(user_inputs(data.users, part, history[part]), training=False).numpy()
        for part in (rows[i : i + batch] for i in starts)
    ])  # fmt: skip


def tag_names(data: ModelData, tag_categories: np.ndarray) -> list[str]:
    """The category path of each tag ("unknown" for the unknown category)."""
    vocab = data.vocab.category.values
    return [vocab[c - 1] if c > 0 else "unknown" for c in tag_categories]


def save_tag_head(head: keras.Model, names: Sequence[str], meta: dict[str, Any], out: Path
                  ) -> None:  # fmt: skip
    """`out` (emptied first): the head's weights, tags.txt (one tag name a line) and
    meta.json (level, min_share, threshold, the tower's sizes, the settings)."""
    if out.exists():
        shutil.rmtree(out)
    tf.train.Checkpoint(head=head).write(str(out / "weights" / "head"))
    (out / "tags.txt").write_text("".join(f"{n}\n" for n in names))
    write_json(meta, out / "meta.json")


@dataclass(frozen=True)
class TagHead:
    """A trained tag head, as the fusion's stacking features use it."""

    head: keras.Model  # [users, dim] user embeddings -> [users, n_tags] probabilities
    tag_of_item: np.ndarray  # [n_items] tag index of each catalogue item
    categories: np.ndarray  # [n_tags] category vocabulary index of each tag


def load_tag_head(folder: Path, data: ModelData, cfg: TagsConfig) -> TagHead:
    """The head saved in `folder` by `save_tag_head`, rebuilt with `cfg.hidden_units`."""
    meta = json.loads((folder / "meta.json").read_text())
    tag_of_item, categories = item_tags(data, meta["level"])
    head = keras.Sequential([keras.layers.Dense(cfg.hidden_units, activation="relu"),
                             keras.layers.Dense(len(categories), activation="sigmoid")])  # fmt: skip
    head.build((None, int(meta["tower_sizes"]["dim"])))
    tf.train.Checkpoint(head=head).read(str(folder / "weights" / "head")).expect_partial()
    return TagHead(head, tag_of_item, categories)
