"""The packaged recommender as an MLflow pyfunc model.

The model's one artifact, `workspace`, is a copy of the files the recommender is assembled from
(params.yaml, data/prepared, models/{retrieval,ranking,tags,fusion}); the model is logged from
code (serving/pyfunc_model.py, nothing pickled), which runs against the installed recfusion
package, so the model loads wherever the project is installed:
`mlflow models serve -m models:/recfusion@production --env-manager local`. The workspace carries
a manifest (serving/manifest.py) that loading checks before assembling anything.
"""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import MLMODEL_FILE_NAME, ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Array, ColSpec, Schema

from recfusion.serving.manifest import verify_manifest, write_manifest
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
# the file MLflow runs to build the model at logging and at every load (models from code)
MODEL_CODE = "recfusion.serving.pyfunc_model"
# what the served model needs besides the recfusion package itself (pinned in requirements.lock)
PIP_REQUIREMENTS = ["mlflow", "tensorflow", "tf-keras", "tensorflow-recommenders", "lightgbm",
                    "numpy", "pandas", "pyarrow", "scipy", "pyyaml"]  # fmt: skip


class RecfusionModel(PythonModel):
    """pyfunc wrapper: assembles the Recommender once per process and answers request tables."""

    def load_context(self, context: PythonModelContext) -> None:
        workspace = Path(context.artifacts[ARTIFACT])
        verify_manifest(workspace, model_label(workspace))  # seconds, before minutes of loading
        self.recommender = Recommender.load(workspace)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:  # fmt: skip
        try:
            return self.recommender.recommend(model_input)
        except RequestError as e:
            # an MlflowException reaches an HTTP client as a 400 with this message, any other
            # error as a 400 with a generic one
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e


def model_label(workspace: Path) -> str:
    """What errors call the model whose `workspace` artifact this is: `models:/<model id>` (MLflow
    loads the logged model by that URI) read from the MLmodel file beside `artifacts/`, or the
    folder itself when it is not inside a logged model."""
    model_dir = workspace.parent.parent  # <model>/artifacts/workspace
    if (model_dir / MLMODEL_FILE_NAME).is_file():
        model_id = Model.load(model_dir).model_id
        if model_id:
            return f"models:/{model_id}"
    return str(workspace)


def snapshot_workspace(root: Path, dest: Path) -> Path:
    """Copies the recommender's files (WORKSPACE_PARTS) from project `root` into `dest` and
    writes their manifest there (serving/manifest.py), which loading the model checks.

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
    write_manifest(dest)
    return dest


def model_code_file() -> str:
    """The path of MODEL_CODE's file, which MLflow copies into the model and runs to load it."""
    spec = find_spec(MODEL_CODE)
    assert spec is not None and spec.origin is not None, MODEL_CODE
    return spec.origin


def log_recommender(workspace: Path, input_example: pd.DataFrame) -> ModelInfo:
    """Logs the pyfunc model into the active MLflow run (MLflow runs the example through it)."""
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=model_code_file(),
        artifacts={ARTIFACT: str(workspace)},
        signature=SIGNATURE,
        input_example=input_example,
        pip_requirements=PIP_REQUIREMENTS,
    )


def local_workspace(model_uri: str, dest: Path) -> Path:
    """Downloads a logged or registered recommender and returns its workspace folder, checked
    against its manifest, from which `Recommender.load` assembles it (with another history, e.g.
    to score the test split).

    Raises:
        FileNotFoundError: the model has no workspace artifact.
        WorkspaceMismatch: the workspace's files differ from its manifest (the message names
            `model_uri` and the files).
    """
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))
    found = list(local.glob(f"artifacts/{ARTIFACT}")) or list(local.glob(f"**/{ARTIFACT}"))
    if not found:
        raise FileNotFoundError(f"{model_uri} has no '{ARTIFACT}' artifact: not a recfusion model")
    verify_manifest(found[0], model_uri)
    return found[0]
