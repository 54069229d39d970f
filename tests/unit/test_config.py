"""params.yaml loading: the shipped file is valid; unknown, missing and mistyped keys, values out
of range and broken rules across fields fail with the key and the file named; `with_overrides`
checks alike; the names defined once in config.py are the ones the code uses."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recfusion.config import (
    EVENT_TYPES,
    FUSION_METHODS,
    RANGES,
    RANKING_METRICS,
    SOURCES,
    TABLES,
    Config,
    ConfigError,
    load_config,
    with_overrides,
)
from tests.conftest import PARAMS, repo_config

DROP = object()  # in a table of changes: remove the key


def write_params(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def apply(node: dict, changes: dict) -> None:
    """Deep-sets `changes` into `node`, adding keys (unlike an override) and removing DROP ones."""
    for key, value in changes.items():
        if value is DROP:
            del node[key]
        elif isinstance(value, dict) and isinstance(node.get(key), dict):
            apply(node[key], value)
        else:
            node[key] = value


def test_shipped_params_load_into_frozen_config() -> None:
    cfg = load_config(PARAMS)
    assert isinstance(cfg, Config)
    assert cfg.ingest.source == "synthetic"
    assert cfg.prepare.split.method in ("temporal", "leave_last_n", "random_ratio", "predefined")
    with pytest.raises(AttributeError):
        cfg.seed = 1  # type: ignore[misc]


def test_lists_are_tuples_so_sections_are_immutable_and_hashable() -> None:
    cfg = load_config(PARAMS)
    assert cfg.evaluate.ks == (5, 10, 20, 50)
    for values in (
        cfg.fusion.sources,
        cfg.train.positive_events,
        cfg.train.ranking.deep_layers,
        cfg.train.search.lexical_weights,
        cfg.train.search.personal_weights,
    ):
        assert isinstance(values, tuple)
    again = load_config(PARAMS)
    sections = ("prepare", "train", "fusion", "evaluate", "serving")  # those without a mapping
    assert hash(tuple(getattr(cfg, s) for s in sections)) == hash(
        tuple(getattr(again, s) for s in sections)
    )


def test_every_key_in_params_yaml_is_commented() -> None:
    for number, line in enumerate(PARAMS.read_text().splitlines(), start=1):
        if re.match(r"^\s*[a-z_]+:", line):
            assert "#" in line, f"params.yaml line {number} has no comment: {line.strip()}"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda r: r["prepare"]["split"].update(val_fraq=0.2))
    with pytest.raises(ConfigError, match=r"params\.yaml: unknown key 'prepare\.split\.val_fraq'"):
        load_config(path)


def test_missing_key_is_an_error(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda r: r["ingest"]["synthetic"].pop("days"))
    with pytest.raises(ConfigError, match=r"missing key 'ingest\.synthetic\.days'"):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (("prepare",), "price_buckets", "five", "an integer"),
        (("prepare",), "dedup_events", "yes", "true or false"),
        (("prepare", "split"), "val_frac", "0.1x", "a number"),
        (("prepare", "split"), "method", "by_magic", "one of"),
        (("ingest",), "source", "s3", "one of"),
        ((), "seed", 1.5, "an integer"),
        (("ingest", "synthetic"), "n_users", True, "an integer"),
        (("evaluate",), "ks", 10, "a list"),
    ],
)
def test_mistyped_key_names_key_and_expected_type(
    tmp_path: Path, section: tuple[str, ...], key: str, value: object, expected: str
) -> None:
    def mutate(raw: dict) -> None:
        node = raw
        for part in section:
            node = node[part]
        node[key] = value

    path = write_params(tmp_path, mutate)
    dotted = ".".join((*section, key))
    with pytest.raises(ConfigError, match=re.escape(f"key '{dotted}' must be {expected}")):
        load_config(path)


def test_nullable_override_and_int_as_float() -> None:
    cfg = load_config(PARAMS, {"ingest": {"synthetic": {"n_users": 10, "cold_user_frac": 0}}})
    assert cfg.ingest.synthetic.n_users == 10
    assert cfg.ingest.synthetic.cold_user_frac == 0.0
    assert isinstance(cfg.ingest.synthetic.cold_user_frac, float)


def test_override_of_unknown_key_fails() -> None:
    with pytest.raises(ConfigError, match="override of unknown key 'prepare.nope'"):
        load_config(PARAMS, {"prepare": {"nope": 1}})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


# --------------------------------------------------------------------------- ranges
def field_type(key: str) -> Any:
    """The number type (int or float) of the value, element or mapping value at dotted `key`."""
    tp: Any = Config
    for part in key.split("."):
        tp = typing.get_type_hints(tp)[part]
    return number_type(tp)


def number_type(tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return number_type(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return number_type(args[0])
    if origin is dict:
        return number_type(args[1])
    return tp


def number_fields(cls: type = Config, prefix: str = "") -> Iterator[str]:
    """The dotted key of every int or float field (or tuple / mapping of them) of the schema."""
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from number_fields(tp, f"{prefix}{name}.")
        elif number_type(tp) in (int, float):
            yield f"{prefix}{name}"


# numbers whose rule is across fields (rating_min < rating_max), tested in the table below
NOT_IN_RANGES = {"validation.rating_min", "validation.rating_max"}


def test_every_number_has_a_range_or_a_rule() -> None:
    fields = set(number_fields())
    assert fields - set(RANGES) == NOT_IN_RANGES
    assert set(RANGES) <= fields  # no range for a key that is not a number field


def override_at(cfg: Config, key: str, value: Any) -> tuple[dict, str]:
    """A nested override putting `value` at `key` (for a tuple: its first element; for a
    mapping: its first value), and the dotted name the error names."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    name = key
    if isinstance(node, tuple):
        value, name = [value, *node[1:]], f"{key}[0]"
    elif isinstance(node, dict):
        first = next(iter(node))
        value, name = {first: value}, f"{key}.{first}"
    for part in reversed(key.split(".")):
        value = {part: value}
    return value, name


def outside(key: str) -> list[Any]:
    """Values just past each end of the range of `key`."""
    bound, is_int = RANGES[key], field_type(key) is int
    step = 1 if is_int else 0.5
    out = [bound.low if bound.low_open else bound.low - step]
    if bound.high is not None:
        out.append(bound.high if bound.high_open else bound.high + step)
    return [int(v) if is_int else float(v) for v in out]


@pytest.mark.parametrize("key", list(RANGES))
def test_each_range_refuses_values_past_its_ends_and_keeps_its_closed_ends(key: str) -> None:
    cfg, bound = repo_config(), RANGES[key]
    for value in outside(key):
        override, name = override_at(cfg, key, value)
        with pytest.raises(
            ConfigError, match=re.escape(f"overrides: key '{name}' must be {bound}")
        ):
            with_overrides(cfg, override)
    ends = [] if bound.low_open else [bound.low]
    if bound.high is not None and not bound.high_open:
        ends.append(bound.high)
    for end in ends:  # a closed end is allowed (another rule may still refuse the config)
        override, name = override_at(cfg, key, int(end) if field_type(key) is int else end)
        try:
            with_overrides(cfg, override)
        except ConfigError as e:
            assert f"key '{name}' must be" not in str(e)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("seed", ">= 0"),
        ("prepare.split.val_frac", "in [0, 1)"),
        ("ingest.synthetic.query_rate", "in [0, 1]"),
        ("train.tags.min_share", "in (0, 1]"),
        ("evaluate.head_share", "in (0, 1)"),
        ("fusion.ease_l2", "> 0"),
        ("fusion.stacking.num_leaves", ">= 2"),
    ],
)
def test_ranges_read_as_intervals(key: str, text: str) -> None:
    assert str(RANGES[key]) == text


# --------------------------------------------------------------------------- rules across fields
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"prepare": {"split": {"val_frac": 0.6, "test_frac": 0.5}}},
            "prepare.split.val_frac + prepare.split.test_frac must be < 1 (got 0.6 + 0.5)",
        ),
        (
            {"prepare": {"split": {"val_frac": 0.5, "test_frac": 0.5}}},
            "prepare.split.val_frac + prepare.split.test_frac must be < 1 (got 0.5 + 0.5)",
        ),
        (
            {"validation": {"rating_min": 5.0, "rating_max": 5.0}},
            "validation.rating_min must be < validation.rating_max (got 5 and 5)",
        ),
        (
            {"validation": {"min_rows": {"user": 1}}},
            "key 'validation.min_rows.user': unknown table (tables: users, items, events, queries)",
        ),
        (
            {"validation": {"min_rows": {"queries": DROP}}},
            "key 'validation.min_rows' lacks queries",
        ),
        (
            {"validation": {"max_rows": 10, "min_rows": {"events": 11}}},
            "validation.min_rows.events must be <= validation.max_rows (got 11 > 10)",
        ),
        (
            {"serving": {"max_user_id_chars": 100}},
            "serving.max_user_id_chars must be >= validation.max_text_chars, so that every user "
            "validation lets in can be served (got 100 < 256)",
        ),
        (
            {"fusion": {"ease_head_items": 30000}},
            "key 'fusion.ease_head_items' (30000) must be at most 'fusion.ease_dense_max_items' "
            "(12000)",
        ),
        (
            {"ingest": {"files": {"columns": {"event": {"uid": "user_id"}}}}},
            "key 'ingest.files.columns.event': unknown table",
        ),
        (
            {"train": {"positive_events": []}},
            "key 'train.positive_events' must list at least one event type",
        ),
        (
            {"train": {"positive_events": ["click", "purchse"]}},
            "key 'train.positive_events[1]' must be one of 'view' | 'click'",
        ),
        (
            {"train": {"positive_events": ["click", "click"]}},
            "key 'train.positive_events' lists 'click' more than once",
        ),
        (
            {"train": {"ranking": {"hard_negatives": 51, "hard_negative_k": 50}}},
            "train.ranking.hard_negatives must be <= train.ranking.hard_negative_k",
        ),
        (
            {"train": {"search": {"lexical_weights": []}}},
            "key 'train.search.lexical_weights' must list at least one weight",
        ),
        (
            {"train": {"search": {"personal_weights": []}}},
            "key 'train.search.personal_weights' must list at least one weight",
        ),
        (
            {"fusion": {"sources": []}},
            "key 'fusion.sources' must list at least one candidate source",
        ),
        (
            {"fusion": {"sources": ["ease", "bm25"]}},
            "key 'fusion.sources[1]' must be one of 'two_tower' | 'ease'",
        ),
        (
            {"fusion": {"sources": ["ease", "popularity", "ease"]}},
            "key 'fusion.sources' lists 'ease' more than once",
        ),
        ({"fusion": {"method": "magic"}}, "key 'fusion.method' must be one of 'weighted' | 'rrf'"),
        (
            {"evaluate": {"ks": [10, 5]}},
            "key 'evaluate.ks' must be increasing without repeats, got [10, 5]",
        ),
        (
            {"evaluate": {"ks": [5, 10, 10]}},
            "key 'evaluate.ks' must be increasing without repeats, got [5, 10, 10]",
        ),
        ({"evaluate": {"ks": [5, 20]}}, "key 'evaluate.ks' must include 10"),
        ({"evaluate": {"ks": []}}, "key 'evaluate.ks' must include 10"),
        (
            {"evaluate": {"ks": [10, 200]}},
            "max(evaluate.ks) must be <= serving.max_k: the gate asks the packaged model for its "
            "top 200 (got 200 > 100)",
        ),
        (
            {"registry": {"gate": {"metric": "ndcg"}}},
            "key 'registry.gate.metric' must name a metric as <metric>@<k>, e.g. 'ndcg@10', "
            "got 'ndcg'",
        ),
        (
            {"registry": {"gate": {"metric": "ndgc@10"}}},
            "key 'registry.gate.metric': unknown metric 'ndgc' in 'ndgc@10' (metrics: recall, "
            "precision, ndcg, mrr, map, hit)",
        ),
        (
            {"registry": {"gate": {"metric": "ndcg@15"}}},
            "key 'registry.gate.metric': ndcg@15 is not evaluated, 15 is not in evaluate.ks "
            "[5, 10, 20, 50]",
        ),
        (
            {"registry": {"gate": {"metric": "coverage@10"}}},
            "key 'registry.gate.metric' must be a ranking metric with a value per user",
        ),
        (
            {"registry": {"gate": {"floors": {"recall@100": 0.1}}}},
            "key 'registry.gate.floors.recall@100': recall@100 is not evaluated",
        ),
        (
            {"registry": {"gate": {"floors": {"coverage@20": 0.1}}}},
            "key 'registry.gate.floors.coverage@20': unknown metric 'coverage' in 'coverage@20' "
            "(metrics: recall, precision, ndcg, mrr, map, hit; or coverage@10)",
        ),
        (
            {"registry": {"gate": {"max_drop": {"ndcg@ten": 0.01}}}},
            "key 'registry.gate.max_drop.ndcg@ten' must name a metric as <metric>@<k>",
        ),
        (
            {"registry": {"gate": {"floors": {"ndcg@010": 0.01}}}},
            "key 'registry.gate.floors.ndcg@010' must name a metric as <metric>@<k>",
        ),
        (
            {"registry": {"gate": {"max_drop": {"ndcg@15": 0.01}}}},
            "key 'registry.gate.max_drop.ndcg@15': ndcg@15 is not evaluated",
        ),
        ({"registry": {"model_name": " "}}, "key 'registry.model_name' must not be empty"),
        ({"registry": {"tracking_uri": ""}}, "key 'registry.tracking_uri' must not be empty"),
        ({"registry": {"experiment": ""}}, "key 'registry.experiment' must not be empty"),
    ],
)
def test_broken_rule_names_keys_and_file(tmp_path: Path, changes: dict, expected: str) -> None:
    path = write_params(tmp_path, lambda raw: apply(raw, changes))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {expected}")):
        load_config(path)


def test_gate_may_name_any_evaluated_metric_and_coverage(tmp_path: Path) -> None:
    changes = {
        "registry": {
            "gate": {
                "metric": "mrr@5",
                "floors": {"coverage@10": 0.0, "hit@50": 0.1},
                "max_drop": {"map@20": 0.01},
            }
        }
    }
    cfg = load_config(write_params(tmp_path, lambda raw: apply(raw, changes)))
    assert cfg.registry.gate.metric == "mrr@5"
    assert cfg.registry.gate.floors["hit@50"] == 0.1


# --------------------------------------------------------------------------- with_overrides
def test_with_overrides_changes_only_what_it_names() -> None:
    cfg = repo_config()
    new = with_overrides(cfg, {"prepare": {"split": {"val_frac": 0.2}}, "evaluate": {"ks": [10]}})
    assert new.prepare.split.val_frac == 0.2 and new.evaluate.ks == (10,)
    assert cfg.prepare.split.val_frac == 0.1  # the original is untouched
    assert new.prepare.split.test_frac == cfg.prepare.split.test_frac
    assert new.train == cfg.train and new.registry == cfg.registry
    assert with_overrides(cfg, {}) == cfg


@pytest.mark.parametrize(
    ("engine", "ok"),
    [
        ({"memory_limit": "auto"}, True),
        ({"memory_limit": "8GiB"}, True),
        ({"memory_limit": "500 MB"}, True),
        ({"memory_limit": "8G"}, True),  # Dask reads a bare unit letter
        ({"memory_limit": "AUTO"}, False),  # Dask refuses it
        ({"memory_limit": "0b"}, False),  # Dask would read no limit at all
        ({"memory_limit": "lots"}, False),
        ({"address": " "}, False),
        ({"address": "tcp://10.0.0.5:8786"}, True),
    ],
)
def test_engine_settings_are_checked_before_a_cluster_starts(engine: dict, ok: bool) -> None:
    if ok:
        with_overrides(repo_config(), {"engine": engine})
        return
    with pytest.raises(ConfigError, match=f"key 'engine.{next(iter(engine))}' must be"):
        with_overrides(repo_config(), {"engine": engine})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"prepare": {"nope": 1}}, "overrides: override of unknown key 'prepare.nope'"),
        ({"seed": "42"}, "overrides: key 'seed' must be an integer, got str '42'"),
        ({"fusion": {"sources": "ease"}}, "overrides: key 'fusion.sources' must be a list"),
        ({"seed": -1}, "overrides: key 'seed' must be >= 0, got -1"),
        (
            {"prepare": {"split": {"val_frac": 0.6, "test_frac": 0.5}}},
            "overrides: prepare.split.val_frac + prepare.split.test_frac must be < 1",
        ),
    ],
)
def test_with_overrides_checks_like_a_params_file(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        with_overrides(repo_config(), overrides)


# --------------------------------------------------------------------------- names defined once
def test_fusion_code_uses_the_names_of_config() -> None:
    from recfusion.fusion import fused, period
    from recfusion.fusion.sources import REASONS, Source

    assert fused.METHODS is FUSION_METHODS
    assert period.SOURCES is SOURCES
    assert set(REASONS) == set(SOURCES)  # every source can say why it recommended an item
    classes = [c for c in all_subclasses(Source) if c.__module__ == Source.__module__]
    assert {c.name for c in classes} == set(SOURCES)


def all_subclasses(cls: type) -> set[type]:
    direct = set(cls.__subclasses__())
    return direct.union(*(all_subclasses(c) for c in direct))


def test_ranking_metrics_are_the_ones_computed() -> None:
    import numpy as np

    from recfusion.metrics.ranking import per_user_metrics

    names = per_user_metrics(np.array([[0, 1]]), [np.array([1])], [1, 2])
    assert set(names) == {f"{m}@{k}" for m in RANKING_METRICS for k in (1, 2)}


def test_data_schema_uses_the_names_of_config() -> None:
    from recfusion.data import schema

    assert schema.EVENT_TYPES is EVENT_TYPES and schema.TABLES is TABLES
    assert set(schema.SCHEMA) == set(TABLES)
