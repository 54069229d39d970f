"""The TFRS query tower for search, aligned with the two-tower model's item embeddings.

Query words and hashed character trigrams (`search.text`) -> mean-pooled embeddings -> dense ->
L2-normalised [batch, dim], scored by dot product against the retrieval model's item embeddings,
which stay frozen. Trained with the TFRS Retrieval task on (query, clicked item) pairs, so a
query finds the items shoppers clicked for it even when it shares no word with their titles
("trainers" -> sneakers). Model selection: MRR@10 over the whole catalogue on validation queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from recfusion.config import SearchConfig
from recfusion.metrics.ranking import ranking_metrics, sample_users
from recfusion.models.devices import DevicePlan
from recfusion.models.epochs import epoch_seed, gathered_batches
from recfusion.models.inference import traced
from recfusion.models.item_index import ItemIndex
from recfusion.models.optimizers import LazyAdam
from recfusion.models.tf_setup import keras, tf, tfrs
from recfusion.models.towers import IdDropout, masked_mean
from recfusion.search.text import QueryEncoder, swap_typo

log = logging.getLogger(__name__)


class QueryTower(keras.Model):
    """{"words": [batch, max_words], "grams": [batch, max_grams]} -> [batch, dim] unit vectors."""

    def __init__(self, n_words: int, buckets: int, hidden_units: int, dim: int,
                 word_dropout: float = 0.0, seed: int | None = None) -> None:  # fmt: skip
        super().__init__()
        # hiding whole words in training makes the tower read the trigrams too, which is what
        # places a misspelt word (an unknown word id) near the right items
        self.word_dropout = IdDropout(word_dropout, seed)
        self.word_embedding = keras.layers.Embedding(n_words, hidden_units)
        self.gram_embedding = keras.layers.Embedding(buckets, hidden_units)
        self.hidden = keras.layers.Dense(hidden_units, activation="relu")
        self.out = keras.layers.Dense(dim)

    def get_config(self) -> dict:
        return {"name": self.name}

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        words = self.word_dropout(inputs["words"], training=training)
        grams = inputs["grams"]
        x = tf.concat([masked_mean(self.word_embedding(words), words),
                       masked_mean(self.gram_embedding(grams), grams)], axis=1)  # fmt: skip
        return tf.math.l2_normalize(tf.cast(self.out(self.hidden(x)), tf.float32), axis=1)


class QuerySearchModel(tfrs.Model):
    """Wires the query tower to the TFRS Retrieval task against frozen item embeddings."""

    def __init__(self, tower: QueryTower, item_embeddings: np.ndarray, cfg: SearchConfig) -> None:
        super().__init__()
        self.tower = tower
        self.items = tf.constant(item_embeddings, dtype=tf.float32)
        self.task = tfrs.tasks.Retrieval(temperature=cfg.temperature,
                                         remove_accidental_hits=True)  # fmt: skip

    def get_config(self) -> dict:
        return {"name": self.name}

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        query = self.tower(features["query"], training=training)
        item = features["item"]
        return self.task(query, tf.gather(self.items, item), candidate_ids=item,
                         compute_metrics=False, compute_batch_metrics=False)  # fmt: skip


@dataclass
class FittedQueryTower:
    tower: QueryTower
    encoder: QueryEncoder
    history: list[dict]  # per epoch: loss and validation MRR@10
    best_epoch: int
    seconds: float


def embed_queries(tower: QueryTower, encoder: QueryEncoder, texts: list[str]) -> np.ndarray:
    """[n, dim] query embeddings."""
    if not texts:
        return np.zeros((0, int(tower.out.units)), dtype=np.float32)
    return traced(tower)(encoder.encode(texts)).numpy()


def semantic_mrr(tower: QueryTower, encoder: QueryEncoder, item_embeddings: np.ndarray,
                 texts: list[str], clicked: np.ndarray) -> float:  # fmt: skip
    """MRR@10 of the query tower alone over the whole catalogue, a bounded number of queries
    scored at a time by the exact scan (a large shop's queries x items would not fit)."""
    ranked = ItemIndex(item_embeddings).top(embed_queries(tower, encoder, texts), 10)
    return ranking_metrics(ranked, [np.array([c]) for c in clicked], [10])["mrr@10"]


def fit_query_tower(
    train: tuple[list[str], np.ndarray],
    val: tuple[list[str], np.ndarray],
    item_embeddings: np.ndarray,
    encoder: QueryEncoder,
    cfg: SearchConfig,
    seed: int,
    plan: DevicePlan,
) -> FittedQueryTower:
    """Trains the query tower on (query, clicked catalogue position) pairs, selecting on val.

    Args:
        train: query texts and the catalogue position each one's searcher clicked.
        val: the same for validation queries (model selection, early stopping).
        item_embeddings: [n_items, dim] frozen, unit-length item embeddings.
        encoder: the fitted query encoder.
        cfg: the train.search params.
        seed: the run's seed.
        plan: devices and strategy.

    Raises:
        ValueError: no training or no validation queries with a click.
    """
    if len(train[0]) == 0 or len(val[0]) == 0:
        raise ValueError(f"search needs queries with a clicked item in train and val, got "
                         f"{len(train[0])} and {len(val[0])}")  # fmt: skip
    keras.utils.set_random_seed(seed)
    # Keras names layers by process-wide counters and the saved weights record the names:
    # name them as in a fresh process, whatever was built before (train_search loads the
    # ranking model first), so the same training saves the same bytes
    keras.backend.reset_uids()
    batch = cfg.batch_size * plan.strategy.num_replicas_in_sync
    rng = np.random.default_rng(seed)
    # each query once more with a typo, so misspellings land where the right spelling does
    texts = list(train[0]) + [swap_typo(t, rng) for t in train[0]] * cfg.typo_copies
    clicked = np.concatenate([train[1]] * (1 + cfg.typo_copies))
    query, item = encoder.encode(texts), clicked.astype(np.int32)

    def epoch_batches(epoch: int) -> tf.data.Dataset:
        def batch_of(idx: np.ndarray) -> dict:
            return {"query": {k: v[idx] for k, v in query.items()}, "item": item[idx]}

        return gathered_batches(batch_of, len(texts), batch, epoch_seed(seed, epoch),
                                drop_remainder=True)  # fmt: skip

    # each epoch's validation MRR@10 on at most max_eval_queries of them (a seeded sample)
    if cfg.max_eval_queries:
        keep = sample_users(np.arange(len(val[0])), cfg.max_eval_queries, seed)
        val = ([val[0][i] for i in keep], np.asarray(val[1])[keep])
    with plan.strategy.scope():
        tower = QueryTower(encoder.n_words, encoder.buckets, cfg.hidden_units,
                           item_embeddings.shape[1], cfg.word_dropout, seed)  # fmt: skip
        model = QuerySearchModel(tower, item_embeddings, cfg)
        model.compile(optimizer=LazyAdam(cfg.learning_rate))
        tower(encoder.encode(train[0][:1]))
    history: list[dict] = []
    best, best_epoch, best_weights, wait = -1.0, -1, tower.get_weights(), 0
    t = time.perf_counter()
    for epoch in range(cfg.epochs):
        loss = model.fit(epoch_batches(epoch), epochs=1, verbose=0).history["loss"][-1]
        mrr = semantic_mrr(tower, encoder, item_embeddings, val[0], val[1])
        history.append({"epoch": epoch + 1, "loss": float(loss), "val_mrr@10": mrr})
        log.info("search epoch %d/%d: loss %.4f, validation MRR@10 %.4f", epoch + 1, cfg.epochs,
                 loss, mrr)  # fmt: skip
        if mrr > best:
            best, best_epoch, best_weights, wait = mrr, epoch + 1, tower.get_weights(), 0
        else:
            wait += 1
            if wait >= cfg.patience:
                break
    tower.set_weights(best_weights)
    return FittedQueryTower(tower, encoder, history, best_epoch, time.perf_counter() - t)
