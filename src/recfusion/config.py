"""params.yaml -> frozen, typed dataclasses.

`params.yaml` is the one source of configuration. Every key it holds must be a field here and
every field must be in the file: an unknown, missing or mistyped key is a `ConfigError` that
names the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

log = logging.getLogger(__name__)

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml (or an override) does not match the typed configuration."""


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
    source: Literal["synthetic", "movielens", "files"]  # which source writes data/raw
    synthetic: SyntheticConfig
    movielens: MovieLensConfig
    files: FilesConfig


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
    max_drift_kl: float  # prepared: largest KL divergence of test vs train category / event mix
    example_rows: int  # bad rows shown per failed expectation in the summary


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
    deep_layers: list[int]  # units of the dense layers after the cross network
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
    candidates: int  # candidates the lexical and the semantic retriever each contribute
    rrf_k: int  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    lexical_weights: list[float]  # RRF weights of BM25 (semantic = 1) tried on validation
    personal_weights: list[float]  # weights of the ranking model's score tried on validation


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "gpu"]  # auto: GPUs when present (MirroredStrategy), else CPU
    positive_events: list[str]  # event types that count as a user choosing an item
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
    method: Literal["weighted", "rrf", "borda", "stacking", "cascade"]  # the packaged recommender's
    sources: list[str]  # candidate sources, see recfusion.fusion.sources
    per_source: int  # candidates each source contributes per user
    ease_l2: float  # L2 weight of the EASE item model
    stacking: StackingConfig
    cascade: CascadeConfig


@dataclass(frozen=True)
class EvaluateConfig:
    ks: list[int]  # cut-offs of the ranking metrics
    bootstrap_samples: int  # resamples of the paired bootstrap
    head_share: float  # long tail: items outside the most popular ones holding this share
    example_users: int  # users whose recommendations and reasons the report shows


# --------------------------------------------------------------------------- root
@dataclass(frozen=True)
class GateConfig:
    metric: str  # primary metric: its slices and bootstrap gain are checked
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


@dataclass(frozen=True)
class Config:
    seed: int  # the one seed every stage derives its randomness from
    ingest: IngestConfig
    validation: ValidationConfig
    prepare: PrepareConfig
    train: TrainConfig
    fusion: FusionConfig
    evaluate: EvaluateConfig
    registry: RegistryConfig
    serving: ServingConfig


def load_config(
    path: str | Path = DEFAULT_PARAMS,
    overrides: Mapping[str, Any] | None = None,
    defaults: str | Path | None = None,
) -> Config:
    """Reads params.yaml into a `Config`.

    Args:
        path: the YAML file.
        overrides: nested mapping merged over the file before typing (same key rules).
        defaults: another params file whose keys fill those `path` lacks (a model packaged by
            an older version of recfusion has no keys of later features); logged as a warning.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown, missing or mistyped.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found (run from the project root?)") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if defaults is not None:
        base = yaml.safe_load(Path(defaults).read_text(encoding="utf-8"))
        raw, added = fill_missing(raw, base)
        if added:
            log.warning("%s lacks %s; using the values of %s", path, ", ".join(added), defaults)
    if overrides:
        raw = merge_overrides(raw, overrides, source=str(path))
    return parse_dataclass(Config, raw, source=str(path))


def fill_missing(raw: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = "",
                 ) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """`raw` with every key of `defaults` it lacks added (recursively), and the dotted keys added.

    Example: fill_missing({"a": {"x": 1}}, {"a": {"x": 2, "y": 3}, "b": 4})
        -> ({"a": {"x": 1, "y": 3}, "b": 4}, ["a.y", "b"])
    """
    out, added = dict(raw), []
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
            added.append(prefix + key)
        elif isinstance(out[key], Mapping) and isinstance(value, Mapping):
            out[key], more = fill_missing(out[key], value, f"{prefix}{key}.")
            added.extend(more)
    return out, added


def merge_overrides(
    base: Mapping[str, Any], overrides: Mapping[str, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """Deep-merges `overrides` into a copy of `base`; an override of an unknown key is an error."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in merged:
            raise ConfigError(f"{source}: override of unknown key '{name}'")
        if isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = merge_overrides(merged[key], value, source, prefix=f"{name}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_dataclass(cls: type, raw: Any, source: str, prefix: str = "") -> Any:
    """Builds dataclass `cls` from a mapping, checking every key and type."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (allowed under {where}: "
            f"{', '.join(names)})"
        )
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"{source}: missing key '{prefix}{missing[0]}'")
    values = {n: _parse_value(hints[n], raw[n], source, f"{prefix}{n}") for n in names}
    return cls(**values)


def _parse_value(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, source, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(inner[0], value, source, key)
    if origin is Literal:
        if value not in args:
            allowed = " | ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: key '{key}' must be one of {allowed}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(source, key, "a list", value)
        return [_parse_value(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _type_error(source, key, "a mapping", value)
        return {
            _parse_value(args[0], k, source, f"{key}.{k}"): _parse_value(
                args[1], v, source, f"{key}.{k}"
            )
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(source, key, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(source, key, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(source, key, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(source, key, "a string", value)
        return value
    raise ConfigError(f"{source}: key '{key}' has an unsupported type {tp!r}")  # pragma: no cover


def _type_error(source: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        f"{source}: key '{key}' must be {expected}, got {type(value).__name__} {value!r}"
    )
