"""The packaged recommender as an MLflow pyfunc model.

The model's one artifact, `workspace`, is a copy of the files the recommender is assembled from
(params.yaml, data/prepared, models/{retrieval,ranking,tags,fusion}); the code comes from the
installed recfusion package, so the model loads wherever the project is installed:
`mlflow models serve -m models:/recfusion@production --env-manager local`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Array, ColSpec, Schema

from recfusion.serving.recommender import WORKSPACE_PARTS, Recommender, RequestError

ARTIFACT = "workspace"
MODEL_NAME_IN_RUN = "recommender"
SIGNATURE = ModelSignature(
    inputs=Schema([
        ColSpec("string", "user_id"),
        ColSpec("long", "k"),
        ColSpec("string", "query", required=False),
        ColSpec(Array("string"), "exclude", required=False),
    ]),
    outputs=Schema([
        ColSpec("string", "user_id"),
        ColSpec("long", "rank"),
        ColSpec("string", "item_id"),
        ColSpec("double", "score"),
        ColSpec("string", "reason"),
    ]),
)  # fmt: skip
# what the served model needs besides the recfusion package itself (pinned in requirements.lock)
PIP_REQUIREMENTS = ["mlflow", "tensorflow", "tf-keras", "tensorflow-recommenders", "lightgbm",
                    "numpy", "pandas", "pyarrow", "scipy", "pyyaml"]  # fmt: skip


class RecfusionModel(PythonModel):
    """pyfunc wrapper: assembles the Recommender once per process and answers request tables."""

    def load_context(self, context: PythonModelContext) -> None:
        self.recommender = Recommender.load(Path(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:  # fmt: skip
        try:
            return self.recommender.recommend(model_input)
        except RequestError as e:
            # an MlflowException reaches an HTTP client as a 400 with this message, any other
            # error as a 400 with a generic one
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e


def snapshot_workspace(root: Path, dest: Path) -> Path:
    """Copies the recommender's files (WORKSPACE_PARTS) from project `root` into `dest`.

    Raises:
        FileNotFoundError: a part is missing (the pipeline has not run up to `fuse`).
    """
    for part in WORKSPACE_PARTS:
        src = root / part
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: run `dvc repro` up to the fuse stage")
        target = dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
    return dest


def log_recommender(workspace: Path, input_example: pd.DataFrame) -> ModelInfo:
    """Logs the pyfunc model into the active MLflow run (MLflow runs the example through it)."""
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=RecfusionModel(),
        artifacts={ARTIFACT: str(workspace)},
        signature=SIGNATURE,
        input_example=input_example,
        pip_requirements=PIP_REQUIREMENTS,
    )


def local_workspace(model_uri: str, dest: Path) -> Path:
    """Downloads a logged or registered recommender and returns its workspace folder, from which
    `Recommender.load` assembles it (with another history, e.g. to score the test split)."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))
    found = list(local.glob(f"artifacts/{ARTIFACT}")) or list(local.glob(f"**/{ARTIFACT}"))
    if not found:
        raise FileNotFoundError(f"{model_uri} has no '{ARTIFACT}' artifact: not a recfusion model")
    return found[0]
