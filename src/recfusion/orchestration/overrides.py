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

# each field of the training form -> the params.yaml key it sets ("/" between levels: metric
# names hold dots)
FORM_FIELDS = {
    "source": "ingest/source",
    "size": "ingest/synthetic/size",
    "epochs": "train/retrieval/epochs",
    "embedding_dim": "train/retrieval/embedding_dim",
    "fusion_method": "fusion/method",
    "auto_promote": "registry/gate/auto_promote",
    "min_ndcg_at_10": "registry/gate/floors/ndcg@10",
    "max_ndcg_drop": "registry/gate/max_drop/ndcg@10",
    "require_significant_gain": "registry/gate/require_significant_gain",
}


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
    fields = {"source": source, "size": size, "epochs": epochs, "embedding_dim": embedding_dim,
              "fusion_method": fusion_method, "auto_promote": auto_promote,
              "min_ndcg_at_10": min_ndcg_at_10, "max_ndcg_drop": max_ndcg_drop,
              "require_significant_gain": require_significant_gain}  # fmt: skip
    for field, value in fields.items():
        if value is None:
            continue
        node = out
        *parents, leaf = FORM_FIELDS[field].split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def form_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """The training form's fields as params.yaml (a plain mapping) sets them: what the form
    shows before anyone edits it."""
    out = {}
    for field, path in FORM_FIELDS.items():
        node: Any = params
        for key in path.split("/"):
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            out[field] = node
    return out


def changed_only(overrides: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` without the values params.yaml already has (a form submitted with its
    defaults changes nothing, and the run is not recorded as an experiment)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        current = params.get(key) if isinstance(params, Mapping) else None
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            inner = changed_only(value, current)
            if inner:
                out[key] = inner
        elif value != current:
            out[key] = copy.deepcopy(value)
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
