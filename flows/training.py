"""Training flow: one Prefect task per dvc.yaml stage, in dvc.yaml's order.

Each task runs `dvc repro --single-item STAGE` (recfusion.orchestration.dvc_stage), so DVC
decides what is stale and records the run in dvc.lock exactly as `dvc repro` does. The form's
fields override params.yaml for this run only; a run with overrides is saved as a DVC
experiment named after the flow run (`dvc exp show`, `dvc exp apply NAME` to reproduce).
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.states import Completed, State

from recfusion.config import FusionMethod, IngestSource, load_config
from recfusion.config_parse import read_yaml
from recfusion.data.io import read_json
from recfusion.models.workers import local_hosts, worker_env
from recfusion.orchestration import reports
from recfusion.orchestration.dvc_stage import (
    StageFailed,
    pipeline_lock,
    pipeline_stages,
    project_dir,
    run_stage,
    stage_env,
    stage_is_stale,
)
from recfusion.orchestration.overrides import (
    changed_only,
    flatten,
    overridden_params,
    training_overrides,
)

# where a retry can help: reading input files, the tracking store
RETRIES = {"ingest": 1, "register": 2, "gate": 2}
# the stages `train.distribute: multi_worker` runs as several processes, one task each
MULTI_WORKER_STAGES = ("train_retrieval", "train_ranking")
WORKER_GRACE_SECONDS = 60
SKIPPED = "Skipped"  # the state name of a stage DVC found up to date
MLFLOW_UI = os.environ.get("RECFUSION_MLFLOW_UI", "http://127.0.0.1:5000")


@task(cache_policy=NONE, task_run_name="{name} worker {index}")
def stage_worker(root: Path, name: str, index: int, env: dict[str, str],
                 chief: dict[str, threading.Event]) -> None:  # fmt: skip
    """Worker `index` of a multi-worker training stage (`env` holds its TF_CONFIG), beside the
    chief that DVC runs. A worker that fails stops the chief (`chief["abort"]`: it would wait
    for the worker forever). Once the chief has ended (`chief["done"]`), a worker still running
    gets WORKER_GRACE_SECONDS to finish, then is stopped (a chief that failed before the
    cluster formed would leave it waiting forever); none when DVC did not run the stage
    (`chief["skipped"]`: it restored the outputs from its run cache), which is no failure."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", f"recfusion.stages.{name}"]
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:  # fmt: skip

        def stop_after_chief() -> None:
            chief["done"].wait()
            try:
                proc.wait(timeout=0 if chief["skipped"].is_set() else WORKER_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()

        threading.Thread(target=stop_after_chief, daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                logger.info(line.rstrip())
        code = proc.wait()
    if code != 0 and chief["skipped"].is_set():
        logger.info("DVC did not run %s (its outputs came from the run cache): worker stopped",
                    name)  # fmt: skip
    elif code != 0:
        chief["abort"].set()
        raise StageFailed(f"stage '{name}' worker {index} failed (exit {code})")


def run_multi_worker(root: Path, name: str, env: dict[str, str], workers: int) -> State:
    """A training stage with `train.distribute: multi_worker`: one Prefect task per worker.
    The chief is the DVC task (it writes the outputs dvc.lock records); workers 1.. run the
    stage's module with their TF_CONFIG on 127.0.0.1, started only when DVC will run it."""
    if not stage_is_stale(root, name, env):
        return stage(root, name, env, return_state=True)
    hosts = local_hosts(workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    chief = {"done": threading.Event(), "abort": threading.Event(), "skipped": threading.Event()}
    futures = [stage_worker.submit(root, name, i, {**env, **worker_env(hosts, i, threads)},
                                   chief) for i in range(1, workers)]  # fmt: skip
    state = None
    try:
        state = stage(root, name, {**env, **worker_env(hosts, 0, threads)}, chief["abort"],
                      return_state=True)  # fmt: skip
    finally:
        if state is not None and state.name == SKIPPED:
            chief["skipped"].set()
        chief["done"].set()
    for future in futures:
        future.wait()
    failed = [f.state for f in futures if not f.state.is_completed()]
    return failed[0] if state.is_completed() and failed else state


@task(cache_policy=NONE, task_run_name="{name}")
def stage(root: Path, name: str, env: dict[str, str],
          abort: threading.Event | None = None) -> bool | State:  # fmt: skip
    """One pipeline stage through DVC; its output streams into the task's log. A stage DVC
    found up to date ends in a Completed state named Skipped (the UI shows it as such).
    Setting `abort` stops it."""
    if run_stage(root, name, env, get_run_logger().info, abort):
        return True
    return Completed(name=SKIPPED, message="up to date: DVC found no changed dependency",
                     data=False)  # fmt: skip


def publish_validation(root: Path) -> None:
    for part in ("raw", "prepared"):
        folder = root / "reports" / "validation" / part
        if (folder / "summary.json").is_file():
            create_table_artifact(reports.validation_rows(read_json(folder / "summary.json"), folder,
                                                          root),
                                  key=f"validation-{part}",
                                  description=f"GX result per suite ({part}); Data Docs: "
                                              f"{(folder / 'index.html').resolve().as_uri()}")  # fmt: skip


def publish_stages(outcomes: list[tuple[str, str, float]]) -> None:
    create_table_artifact(reports.stage_rows(outcomes), key="pipeline-stages",
                          description="what each dvc.yaml stage did in this run")  # fmt: skip


def publish_results(root: Path) -> None:
    gate = read_json(root / "reports" / "gate.json")
    register = read_json(root / "reports" / "register.json")
    create_table_artifact(reports.metric_rows(gate), key="evaluation-metrics",
                          description="test metrics of the candidate vs production")  # fmt: skip
    gate_md = (root / "reports" / "gate.md").read_text(encoding="utf-8")
    create_markdown_artifact(reports.gate_markdown(gate, gate_md), key="gate-decision")
    links = reports.mlflow_links(register, MLFLOW_UI)
    create_link_artifact(links["run"], "MLflow run", key="mlflow-run")
    create_link_artifact(links["version"], f"{register['model_name']} version {register['version']}",
                         key="model-version")  # fmt: skip
    create_link_artifact(links["evaluation"], "evaluation report (MLflow artifact)",
                         key="evaluation-report")  # fmt: skip


def save_experiment(root: Path, env: dict[str, str], name: str, overrides: dict) -> None:
    dvc = str(Path(sys.executable).parent / "dvc")
    message = "flow overrides: " + ", ".join(f"{k}={v}" for k, v in flatten(overrides).items())
    done = subprocess.run([dvc, "exp", "save", "-f", "-n", name, "-m", message], cwd=root,
                          env=env, capture_output=True, text=True)  # fmt: skip
    log = get_run_logger()
    if done.returncode == 0:
        log.info("saved as DVC experiment %s (%s)", name, message)
    else:  # the run itself succeeded; say why it is not recorded as an experiment
        log.warning("could not save DVC experiment %s: %s", name, done.stderr.strip()[-500:])


@flow(name="recfusion-training")
def training(
    source: IngestSource | None = None,
    size: Literal["tiny", "small", "medium", "large", "xl"] | None = None,
    epochs: int | None = None,
    embedding_dim: int | None = None,
    fusion_method: FusionMethod | None = None,
    auto_promote: Literal["staging", "production"] | None = None,
    min_ndcg_at_10: float | None = None,
    max_ndcg_drop: float | None = None,
    require_significant_gain: bool | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole pipeline, stage by stage. The form starts from params.yaml's values; a field
    left as it is (or emptied) keeps params.yaml's value.

    Args:
        source: where the data comes from (ingest.source).
        size: size of the built-in synthetic shop (ingest.synthetic.size).
        epochs: most epochs of the two-tower retrieval model (train.retrieval.epochs).
        embedding_dim: size of the user and item embeddings (train.retrieval.embedding_dim).
        fusion_method: the packaged recommender's fusion (fusion.method).
        auto_promote: where a candidate that passes the gate goes (registry.gate.auto_promote).
        min_ndcg_at_10: the gate's floor on NDCG@10 (registry.gate.floors).
        max_ndcg_drop: the largest NDCG@10 drop against production (registry.gate.max_drop).
        require_significant_gain: the gate demands a bootstrap gain above zero.
        overrides: any other params.yaml keys, nested as in the file,
            e.g. {"fusion": {"per_source": 50}}.
    """
    root = project_dir()
    asked = training_overrides(source, size, epochs, embedding_dim, fusion_method, auto_promote,
                               min_ndcg_at_10, max_ndcg_drop, require_significant_gain, overrides)  # fmt: skip
    # the form shows params.yaml's values (flows/serve.py): only what differs overrides it
    wanted = changed_only(asked, read_yaml(root / "params.yaml"))
    log = get_run_logger()
    log.info("project %s; overrides %s", root, flatten(wanted) or "none")
    # register names and tags its MLflow run after the flow run
    env = stage_env(
        {
            "RECFUSION_FLOW_RUN_ID": str(flow_run.id or ""),
            "RECFUSION_FLOW_RUN_NAME": str(flow_run.name or ""),
        }
    )
    with pipeline_lock(root), overridden_params(root / "params.yaml", wanted):
        outcomes: list[tuple[str, str, float]] = []
        train = load_config(root / "params.yaml").train  # with this run's overrides
        for name in pipeline_stages(root / "dvc.yaml"):
            task_ = stage.with_options(retries=RETRIES.get(name, 0), retry_delay_seconds=5)
            start = time.monotonic()
            if name in MULTI_WORKER_STAGES and train.distribute == "multi_worker":
                state = run_multi_worker(root, name, env, train.workers)
            else:
                state = task_(root, name, env, return_state=True)
            status = ("failed" if not state.is_completed()
                      else "skipped" if state.name == SKIPPED else "ran")  # fmt: skip
            outcomes.append((name, status, time.monotonic() - start))
            if status == "failed":
                publish_stages(outcomes)
                if name.startswith("validate"):
                    publish_validation(root)  # show what failed before failing the run
                state.result()  # raises the stage's StageFailed: the run fails with it
            if name == "validate_prepared":
                publish_validation(root)
        publish_stages(outcomes)
        publish_results(root)
        if wanted:
            save_experiment(root, env, str(flow_run.name or "flow-run"), wanted)
    gate = read_json(root / "reports" / "gate.json")
    return {"ran": [n for n, status, _ in outcomes if status == "ran"], "version": gate["version"], "outcome": gate["outcome"],
            "overrides": flatten(wanted)}  # fmt: skip


if __name__ == "__main__":
    training()
