"""The Prefect flows against Prefect's test harness (a real temporary server), on a copy of the
session's trained workspace at the tiny size (tests/workspace.py: DVC has run every stage before
`register`, so the flow's tasks skip those through DVC and run register and gate): the training
flow end to end, a deployment run triggered through the API with parameters, the promotion flow's
pause and resume, and a failing validation that fails the run and registers nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.workspace import copy_workspace

pytestmark = pytest.mark.slow

EASY_GATE = {"registry": {"gate": {"floors": {"ndcg@10": 0.0, "recall@10": 0.0,
                                              "coverage@10": 0.0}}}}  # fmt: skip


@pytest.fixture(scope="module")
def project(trained_workspace, tmp_path_factory: pytest.TempPathFactory):
    from prefect.testing.utilities import prefect_test_harness

    snapshot, env, _ = trained_workspace
    dest = copy_workspace(snapshot, tmp_path_factory.mktemp("flows"))
    saved = {k: os.environ.get(k) for k in ("RECFUSION_PROJECT_DIR", "PATH")}
    os.environ["RECFUSION_PROJECT_DIR"] = str(dest)
    os.environ["PATH"] = env["PATH"]
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machine
    with prefect_test_harness(server_startup_timeout=180):
        yield dest
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def registry(dest: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{dest / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def versions(dest: Path) -> list[str]:
    if not (dest / "mlflow.db").exists():
        return []
    return sorted(
        str(v.version) for v in registry(dest).search_model_versions("name = 'recfusion'")
    )


async def artifacts_of(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in found}


async def flow_run_name(flow_run_id) -> str:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).name


async def task_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [r.name for r in runs]


def test_training_flow_runs_every_stage_and_publishes_reports(project: Path) -> None:
    from flows.training import training

    params_before = (project / "params.yaml").read_text()
    state = training(overrides=EASY_GATE, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["version"] == "1" and result["outcome"] == "staging"
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    assert sorted(asyncio.run(task_names(state.state_details.flow_run_id))) == sorted(stages)
    arts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {"validation-raw", "validation-prepared", "evaluation-metrics", "gate-decision",
            "mlflow-run", "model-version", "evaluation-report"} <= set(arts)  # fmt: skip
    table = json.loads(arts["validation-raw"])
    assert {r["suite"] for r in table} == {"users", "items", "events", "queries"}
    assert all(r["data docs"].startswith("`reports/validation/raw/") for r in table)
    assert "Version 1 passed" in str(arts["gate-decision"])
    assert "/#/models/recfusion/versions/1" in str(arts["model-version"])
    # the overrides were for this run only, and the run is a DVC experiment named after it
    assert (project / "params.yaml").read_text() == params_before
    name = asyncio.run(flow_run_name(state.state_details.flow_run_id))
    dvc = str(Path(sys.executable).parent / "dvc")
    listed = subprocess.run([dvc, "exp", "list", "--all-commits"], cwd=project,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert name in listed, listed
    tags = registry(project).get_model_version("recfusion", "1").tags
    assert tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)


def test_deployment_run_through_the_api_applies_overrides(project: Path) -> None:
    from flows.training import training
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    params_before = (project / "params.yaml").read_text()

    async def go():
        runner = Runner(name="test-runner", query_seconds=1)
        deployment_id = await runner.aadd_flow(training, name="train")
        async with get_client() as client:  # what the UI's "Run" form does
            run = await client.create_flow_run_from_deployment(
                deployment_id, parameters={"fusion_method": "weighted", "overrides": EASY_GATE}
            )
            await runner.start(run_once=True)  # picks the run up, runs it in a subprocess
            return await client.read_flow_run(run.id)

    run = asyncio.run(go())
    assert run.state.is_completed(), run.state
    assert run.parameters["fusion_method"] == "weighted"
    mv = registry(project).get_model_version("recfusion", "2")
    params = registry(project).get_run(mv.run_id).data.params
    assert params["fusion.method"] == "weighted"
    gate = json.loads((project / "reports/gate.json").read_text())
    assert gate["version"] == "2" and gate["champion"] is None  # nothing in production yet
    assert (project / "params.yaml").read_text() == params_before  # the override was for one run


def test_promotion_flow_pauses_for_review_then_moves_production(project: Path) -> None:
    from flows.promotion import promotion
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateName as StateName
    from prefect.flow_runs import resume_flow_run

    from recfusion.registry import moves

    for version, decision in (("1", True), ("2", False)):
        outcome: dict[str, object] = {}
        thread = threading.Thread(target=lambda v=version, out=outcome: out.update(
            state=promotion(version=v, return_state=True)))  # fmt: skip
        thread.start()

        async def paused():
            async with get_client() as client:
                flt = FlowRunFilter(state=FlowRunFilterState(name=StateName(any_=["Paused"])))
                return await client.read_flow_runs(flow_run_filter=flt)

        deadline = time.time() + 120
        while not (runs := asyncio.run(paused())):
            assert time.time() < deadline, "the promotion flow never paused"
            time.sleep(1)
        resume_flow_run(runs[0].id, run_input={"approve": decision, "comment": f"v{version} ok?",
                                               "reviewer": "alice"})  # fmt: skip
        thread.join(timeout=120)
        assert outcome["state"].is_completed(), outcome["state"]  # type: ignore[attr-defined]
    client = registry(project)
    assert moves.holder(client, "recfusion", "production") == "1"
    assert moves.status_of(client, "recfusion", "2") == "rejected"
    last_two = moves.history(client, "recfusion")[-2:]
    assert [(m.version, m.kind, m.user) for m in last_two] == [
        ("1", "move", "alice"), ("2", "review-rejected", "alice")]  # fmt: skip


def test_failing_validation_fails_the_run_and_registers_nothing(project: Path) -> None:
    from flows.training import training

    before = versions(project)
    state = training(overrides={"validation": {"max_drift_kl": 0.0}}, return_state=True)
    assert state.is_failed(), state
    assert "validate_prepared" in str(state.message) or "validate_prepared" in repr(
        state.result(raise_on_failure=False))  # fmt: skip
    assert versions(project) == before
