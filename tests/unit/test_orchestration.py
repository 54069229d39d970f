"""The orchestration helpers: form fields -> params override, the override applied for one run
and put back, the checkout lock, and the UI tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from recfusion.config import ConfigError
from recfusion.orchestration import reports
from recfusion.orchestration.dvc_stage import PipelineBusy, pipeline_lock
from recfusion.orchestration.overrides import flatten, overridden_params, training_overrides
from recfusion.registry.tracking import resolve_uri
from tests.conftest import PARAMS


def test_form_fields_become_a_nested_override() -> None:
    out = training_overrides(size="tiny", epochs=3, fusion_method="weighted",
                             min_ndcg_at_10=0.07, require_significant_gain=False,
                             extra={"seed": 7, "fusion": {"per_source": 50}})  # fmt: skip
    assert out == {
        "seed": 7,
        "ingest": {"synthetic": {"size": "tiny"}},
        "train": {"retrieval": {"epochs": 3}},
        "fusion": {"per_source": 50, "method": "weighted"},
        "registry": {"gate": {"floors": {"ndcg@10": 0.07}, "require_significant_gain": False}},
    }
    assert training_overrides() == {}
    assert flatten(out)["registry.gate.floors.ndcg@10"] == 0.07


def test_override_is_applied_for_the_run_then_put_back(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    before = params.read_text()
    with overridden_params(params, {"fusion": {"method": "rrf"}}) as cfg:
        assert cfg.fusion.method == "rrf"
        during = params.read_text()
        assert yaml.safe_load(during)["fusion"]["method"] == "rrf"
        assert "# the packaged recommender" in during  # comments survive the edit
    assert params.read_text() == before


def test_bad_override_fails_before_touching_params(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    before = params.read_text()
    with (pytest.raises(ConfigError, match="fusion.methd"),
          overridden_params(params, {"fusion": {"methd": "rrf"}})):  # fmt: skip
        pass
    with (pytest.raises(ConfigError, match="must be one of"),
          overridden_params(params, {"fusion": {"method": "magic"}})):  # fmt: skip
        pass
    assert params.read_text() == before


def test_params_are_put_back_when_the_run_fails(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PARAMS, params)
    before = params.read_text()
    with pytest.raises(RuntimeError, match="stage failed"), overridden_params(params, {"seed": 1}):
        raise RuntimeError("stage failed")
    assert params.read_text() == before


def test_second_run_in_one_checkout_is_refused(tmp_path: Path) -> None:
    with (pipeline_lock(tmp_path), pytest.raises(PipelineBusy, match="another pipeline run"),
          pipeline_lock(tmp_path)):  # fmt: skip
        pass
    with pipeline_lock(tmp_path):  # released after the first run
        pass


def test_report_tables() -> None:
    summary = {"suites": {"events": {"success": False, "docs": "validations/e.html",
                                     "failed": [{"expectation": "in_set(event_type)"}],
                                     "rows_in": 10, "rows_clean": 8, "rows_quarantined": 2}}}  # fmt: skip
    (row,) = reports.validation_rows(summary, Path("/r/reports/raw"), Path("/r"))
    assert row["failed expectations"] == "in_set(event_type)" and row["quarantined"] == 2
    assert row["data docs"] == "`reports/raw/validations/e.html`"  # code: no __x__ as bold
    passed = {"suites": {"users": {"success": True, "docs": "v/__none__/u.html"}}}
    (row,) = reports.validation_rows(passed, Path("/r/reports/raw"), Path("/r"))
    # no cell is a bare "-" (a Markdown bullet in the UI's table)
    assert row["failed expectations"] == "none" and row["rows in"] == "n/a"
    assert row["data docs"] == "`reports/raw/v/__none__/u.html`"
    stages = reports.stage_rows([("ingest", "skipped", 0.42), ("register", "ran", 12.34)])
    assert [r["status"].split(":")[0] for r in stages] == ["skipped", "ran"]
    assert stages[1] == {"stage": "register", "status": "ran", "seconds": 12.3}
    gate = {"version": "2", "passed": False, "outcome": "rejected", "reasons": ["drop ndcg@10"],
            "candidate": {"ndcg@10": 0.1, "recall@10": 0.2},
            "production": {"ndcg@10": 0.12, "recall@10": 0.2}}  # fmt: skip
    rows = reports.metric_rows(gate)
    assert rows[0] == {"metric": "ndcg@10", "candidate": 0.1, "production": 0.12, "delta": -0.02}
    assert reports.metric_rows({**gate, "production": None})[0]["delta"] == "n/a"
    assert reports.gate_markdown(gate, "# report").startswith(
        "**Version 2 was REJECTED** -> `rejected`\n- drop ndcg@10")  # fmt: skip
    links = reports.mlflow_links({"experiment_id": "1", "run_id": "abc", "model_name": "m",
                                  "version": "3"}, "http://127.0.0.1:5000/")  # fmt: skip
    view = "?workflowType=machine_learning"  # the model-training view, not GenAI's overview
    assert links == {"run": f"http://127.0.0.1:5000/#/experiments/1/runs/abc{view}",
                     "evaluation": "http://127.0.0.1:5000/#/experiments/1/runs/abc/artifactPath/"
                                   f"reports/evaluation.html{view}",
                     "version": f"http://127.0.0.1:5000/#/models/m/versions/3{view}"}  # fmt: skip


def test_relative_sqlite_store_resolves_under_the_project(tmp_path: Path) -> None:
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_project_dir_from_env_or_nearest_dvc_yaml(tmp_path: Path, monkeypatch) -> None:
    from recfusion.orchestration.dvc_stage import project_dir

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "flows").mkdir()
    monkeypatch.delenv("RECFUSION_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "flows")
    assert project_dir() == tmp_path.resolve()
    monkeypatch.setenv("RECFUSION_PROJECT_DIR", "/somewhere/else")
    assert project_dir() == Path("/somewhere/else")
    monkeypatch.delenv("RECFUSION_PROJECT_DIR")
    monkeypatch.chdir(tmp_path.parent)
    if not any((p / "dvc.yaml").is_file() for p in (tmp_path.parent, *tmp_path.parent.parents)):
        with pytest.raises(FileNotFoundError, match="no dvc.yaml"):
            project_dir()


def test_make_ui_waits_for_every_deployment_it_serves() -> None:
    """`make ui` says ready only when the deployments flows/serve.py serves exist: the names it
    waits for are exactly those."""
    from flows.serve import deployments

    from recfusion.orchestration.ui import DEPLOYMENTS

    assert sorted(f"{d.flow_name}/{d.name}" for d in deployments()) == sorted(DEPLOYMENTS)


def test_the_training_form_starts_from_params_yaml_and_only_changes_override() -> None:
    """The train deployment's form shows params.yaml's values; submitted unchanged, they
    override nothing (no params edit, no DVC experiment); a changed field overrides its key."""
    from flows.serve import deployments

    from recfusion.config_parse import read_yaml
    from recfusion.orchestration.overrides import changed_only, form_defaults

    params = read_yaml(PARAMS)
    defaults = form_defaults(params)
    assert defaults["fusion_method"] == params["fusion"]["method"]
    assert defaults["min_ndcg_at_10"] == params["registry"]["gate"]["floors"]["ndcg@10"]
    assert set(defaults) == {
        "source", "size", "epochs", "embedding_dim", "fusion_method", "auto_promote",
        "min_ndcg_at_10", "max_ndcg_drop", "require_significant_gain"}  # fmt: skip
    train = next(d for d in deployments() if d.name == "train")
    assert train.parameters == {**defaults, "overrides": {}}
    assert changed_only(training_overrides(**defaults), params) == {}
    other = "rrf" if params["fusion"]["method"] != "rrf" else "borda"
    asked = training_overrides(**{**defaults, "fusion_method": other})
    assert changed_only(asked, params) == {"fusion": {"method": other}}


def test_make_ui_links_the_experiment_s_training_runs() -> None:
    """MLflow 3 opens an experiment on its GenAI overview: make ui links the training-runs table
    of the pipeline's experiment, found by name, or the front page when there is none yet."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from recfusion.orchestration.ui import mlflow_runs_url

    class Store(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            known = "experiment_name=recfusion" in self.path
            self.send_response(200 if known else 404)
            self.end_headers()
            if known:
                self.wfile.write(json.dumps({"experiment": {"experiment_id": "7"}}).encode())

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ui = f"http://127.0.0.1:{server.server_port}"
    try:
        assert mlflow_runs_url(ui, "recfusion") == (
            f"{ui}/#/experiments/7/runs?workflowType=machine_learning")  # fmt: skip
        assert mlflow_runs_url(ui, "other") == ui
    finally:
        server.shutdown()
    assert mlflow_runs_url("http://127.0.0.1:9", "recfusion") == "http://127.0.0.1:9"
