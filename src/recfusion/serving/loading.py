"""Loading the packaged recommender for `recfusion recommend`: from the workspace (the pipeline's
outputs in this folder) or from an MLflow model URI (e.g. models:/recfusion@production)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from recfusion.config import load_config
from recfusion.data.io import DataFileError

WORKSPACE = "workspace"
MAX_USERS_FILE_BYTES = 50_000_000


class Predictor(Protocol):
    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame: ...


class _WorkspaceModel:
    def __init__(self, root: Path) -> None:
        from recfusion.serving.recommender import Recommender

        self.recommender = Recommender.load(root)

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        return self.recommender.recommend(model_input)


def load_model(model: str, params: Path) -> Predictor:
    """The recommender behind `model`: 'workspace' or an MLflow model URI.

    Raises:
        TrackingUnavailable: the tracking store of params.yaml cannot be reached.
    """
    if model == WORKSPACE:
        return _WorkspaceModel(params.parent)
    import mlflow

    from recfusion.registry.tracking import connect

    uri = load_config(params).registry.tracking_uri
    connect(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.pyfunc.load_model(model)


def read_user_ids(path: Path) -> list[str]:
    """One user id per line (blank lines skipped).

    Raises:
        DataFileError: the file is missing, too large, not text, or has no ids.
    """
    if not path.is_file():
        raise DataFileError(f"{path}: no such file (one user id per line)")
    if path.stat().st_size > MAX_USERS_FILE_BYTES:
        raise DataFileError(f"{path}: larger than {MAX_USERS_FILE_BYTES} bytes; split it")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text (one user id per line)") from e
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataFileError(f"{path}: no user ids (one per line)")
    return ids
