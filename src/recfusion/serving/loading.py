"""Loading the packaged recommender for `recfusion recommend`: from the workspace (the pipeline's
outputs in this folder) or from an MLflow model URI (e.g. models:/recfusion@production)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pandas as pd

from recfusion.config import load_config
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import SPLITS
from recfusion.models.dataset import read_prepared
from recfusion.paths import PREPARED_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.manifest import WorkspaceMismatch
from recfusion.serving.store import OnlineStore, open_configured, prepared_store

WORKSPACE = "workspace"
MAX_USERS_FILE_BYTES = 50_000_000


class Predictor(Protocol):
    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame: ...


class _WorkspaceModel:
    def __init__(self, root: Path, store: OnlineStore | None, history: Sequence[str],
                 keep: tempfile.TemporaryDirectory | None = None) -> None:  # fmt: skip
        from recfusion.serving.recommender import Recommender

        self.recommender = Recommender.load(root, store)
        self.history = tuple(history)  # the splits the store knows users by
        self._keep = keep  # a downloaded model's folder and a scoring store live as long as it

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        return self.recommender.recommend(model_input)


def load_model(model: str, params: Path, history: Sequence[str] | None = None) -> Predictor:
    """The recommender behind `model`: 'workspace' or an MLflow model URI.

    A model URI's workspace is checked against its manifest before the recommender is assembled
    (serving/manifest.py); the workspace of this folder is not (it has no manifest). Users and
    their events come from the online store (`serving.store`; relative to the folder of
    `params` for the workspace, to the current folder for a model URI), or, with `history`, from
    a store written for the call from this project's data/prepared.

    Args:
        history: None: serve from the online store. Splits (e.g. ("train", "val")): know users by
            their events in these splits only, e.g. to score the test split offline.

    Raises:
        TrackingUnavailable: the tracking store of params.yaml cannot be reached.
        WorkspaceMismatch: the model's files differ from its manifest (the message names `model`
            and the files).
        StoreError: the online store is missing or unreadable.
    """
    project = params.parent
    if model == WORKSPACE and history is None:
        cfg = load_config(params)
        return _WorkspaceModel(project, open_configured(cfg.serving.store, project), SPLITS)
    keep = tempfile.TemporaryDirectory(prefix="recfusion-model-")
    store: OnlineStore | None = None
    if history is not None:
        prepared = read_prepared(project / PREPARED_DIR)
        store = prepared_store(prepared, history, pseudonym_key(project),
                               Path(keep.name) / "store.sqlite")  # fmt: skip
    if model == WORKSPACE:
        return _WorkspaceModel(project, store, history or SPLITS, keep)
    import mlflow

    use_registry(params)
    if history is None:
        try:
            return mlflow.pyfunc.load_model(model)
        except WorkspaceMismatch as e:
            # the model's own check (load_context) names it by its logged id; say the URI given
            raise WorkspaceMismatch(model, e.problems) from e
    from recfusion.serving.pyfunc import local_workspace

    return _WorkspaceModel(local_workspace(model, Path(keep.name)), store, history, keep)


def use_registry(params: Path) -> None:
    """Points MLflow at the tracking store of `params` (models:/ URIs resolve there).

    Raises:
        TrackingUnavailable: it cannot be reached.
    """
    import mlflow

    from recfusion.registry.tracking import connect

    uri = load_config(params).registry.tracking_uri
    connect(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def parse_history(text: str) -> tuple[str, ...]:
    """`--history train,val` -> ("train", "val").

    Raises:
        ValueError: an unknown or repeated split, or none.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SPLITS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"--history {text!r}: name splits once each, from {', '.join(SPLITS)} "
                         "(e.g. --history train,val to score the test split)")  # fmt: skip
    return names


def read_exclusions(path: Path) -> dict[str, list[str]]:
    """user_id -> item ids not to recommend them, from a CSV or Parquet table with columns
    user_id and item_id (one row per user and item).

    Raises:
        DataFileError: the file is missing, unreadable, too large or lacks those columns.
    """
    if path.is_file() and path.stat().st_size > MAX_USERS_FILE_BYTES:
        raise DataFileError(f"{path}: larger than {MAX_USERS_FILE_BYTES} bytes; split it")
    if path.suffix.lower() in (".csv", ".tsv"):
        table = read_table(path, dtype=str)  # ids stay text: "007" is not 7
    else:
        table = read_table(path)
    missing = [c for c in ("user_id", "item_id") if c not in table.columns]
    if missing:
        raise DataFileError(f"{path}: needs columns user_id and item_id (missing {missing})")
    table = table[["user_id", "item_id"]].dropna().astype(str)
    return {str(u): g["item_id"].tolist() for u, g in table.groupby("user_id", sort=False)}


def read_text_file(path: Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of a file a user names on the command line.

    Raises:
        DataFileError: missing, larger than `max_bytes`, or not UTF-8 (`what` says what the file
            should hold, e.g. "one user id per line").
    """
    if not path.is_file():
        raise DataFileError(f"{path}: no such file ({what})")
    if path.stat().st_size > max_bytes:
        raise DataFileError(f"{path}: larger than {max_bytes} bytes; split it")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text ({what})") from e


def read_user_ids(path: Path) -> list[str]:
    """One user id per line (blank lines skipped).

    Raises:
        DataFileError: the file is missing, too large, not text, or has no ids.
    """
    text = read_text_file(path, "one user id per line", MAX_USERS_FILE_BYTES)
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataFileError(f"{path}: no user ids (one per line)")
    return ids
