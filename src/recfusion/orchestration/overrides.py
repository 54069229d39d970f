"""Run parameters from the Prefect form -> a params.yaml override, applied for one run.

The form's fields are typed (so the UI renders them); None means "as in params.yaml". The
override is checked against the typed config before anything runs, written into params.yaml
with DVC's comment-preserving YAML editor for the run (DVC tracks params through that file),
and the file's original text is put back afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recfusion.config import Config, load_config


def training_overrides(
    source: str | None = None,
    size: str | None = None,
    epochs: int | None = None,
    embedding_dim: int | None = None,
    fusion_method: str | None = None,
    auto_promote: str | None = None,
    min_ndcg_at_10: float | None = None,
    max_ndcg_drop: float | None = None,
    require_significant_gain: bool | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The nested params.yaml override of the form's fields (unset fields left out), with
    `extra` (nested like params.yaml) merged under them."""
    out: dict[str, Any] = copy.deepcopy(dict(extra or {}))

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = out
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    put("ingest/source", source)
    put("ingest/synthetic/size", size)
    put("train/retrieval/epochs", epochs)
    put("train/retrieval/embedding_dim", embedding_dim)
    put("fusion/method", fusion_method)
    put("registry/gate/auto_promote", auto_promote)
    put("registry/gate/floors/ndcg@10", min_ndcg_at_10)
    put("registry/gate/max_drop/ndcg@10", max_ndcg_drop)
    put("registry/gate/require_significant_gain", require_significant_gain)
    return out


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"retrieval": {"epochs": 3}}} -> {"train.retrieval.epochs": 3}."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@contextmanager
def overridden_params(params: Path, overrides: Mapping[str, Any]) -> Iterator[Config]:
    """params.yaml with `overrides` for the duration; yields the typed config of the run.

    Raises:
        ConfigError: an override names an unknown key or has the wrong type (nothing written).
    """
    cfg = load_config(params, overrides)  # checks before touching the file
    if not overrides:
        yield cfg
        return
    from dvc.utils.serialize import modify_yaml  # DVC's round-trip editor keeps the comments

    original = params.read_text(encoding="utf-8")
    try:
        with modify_yaml(str(params)) as data:
            _merge_into(data, overrides)
        yield cfg
    finally:
        params.write_text(original, encoding="utf-8")


def _merge_into(node: Any, overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(node.get(key), Mapping):
            _merge_into(node[key], value)
        else:
            node[key] = copy.deepcopy(value)
