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
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.workspace import copy_workspace, free_port

pytestmark = pytest.mark.slow

EASY_GATE = {"registry": {"gate": {"floors": {"ndcg@10": 0.0, "recall@10": 0.0,
                                              "coverage@10": 0.0}}}}  # fmt: skip


@contextmanager
def prefect_server(home: Path, module: str = "recfusion.orchestration.prefect_server"):
    """A Prefect server as `make ui` starts it (`python -m MODULE server start`, here without the
    UI; its services record task runs from their events), on a free port with its own SQLite
    database; yields its API URL, set as this process's Prefect API while it runs."""
    import httpx
    import prefect.context
    import prefect.settings

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_API_URL": api,
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}"}  # fmt: skip
    output = home / "server.log"
    server = subprocess.Popen([sys.executable, "-m", module, "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env,
                              stdout=output.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, f"the Prefect server exited: {output.read_text()}"
            try:
                if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "the Prefect server did not start within 180 s"
            time.sleep(1)
        with ExitStack() as stack:
            stack.enter_context(prefect.settings.temporary_settings(
                updates={prefect.settings.PREFECT_API_URL: api}))  # fmt: skip
            stack.enter_context(prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()))  # fmt: skip
            yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def project(trained_workspace, tmp_path_factory: pytest.TempPathFactory):
    snapshot, env, _ = trained_workspace
    dest = copy_workspace(snapshot, tmp_path_factory.mktemp("flows"))
    saved = {k: os.environ.get(k) for k in ("RECFUSION_PROJECT_DIR", "PATH")}
    os.environ["RECFUSION_PROJECT_DIR"] = str(dest)
    os.environ["PATH"] = env["PATH"]
    with prefect_server(tmp_path_factory.mktemp("prefect")) as api:
        os.environ["RECFUSION_TEST_PREFECT_API"] = api
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


async def task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: r.state.name for r in runs if r.state is not None}


def test_training_flow_runs_every_stage_and_publishes_reports(project: Path) -> None:
    from flows.training import training

    params_before = (project / "params.yaml").read_text()
    state = training(overrides=EASY_GATE, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["version"] == "1" and result["outcome"] == "staging"
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    # the snapshot is up to date but for register and gate: DVC skips the rest, and the UI says so
    states = asyncio.run(task_states(state.state_details.flow_run_id))
    assert states == {s: "Completed" if s in ("register", "gate") else "Skipped" for s in stages}
    assert result["ran"] == ["register", "gate"]
    arts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {"validation-raw", "validation-prepared", "evaluation-metrics", "gate-decision",
            "mlflow-run", "model-version", "evaluation-report", "pipeline-stages"} <= set(arts)  # fmt: skip
    shown = {r["stage"]: r["status"].split(":")[0] for r in json.loads(arts["pipeline-stages"])}
    assert shown == {s: "ran" if s in ("register", "gate") else "skipped" for s in stages}
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
            # a form field and a free override, both read only by register and gate (another
            # fusion method would rerun fuse and evaluate too, a minute more of this test)
            run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"min_ndcg_at_10": 0.0, "overrides": {"serving": {"max_rows": 999}}},
            )
            await runner.start(run_once=True)  # picks the run up, runs it in a subprocess
            return await client.read_flow_run(run.id)

    run = asyncio.run(go())
    assert run.state.is_completed(), run.state
    assert run.parameters["min_ndcg_at_10"] == 0.0
    mv = registry(project).get_model_version("recfusion", "2")
    params = registry(project).get_run(mv.run_id).data.params
    assert params["serving.max_rows"] == "999"
    assert params["registry.gate.floors.ndcg_at_10"] == "0.0"
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


def resume_while_others_write(api: str, runs: int = 12, writers: int = 3) -> list[tuple[int, str]]:
    """Pauses `runs` flow runs, then resumes each with one plain POST (no retry: the UI's Resume
    button) while `writers` threads commit log batches of another run as fast as they can (a
    training run's stage output); returns each resume's HTTP status and orchestration status."""
    import httpx

    http = httpx.Client(base_url=api, timeout=120)
    flow = http.post("/flows/", json={"name": "resume-under-load"}).json()["id"]
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    paused = []
    for _ in range(runs + 1):
        run = http.post("/flow_runs/", json={"flow_id": flow}).json()["id"]
        state = {"type": "PAUSED", "name": "Paused",
                 "state_details": {"pause_timeout": until, "pause_reschedule": False}}  # fmt: skip
        answer = http.post(f"/flow_runs/{run}/set_state", json={"state": state, "force": True})
        assert answer.status_code in (200, 201), answer.text
        paused.append(run)
    training = paused.pop()
    stop = threading.Event()

    written: list[int] = []

    def write_logs() -> None:
        with httpx.Client(base_url=api, timeout=120) as c:
            while not stop.is_set():
                now = datetime.now(UTC).isoformat()
                written.append(c.post("/logs/", json=[
                    {"name": "dvc", "level": 20, "message": f"line {i}", "timestamp": now,
                     "flow_run_id": training} for i in range(50)]).status_code)  # fmt: skip

    threads = [threading.Thread(target=write_logs) for _ in range(writers)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        answers = [resume(http, run) for run in paused]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    # the writers were not starved either: every log batch was stored
    assert written and set(written) == {201}, sorted(set(written))
    return answers


def resume(http, run: str) -> tuple[int, str]:
    import httpx

    try:
        answer = http.post(f"/flow_runs/{run}/resume", json={})
    except httpx.TransportError as e:  # the plain server dropped the connection on the lock
        return 0, repr(e)
    return answer.status_code, answer.json().get("status", answer.text)


def test_a_reviewer_s_resume_is_not_lost_while_a_training_run_writes(project: Path) -> None:
    """The promotion flow pauses for a reviewer; a training run meanwhile streams its stages'
    output into the same server. Every Resume click (one request, no retry, as the UI sends it)
    must be accepted: Prefect's plain server answered some of them 503 "database is locked"."""
    answers = resume_while_others_write(os.environ["RECFUSION_TEST_PREFECT_API"])
    assert answers == [(201, "ACCEPT")] * len(answers), answers


def test_a_multi_worker_stage_runs_one_task_per_worker(project: Path, trained_workspace,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """train_retrieval with `train.distribute: multi_worker` through the training flow's
    tasks: the DVC task is the chief, a second task runs worker 1, and dvc.lock records the
    run (DVC finds the stage up to date afterwards)."""
    from flows.training import run_multi_worker
    from prefect import flow

    from recfusion.orchestration.dvc_stage import stage_env, stage_is_stale

    dest = copy_workspace(trained_workspace[0], tmp_path)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(distribute="multi_worker", workers=2)
    params["train"]["retrieval"]["epochs"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**stage_env(), "RECFUSION_PROJECT_DIR": str(dest)}
    assert stage_is_stale(dest, "train_retrieval", env)

    @flow(name="multi-worker-stage")
    def one_stage():
        return run_multi_worker(dest, "train_retrieval", env, 2)

    state = one_stage(return_state=True)
    assert state.is_completed(), state.message
    tasks = asyncio.run(task_states(state.state_details.flow_run_id))
    assert tasks == {"train_retrieval": "Completed", "train_retrieval worker 1": "Completed"}
    report = json.loads((dest / "reports/retrieval.json").read_text())
    assert report["devices"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert report["devices"]["workers"] == 2
    assert not stage_is_stale(dest, "train_retrieval", env)
