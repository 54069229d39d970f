"""params.yaml -> frozen, typed dataclasses: the schema, its names and its value rules.

`params.yaml` is the one source of configuration. Every key it holds must be a field here and
every field must be in the file: an unknown, missing or mistyped key is a `ConfigError` that
names the key and the file, so a typo never silently falls back to a default. Values are then
checked against `RANGES` and the cross-field rules of `check_config` (fractions that leave a
train split, metrics the gate checks that the evaluation computes, ...), so a bad file fails at
`recfusion config` rather than minutes into a run.

The names of fusion methods, candidate sources, ingest sources, ranking metrics, event types
and tables are defined here once, as `Literal`s; the runtime tuples (`FUSION_METHODS`,
`SOURCES`, ...) are derived from them. Reading, merging and type checking live in
`recfusion.config_parse`, which knows nothing of this schema.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

# re-exported: callers import these from recfusion.config
from recfusion.config_parse import ConfigError as ConfigError
from recfusion.config_parse import fill_missing as fill_missing
from recfusion.config_parse import merge_overrides as merge_overrides
from recfusion.config_parse import parse_dataclass as parse_dataclass
from recfusion.config_parse import read_yaml
from recfusion.config_parse import to_plain as to_plain

log = logging.getLogger(__name__)

DEFAULT_PARAMS = Path("params.yaml")

# --------------------------------------------------------------------------- names
# the fusion methods (recfusion.fusion.fused), in report order
FusionMethod = Literal["weighted", "rrf", "borda", "stacking", "cascade"]
# the candidate sources (recfusion.fusion.sources)
SourceName = Literal["two_tower", "ease", "popularity", "category_popularity", "content"]
# where `ingest` reads the tables from (recfusion.data.sources)
IngestSource = Literal["synthetic", "movielens", "files"]
# ranking metrics computed per user at each k of evaluate.ks (recfusion.metrics.ranking)
RankingMetric = Literal["recall", "precision", "ndcg", "mrr", "map", "hit"]
# event types of the canonical events table (recfusion.data.schema)
EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
# the canonical tables (recfusion.data.schema)
Table = Literal["users", "items", "events", "queries"]

FUSION_METHODS: tuple[FusionMethod, ...] = get_args(FusionMethod)
SOURCES: tuple[SourceName, ...] = get_args(SourceName)
INGEST_SOURCES: tuple[IngestSource, ...] = get_args(IngestSource)
RANKING_METRICS: tuple[RankingMetric, ...] = get_args(RankingMetric)
# typed str: the data code keys dicts of frames by them (dict[str, ...] is invariant)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
TABLES: tuple[str, ...] = get_args(Table)
# whole-list metrics the gate's scorer adds to the ranking metrics (serving/scoring.py); at
# 10 only, and without a per-user value, so a floor or drop limit may name them, gate.metric not
LIST_METRICS = ("coverage@10",)
# the evaluation picks the best source and reports by NDCG@10, so evaluate.ks holds this k
REPORT_K = 10


# --------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class SyntheticConfig:
    size: Literal["tiny", "small", "medium", "large", "xl"]  # preset for the counts below
    n_users: int | None  # overrides the preset's user count
    n_items: int | None  # overrides the preset's item count
    sessions_per_user: float | None  # overrides the preset's mean sessions per user
    days: int  # length of the simulated log window
    cold_user_frac: float  # share of users who sign up in the last part of the window
    cold_item_frac: float  # share of items created in the last part of the window
    late_frac: float  # the "last part": this share of the window at its end
    query_rate: float  # share of sessions that start with a search query
    typo_rate: float  # share of queries with one typo
    out_of_stock_frac: float  # share of items out of stock at the end of the window


@dataclass(frozen=True)
class MovieLensConfig:
    path: str  # folder with u.data/u.item/u.user or ml-100k.inter/.item/.user
    format: Literal["auto", "grouplens", "recbole"]  # auto picks by the files present


@dataclass(frozen=True)
class FilesConfig:
    users: str  # CSV or Parquet path of the users table
    items: str  # CSV or Parquet path of the items table
    events: str  # CSV or Parquet path of the events table
    queries: str | None  # optional CSV or Parquet path of the query log
    columns: dict[str, dict[str, str]]  # table -> {your column: canonical column}
    timestamp_unit: Literal["s", "ms", "iso"]  # how numeric or text timestamps are read


@dataclass(frozen=True)
class IngestConfig:
    source: IngestSource  # which source writes data/raw
    synthetic: SyntheticConfig
    movielens: MovieLensConfig
    files: FilesConfig
    event_log: bool  # also take in the event log (data/live/events: what /events accepted)


# --------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class ValidationConfig:
    on_failure: Literal["stop", "quarantine"]  # stop the run, or hold bad rows back and go on
    max_bad_row_frac: float  # quarantine: a table with a larger share of bad rows still stops
    max_duplicate_frac: float  # events: largest share of exact duplicate events accepted
    rating_min: float  # lowest valid rating value
    rating_max: float  # highest valid rating value
    min_rows: dict[str, int]  # per table (users, items, events, queries): fewest rows accepted
    max_rows: int  # most rows accepted in any table
    max_query_chars: int  # longest search query accepted
    max_title_chars: int  # longest item title accepted
    max_text_chars: int  # longest id, category path, brand, gender, region or session id accepted
    max_drift_kl: float  # prepared: largest KL divergence of test vs train category / event mix
    example_rows: int  # bad rows shown per failed expectation in the summary


# --------------------------------------------------------------------------- privacy
@dataclass(frozen=True)
class PrivacyConfig:
    # validation summaries show whole bad rows, or only the row number and the checked column
    show_examples: bool


# --------------------------------------------------------------------------- prepare
@dataclass(frozen=True)
class MissingConfig:
    numeric: Literal["median", "drop"]  # age, price: fill with the median or drop the row
    categorical: Literal["unknown", "drop"]  # gender, region, brand: "unknown" or drop the row


@dataclass(frozen=True)
class SplitConfig:
    method: Literal["temporal", "leave_last_n", "random_ratio", "predefined"]
    val_frac: float  # temporal / random_ratio: share of events in validation
    test_frac: float  # temporal / random_ratio: share of events in test
    last_n: int  # leave_last_n: each user's last N events go to test, the N before to val
    min_train_events: int  # leave_last_n: users with fewer train events stay wholly in train


@dataclass(frozen=True)
class PrepareConfig:
    dedup_events: bool  # drop exact duplicate events (same user, item, type, timestamp)
    missing: MissingConfig
    price_buckets: int  # number of price quantile buckets
    min_token_count: int  # title tokens seen fewer times are out of vocabulary
    split: SplitConfig


# --------------------------------------------------------------------------- train
@dataclass(frozen=True)
class RetrievalConfig:
    embedding_dim: int  # size of the user and item embeddings
    epochs: int  # most epochs; early stopping may end sooner
    batch_size: int  # examples per batch (the in-batch negatives)
    learning_rate: float  # Adam learning rate
    temperature: float  # softmax temperature of the TFRS Retrieval task
    logq_correction: bool  # correct in-batch negatives by their sampling probability
    hard_negatives: int  # keep only this many hardest in-batch negatives; 0 = all
    remove_accidental_hits: bool  # ignore in-batch negatives that are the positive item
    id_dropout: float  # probability of hiding an id in training (teaches cold start)
    dropout: float  # dropout on the user tower's hidden layer
    item_dropout: float  # dropout on the item tower's hidden layer
    patience: int  # epochs without validation NDCG gain before stopping
    eval_k: int  # K of the validation Recall@K / NDCG@K used for model selection
    max_eval_users: int  # validation users sampled per evaluation; 0 = all
    index: Literal["auto", "brute_force", "faiss"]  # top-K index exported with the model
    faiss_above: int  # auto: catalogues larger than this use faiss, smaller TFRS BruteForce


@dataclass(frozen=True)
class RankingConfig:
    embedding_dim: int  # size of each id / category embedding
    cross_layers: int  # DCN-v2 cross layers
    projection_dim: int  # low-rank size of each cross layer; 0 = full rank
    deep_layers: tuple[int, ...]  # units of the dense layers after the cross network
    epochs: int  # most epochs; early stopping on validation loss may end sooner
    batch_size: int  # examples per batch
    learning_rate: float  # Adam learning rate
    random_negatives: float  # random catalogue negatives per observed example
    hard_negatives: int  # per user: untouched items from the retrieval model's top-K
    hard_negative_k: int  # the K of that top-K
    patience: int  # epochs without validation-loss gain before stopping


@dataclass(frozen=True)
class TagsConfig:
    level: int  # category-path level used as tags (1 = department, 2 = subcategory, ...)
    min_share: float  # a category with at least this share of a user's positives is a tag
    hidden_units: int  # units of the head's hidden layer
    epochs: int  # most epochs; early stopping may end sooner
    batch_size: int  # users per batch
    learning_rate: float  # Adam learning rate
    patience: int  # epochs without validation-loss gain before stopping


@dataclass(frozen=True)
class SearchConfig:
    max_query_words: int  # words of a query the query tower reads
    max_query_grams: int  # hashed character trigrams of a query the query tower reads
    gram_buckets: int  # hash buckets of the trigrams (typo tolerance)
    hidden_units: int  # size of the word / trigram embeddings and the hidden layer
    word_dropout: float  # share of word ids hidden in training, so the trigrams learn too
    typo_copies: int  # copies of each training query with one typo added (0 = none)
    epochs: int  # most epochs; early stopping on validation MRR@10 may end sooner
    batch_size: int  # queries per batch (the in-batch negatives)
    learning_rate: float  # Adam learning rate
    temperature: float  # softmax temperature of the TFRS Retrieval task
    patience: int  # epochs without validation gain before stopping
    max_eval_queries: (
        int  # validation queries each epoch's MRR@10 scores (a seeded sample); 0 = all
    )
    candidates: int  # candidates the lexical and the semantic retriever each contribute
    rrf_k: int  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    lexical_weights: tuple[float, ...]  # RRF weights of BM25 (semantic = 1) tried on validation
    personal_weights: tuple[float, ...]  # weights of the ranking model's score tried on validation


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "gpu"]  # auto: GPUs when present (MirroredStrategy), else CPU
    distribute: Literal["none", "mirrored", "multi_worker"]  # one device | all local | processes
    workers: int  # multi_worker without TF_CONFIG: processes started on 127.0.0.1
    positive_events: tuple[EventType, ...]  # event types that count as a user choosing an item
    history_len: int  # recent items in the user tower's history feature
    max_title_tokens: int  # title (and genre) tokens per item in the item tower
    retrieval: RetrievalConfig
    ranking: RankingConfig
    tags: TagsConfig
    search: SearchConfig


# --------------------------------------------------------------------------- fuse, evaluate
@dataclass(frozen=True)
class StackingConfig:
    num_leaves: int  # LightGBM leaves per tree
    learning_rate: float  # LightGBM shrinkage
    n_estimators: int  # most trees; early stopping on held-out validation users may end sooner
    min_child_samples: int  # fewest candidates in a leaf
    early_stopping_rounds: int  # trees without held-out NDCG@10 gain before stopping


@dataclass(frozen=True)
class CascadeConfig:
    diversity: float  # MMR: 0 keeps the stacker's order, 1 only avoids similar items
    max_per_brand: int  # most items of one brand in a list; 0 = no cap
    pool: int  # best-scored candidates MMR chooses from


@dataclass(frozen=True)
class FusionConfig:
    method: FusionMethod  # the method the packaged recommender uses (all are evaluated)
    sources: tuple[SourceName, ...]  # candidate sources, see recfusion.fusion.sources
    per_source: int  # candidates each source contributes per user
    max_users: int  # `fuse` fits on at most this many validation users (a seeded sample)
    ease_l2: float  # L2 weight of the EASE item model
    ease_dense_max_items: int  # dense EASE up to this many items; above, sparse neighbours
    ease_head_items: int  # sparse model: EASE on this many most chosen items, co-occurrence beyond
    ease_neighbours: int  # sparse model: weights kept per item
    stacking: StackingConfig
    cascade: CascadeConfig


@dataclass(frozen=True)
class EvaluateConfig:
    ks: tuple[int, ...]  # cut-offs of the ranking metrics
    bootstrap_samples: int  # resamples of the paired bootstrap
    head_share: float  # long tail: items outside the most popular ones holding this share
    example_users: int  # users whose recommendations and reasons the report shows
    max_users: (
        int  # evaluate, the gate and train_retrieval's report score at most this many test users
    )


# --------------------------------------------------------------------------- root
@dataclass(frozen=True)
class GateConfig:
    metric: (
        str  # primary metric, <RankingMetric>@<k in ks>: its slices and bootstrap gain are checked
    )
    floors: dict[str, float]  # metric -> lowest acceptable value of the candidate
    max_drop: dict[str, float]  # metric -> largest allowed drop against production
    max_slice_drop: float  # largest allowed drop of the primary metric in any slice
    require_significant_gain: bool  # the paired-bootstrap interval of the gain must be above 0
    significant_drops_only: bool  # a drop over its limit fails only if its interval is below 0
    bootstrap_samples: int  # resamples of that bootstrap
    latency_budget_ms: float  # slowest acceptable p95 answer to one sample request
    sample_requests: int  # single-user requests timed in the fresh-process check
    auto_promote: Literal["staging", "production"]  # where a passing candidate goes


@dataclass(frozen=True)
class RegistryConfig:
    tracking_uri: str  # MLflow tracking store (sqlite:///file.db, or a server's http:// URI)
    experiment: str  # MLflow experiment of the pipeline runs
    model_name: str  # registered model name
    gate: GateConfig


@dataclass(frozen=True)
class ServingConfig:
    max_k: int  # most recommendations one request may ask for
    max_query_chars: int  # longest search query a request may send
    max_rows: int  # most rows (lists) one request may hold
    max_user_id_chars: int  # longest user id a request may send
    store: str  # the online store: a SQLite file (relative to params.yaml's folder) or a Redis URL
    max_body_bytes: int  # largest HTTP request body `recfusion serve` reads (413 above)


@dataclass(frozen=True)
class EngineConfig:
    kind: Literal["local", "dask"]  # where data-parallel work runs (recfusion/engine.py)
    address: str | None  # a running Dask scheduler, e.g. tcp://10.0.0.5:8786; null = LocalCluster
    workers: int  # LocalCluster worker processes (one thread each) started on 127.0.0.1
    memory_limit: str  # per LocalCluster worker: auto (machine memory / workers) or e.g. 8GiB


@dataclass(frozen=True)
class Config:
    seed: int  # the one seed every stage derives its randomness from
    engine: EngineConfig
    ingest: IngestConfig
    validation: ValidationConfig
    privacy: PrivacyConfig
    prepare: PrepareConfig
    train: TrainConfig
    fusion: FusionConfig
    evaluate: EvaluateConfig
    registry: RegistryConfig
    serving: ServingConfig


# --------------------------------------------------------------------------- value rules
@dataclass(frozen=True)
class Bound:
    """The allowed range of a number: `low <= x` (`low < x` if `low_open`), and likewise
    `x <= high` when there is a `high`."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        if self.high is None:
            return above
        return above and (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


# engine.memory_limit: auto, or a size as Dask reads it (8GiB, 500MB, 8G)
MEMORY_LIMIT = re.compile(r"auto|(?i:\d+(\.\d+)?\s*([kmgtp]i?b?|b)?)")
AT_LEAST_1 = Bound(1)  # sizes, counts of things that must exist, epochs, patience
NON_NEGATIVE = Bound(0)  # counts where 0 means none (or "all", as the field says)
POSITIVE = Bound(0, low_open=True)  # learning rates, temperatures, regularisation
SHARE = Bound(0, 1)  # a share of something, both ends meaningful
FRACTION = Bound(0, 1, high_open=True)  # a share that may not take everything (splits, dropout)

# dotted key -> range of its value; of each element of a tuple, of each value of a mapping; a
# null (optional) value is not checked. Every int and float field is here or in a rule below.
RANGES: dict[str, Bound] = {
    "seed": NON_NEGATIVE,  # numpy refuses negative seeds
    "ingest.synthetic.n_users": AT_LEAST_1,
    "ingest.synthetic.n_items": AT_LEAST_1,  # the generator also needs one per category leaf
    "ingest.synthetic.sessions_per_user": AT_LEAST_1,
    "ingest.synthetic.days": AT_LEAST_1,
    "ingest.synthetic.cold_user_frac": SHARE,
    "ingest.synthetic.cold_item_frac": SHARE,
    "ingest.synthetic.late_frac": SHARE,
    "ingest.synthetic.query_rate": SHARE,
    "ingest.synthetic.typo_rate": SHARE,
    "ingest.synthetic.out_of_stock_frac": SHARE,
    "validation.max_bad_row_frac": SHARE,
    "validation.max_duplicate_frac": SHARE,
    "validation.min_rows": NON_NEGATIVE,
    "validation.max_rows": AT_LEAST_1,
    "validation.max_query_chars": AT_LEAST_1,
    "validation.max_title_chars": AT_LEAST_1,
    "validation.max_text_chars": AT_LEAST_1,
    "validation.max_drift_kl": NON_NEGATIVE,  # a KL divergence is never negative
    "validation.example_rows": NON_NEGATIVE,
    "prepare.price_buckets": AT_LEAST_1,
    "prepare.min_token_count": AT_LEAST_1,
    "prepare.split.val_frac": FRACTION,
    "prepare.split.test_frac": FRACTION,
    "prepare.split.last_n": AT_LEAST_1,
    "prepare.split.min_train_events": AT_LEAST_1,
    "train.history_len": AT_LEAST_1,
    "train.max_title_tokens": AT_LEAST_1,
    "train.retrieval.embedding_dim": AT_LEAST_1,
    "train.retrieval.epochs": AT_LEAST_1,
    "train.retrieval.batch_size": AT_LEAST_1,
    "train.retrieval.learning_rate": POSITIVE,
    "train.retrieval.temperature": POSITIVE,
    "train.retrieval.hard_negatives": NON_NEGATIVE,
    "train.retrieval.id_dropout": FRACTION,
    "train.retrieval.dropout": FRACTION,  # TensorFlow refuses a dropout rate of 1
    "train.retrieval.item_dropout": FRACTION,
    "train.retrieval.patience": AT_LEAST_1,  # 0 would stop like 1: at the first epoch without gain
    "train.retrieval.eval_k": AT_LEAST_1,
    "train.retrieval.max_eval_users": NON_NEGATIVE,
    "train.retrieval.faiss_above": NON_NEGATIVE,
    "train.ranking.embedding_dim": AT_LEAST_1,
    "train.ranking.cross_layers": NON_NEGATIVE,
    "train.ranking.projection_dim": NON_NEGATIVE,
    "train.ranking.deep_layers": AT_LEAST_1,
    "train.ranking.epochs": AT_LEAST_1,
    "train.ranking.batch_size": AT_LEAST_1,
    "train.ranking.learning_rate": POSITIVE,
    "train.ranking.random_negatives": NON_NEGATIVE,
    "train.ranking.hard_negatives": NON_NEGATIVE,
    "train.ranking.hard_negative_k": AT_LEAST_1,
    "train.ranking.patience": AT_LEAST_1,
    "train.tags.level": AT_LEAST_1,  # 0 would index the category path from its end
    "train.tags.min_share": Bound(0, 1, low_open=True),  # 0: every category a user touched
    "train.tags.hidden_units": AT_LEAST_1,
    "train.tags.epochs": AT_LEAST_1,
    "train.tags.batch_size": AT_LEAST_1,
    "train.tags.learning_rate": POSITIVE,
    "train.tags.patience": AT_LEAST_1,
    "train.search.max_query_words": AT_LEAST_1,
    "train.search.max_query_grams": AT_LEAST_1,
    "train.search.gram_buckets": AT_LEAST_1,
    "train.search.hidden_units": AT_LEAST_1,
    "train.search.word_dropout": FRACTION,
    "train.search.typo_copies": NON_NEGATIVE,
    "train.search.epochs": AT_LEAST_1,
    "train.search.batch_size": AT_LEAST_1,
    "train.search.learning_rate": POSITIVE,
    "train.search.temperature": POSITIVE,
    "train.search.patience": AT_LEAST_1,
    "train.search.max_eval_queries": NON_NEGATIVE,
    "train.search.candidates": AT_LEAST_1,
    "train.search.rrf_k": NON_NEGATIVE,  # ranks start at 1
    "train.search.lexical_weights": NON_NEGATIVE,
    "train.search.personal_weights": NON_NEGATIVE,
    "fusion.per_source": AT_LEAST_1,
    "fusion.max_users": AT_LEAST_1,
    "fusion.ease_l2": POSITIVE,  # without it the Gram matrix may not be invertible
    "fusion.ease_dense_max_items": AT_LEAST_1,
    "evaluate.max_users": AT_LEAST_1,
    "fusion.ease_head_items": AT_LEAST_1,
    "train.workers": AT_LEAST_1,
    "engine.workers": AT_LEAST_1,
    "fusion.ease_neighbours": AT_LEAST_1,
    "fusion.stacking.num_leaves": Bound(2),  # LightGBM needs more than one leaf
    "fusion.stacking.learning_rate": POSITIVE,
    "fusion.stacking.n_estimators": AT_LEAST_1,
    "fusion.stacking.min_child_samples": NON_NEGATIVE,
    "fusion.stacking.early_stopping_rounds": NON_NEGATIVE,  # 0: LightGBM does not stop early
    "fusion.cascade.diversity": SHARE,
    "fusion.cascade.max_per_brand": NON_NEGATIVE,
    "fusion.cascade.pool": AT_LEAST_1,
    "evaluate.ks": AT_LEAST_1,
    "evaluate.bootstrap_samples": AT_LEAST_1,
    "evaluate.head_share": Bound(0, 1, low_open=True, high_open=True),  # else no head or no tail
    "evaluate.example_users": NON_NEGATIVE,
    "registry.gate.floors": SHARE,  # every metric the gate checks lies in [0, 1]
    "registry.gate.max_drop": NON_NEGATIVE,
    "registry.gate.max_slice_drop": NON_NEGATIVE,
    "registry.gate.bootstrap_samples": AT_LEAST_1,
    "registry.gate.latency_budget_ms": POSITIVE,
    "registry.gate.sample_requests": AT_LEAST_1,
    "serving.max_k": AT_LEAST_1,
    "serving.max_query_chars": AT_LEAST_1,
    "serving.max_rows": AT_LEAST_1,
    "serving.max_user_id_chars": AT_LEAST_1,
    "serving.max_body_bytes": AT_LEAST_1,
}


def check_config(cfg: Config, source: str) -> None:
    """Checks the values of a typed config: `RANGES`, then the rules across fields.

    Raises:
        ConfigError: the first value out of range or rule broken, naming the key and `source`.
    """
    for key, bound in RANGES.items():
        for name, value in _values(cfg, key):
            if not bound.holds(value):
                raise ConfigError(f"{source}: key '{name}' must be {bound}, got {value!r}")
    problem = next(_cross_field_problems(cfg), None)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")


def _values(cfg: Config, key: str) -> list[tuple[str, Any]]:
    """(dotted name, value) of the number at `key`, of each element or mapping value there."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    if isinstance(node, tuple):
        return [(f"{key}[{i}]", v) for i, v in enumerate(node)]
    if isinstance(node, Mapping):
        return [(f"{key}.{k}", v) for k, v in node.items()]
    return [] if node is None else [(key, node)]


def _cross_field_problems(cfg: Config) -> Iterator[str]:
    """Each rule that `cfg` breaks, as a message without the source."""
    split, v = cfg.prepare.split, cfg.validation
    if split.val_frac + split.test_frac >= 1:
        yield (
            f"prepare.split.val_frac + prepare.split.test_frac must be < 1 (got "
            f"{split.val_frac:g} + {split.test_frac:g}), or nothing is left to train on"
        )
    if v.rating_min >= v.rating_max:
        yield (
            f"validation.rating_min must be < validation.rating_max (got {v.rating_min:g} "
            f"and {v.rating_max:g})"
        )
    for key, by_table in (
        ("validation.min_rows", v.min_rows),
        ("ingest.files.columns", cfg.ingest.files.columns),
    ):
        unknown = [t for t in by_table if t not in TABLES]
        if unknown:
            yield f"key '{key}.{unknown[0]}': unknown table (tables: {', '.join(TABLES)})"
    lacking = [t for t in TABLES if t not in v.min_rows]
    if lacking:
        yield f"key 'validation.min_rows' lacks {', '.join(lacking)} (give each of {_list(TABLES)})"
    for table, n in v.min_rows.items():
        if n > v.max_rows:
            yield (
                f"validation.min_rows.{table} must be <= validation.max_rows (got {n} > "
                f"{v.max_rows})"
            )
    if cfg.serving.max_user_id_chars < v.max_text_chars:
        yield (
            f"serving.max_user_id_chars must be >= validation.max_text_chars, so that every user "
            f"validation lets in can be served (got {cfg.serving.max_user_id_chars} < "
            f"{v.max_text_chars})"
        )
    yield from _listing("train.positive_events", cfg.train.positive_events, "event type")
    rk = cfg.train.ranking
    if rk.hard_negatives > rk.hard_negative_k:
        yield (
            f"train.ranking.hard_negatives must be <= train.ranking.hard_negative_k, the top-K "
            f"they are drawn from (got {rk.hard_negatives} > {rk.hard_negative_k})"
        )
    yield from _listing("train.search.lexical_weights", cfg.train.search.lexical_weights, "weight")
    yield from _listing(
        "train.search.personal_weights", cfg.train.search.personal_weights, "weight"
    )
    yield from _listing("fusion.sources", cfg.fusion.sources, "candidate source")
    yield from _ks_problems(cfg.evaluate.ks, cfg.serving.max_k)
    yield from _gate_problems(cfg.registry.gate, cfg.evaluate.ks)
    for key in ("tracking_uri", "experiment", "model_name"):
        if not getattr(cfg.registry, key).strip():
            yield f"key 'registry.{key}' must not be empty"
    if cfg.fusion.ease_head_items > cfg.fusion.ease_dense_max_items:
        yield (
            f"key 'fusion.ease_head_items' ({cfg.fusion.ease_head_items}) must be at most "
            f"'fusion.ease_dense_max_items' ({cfg.fusion.ease_dense_max_items}): the sparse "
            "model's head is a dense EASE of that many items"
        )
    limit = cfg.engine.memory_limit.strip()
    if not MEMORY_LIMIT.fullmatch(limit) or (limit != "auto" and not re.search(r"[1-9]", limit)):
        yield (
            f"key 'engine.memory_limit' must be auto or a size above 0 such as 8GiB or 500MB (got "
            f"{cfg.engine.memory_limit!r})"
        )
    if cfg.engine.address is not None and not cfg.engine.address.strip():
        yield "key 'engine.address' must be a scheduler address (tcp://host:port) or null"
    if not cfg.serving.store.strip():
        yield (
            "key 'serving.store' must not be empty (the online store: a SQLite file, or a "
            "redis:// URL)"
        )


def _listing(key: str, values: tuple[Any, ...], what: str) -> Iterator[str]:
    """A list that must hold at least one value, each once."""
    if not values:
        yield f"key '{key}' must list at least one {what}"
    repeated = [x for x, n in Counter(values).items() if n > 1]
    if repeated:
        yield f"key '{key}' lists {repeated[0]!r} more than once"


def _ks_problems(ks: tuple[int, ...], max_k: int) -> Iterator[str]:
    if list(ks) != sorted(set(ks)):
        yield f"key 'evaluate.ks' must be increasing without repeats, got {_list(ks)}"
    if REPORT_K not in ks:
        yield (
            f"key 'evaluate.ks' must include {REPORT_K} (the evaluation picks the best source "
            f"and reports by NDCG@{REPORT_K}), got {_list(ks)}"
        )
    elif max(ks) > max_k:
        yield (
            f"max(evaluate.ks) must be <= serving.max_k: the gate asks the packaged model for "
            f"its top {max(ks)} (got {max(ks)} > {max_k})"
        )


def _gate_problems(gate: GateConfig, ks: tuple[int, ...]) -> Iterator[str]:
    if gate.metric in LIST_METRICS:
        yield (
            f"key 'registry.gate.metric' must be a ranking metric with a value per user (its "
            f"bootstrap is over users), got {gate.metric!r}"
        )
    else:
        yield from _metric_problems("registry.gate.metric", gate.metric, ks, ())
    for section in ("floors", "max_drop"):
        for name in getattr(gate, section):
            if name not in LIST_METRICS:
                key = f"registry.gate.{section}.{name}"
                yield from _metric_problems(key, name, ks, LIST_METRICS)


def _metric_problems(
    key: str, name: str, ks: tuple[int, ...], others: tuple[str, ...]
) -> Iterator[str]:
    """`name` is no ranking metric the evaluation computes, <RankingMetric>@<k of ks>; the
    message lists `others`, the other names allowed at `key`."""
    family, at, k = name.partition("@")
    if not at or not k.isdigit() or k != str(int(k)):
        yield f"key '{key}' must name a metric as <metric>@<k>, e.g. 'ndcg@10', got {name!r}"
    elif family not in RANKING_METRICS:
        known = ", ".join(RANKING_METRICS) + "".join(f"; or {n}" for n in others)
        yield f"key '{key}': unknown metric {family!r} in {name!r} (metrics: {known})"
    elif int(k) not in ks:
        yield f"key '{key}': {name} is not evaluated, {k} is not in evaluate.ks {_list(ks)}"


def _list(values: tuple[Any, ...]) -> str:
    """A tuple as params.yaml shows it: [5, 10]."""
    return str(list(values))


# --------------------------------------------------------------------------- loading
def load_config(
    path: str | Path = DEFAULT_PARAMS,
    overrides: Mapping[str, Any] | None = None,
    defaults: str | Path | None = None,
) -> Config:
    """Reads params.yaml into a `Config` and checks its values.

    Args:
        path: the YAML file.
        overrides: nested mapping merged over the file before typing (same key rules).
        defaults: another params file whose keys fill those `path` lacks (a model packaged by
            an older version of recfusion has no keys of later features); logged as a warning.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown, missing or mistyped, or
            a value breaks a rule of `check_config`.
    """
    path = Path(path)
    raw = read_yaml(path)
    if defaults is not None:
        raw, added = fill_missing(raw, read_yaml(Path(defaults)))
        if added:
            log.warning("%s lacks %s; using the values of %s", path, ", ".join(added), defaults)
    if overrides:
        raw = merge_overrides(raw, overrides, source=str(path))
    return _typed(raw, str(path))


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """`cfg` with a nested mapping of new values merged in, checked like a params file.

    Example: with_overrides(cfg, {"prepare": {"split": {"val_frac": 0.2}}})

    Raises:
        ConfigError: an unknown key, a mistyped value or a broken rule, from source "overrides".
    """
    return _typed(merge_overrides(to_plain(cfg), overrides, source="overrides"), "overrides")


def _typed(raw: Mapping[str, Any], source: str) -> Config:
    cfg: Config = parse_dataclass(Config, raw, source=source)
    check_config(cfg, source)
    return cfg
