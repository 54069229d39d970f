"""End to end: `dvc repro` on the tiny config in a temporary copy of the repository."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.workspace import (
    BIN,
    REGISTRY_STAGES,
    copy_workspace,
    dvc,
    free_port,
    sh,
    stage_names,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(trained_workspace, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the session's trained workspace; this module registers, serves and re-gates."""
    snapshot, env, _ = trained_workspace
    return copy_workspace(snapshot, tmp_path_factory.mktemp("repo")), env


def test_repro_runs_every_stage_then_nothing(workspace, trained_workspace) -> None:
    dest, env = workspace
    trained = trained_workspace[2]  # the shared run of every stage before register
    out = sh(dvc("repro"), dest, env)
    for stage in stage_names(dest):
        ran = out if stage in REGISTRY_STAGES else trained
        assert f"Running stage '{stage}'" in ran, stage
    assert "Running stage 'train_retrieval'" not in out  # the copy is up to date until register
    assert (dest / "reports/validation/raw/index.html").is_file()
    assert (dest / "reports/validation/prepared/index.html").is_file()
    assert (dest / "models/retrieval/user_tower/saved_model.pb").is_file()
    for name in ("retrieval", "ranking", "tags", "search", "fusion", "metrics"):
        assert json.loads((dest / "reports" / f"{name}.json").read_text()), name
    metrics = json.loads((dest / "reports/metrics.json").read_text())
    assert {"fusion:cascade", "fusion:stacking", "source:two_tower"} <= set(metrics["methods"])
    html = (dest / "reports/evaluation.html").read_text()
    assert "<svg" in html and "fusion:cascade" in html
    search = metrics["search"]
    assert search["test_queries"] > 0
    assert set(search["variants"]) == {"lexical", "semantic", "hybrid", "personalised"}
    assert "Search on held-out queries" in html
    found = recfusion(["search", "leather boots", "--k", "3"], dest, env)
    assert len(re.findall(r"^\s*anonymous\s+[123]\s+i\d+", found, re.M)) == 3, found
    # offline scoring of the test split: users known by train + val, one item excluded by file
    import pandas as pd

    user = held_out_user(dest)
    offline = ["recommend", "--user", user, "--k", "5", "--history", "train,val"]
    said = recfusion([*offline, "--out", str(dest / "a.parquet")], dest, env)
    assert "users known by their train+val events" in said, said
    first = pd.read_parquet(dest / "a.parquet")
    assert first["rank"].tolist() == [1, 2, 3, 4, 5]
    pd.DataFrame({"user_id": [user], "item_id": [first["item_id"][0]]}).to_csv(
        dest / "exclude.csv", index=False
    )
    recfusion([*offline, "--exclude", str(dest / "exclude.csv"), "--out", str(dest / "b.csv")],
              dest, env)  # fmt: skip
    second = pd.read_csv(dest / "b.csv", dtype=str)
    assert first["item_id"][0] not in set(second["item_id"]) and len(second) == 5
    # self-contained: nothing is loaded from elsewhere
    assert "src=" not in html and "<link" not in html and "href='http" not in html
    for name in ("users", "items", "events", "queries"):
        assert (dest / "data/raw" / f"{name}.parquet").is_file()
    summary = json.loads((dest / "data/prepared/summary.json").read_text())
    events = summary["tables"]["events"]
    assert events["rows_in"] == events["rows_out"] + events["dropped_total"]
    assert sum(s["events"] for s in summary["splits"].values()) == events["rows_out"]
    again = sh(dvc("repro"), dest, env)
    assert "Data and pipelines are up to date" in again
    shown = json.loads(sh(dvc("metrics", "show", "--json"), dest, env))
    assert shown  # reports/*.json are registered as DVC metrics
    sh(dvc("plots", "show", "-o", str(dest / "dvc_plots")), dest, env)
    assert (dest / "dvc_plots/index.html").is_file()
    sh(dvc("push"), dest, env)
    assert any((dest / "dvcstore").rglob("*")), "dvc push wrote nothing to the local remote"


def test_params_change_reruns_only_affected_stages(workspace) -> None:
    """DVC sees a changed `prepare` param as a change of the stages that list it, not of ingest or
    validate (the stages downstream of prepare rerun because its outputs change, which
    `dvc status` cannot know before running).
    Runs right after the first test, while the copy is up to date."""
    dest, env = workspace
    original = (dest / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["prepare"]["split"]["method"] = "leave_last_n"
    try:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(sh(dvc("status", "--json"), dest, env))
    finally:
        (dest / "params.yaml").write_text(original)
    # prepare reads the key; register logs every params key with the model (dvc.yaml)
    assert set(status) == {"prepare", "register"}, status
    changed = {"changed deps": {"params.yaml": {"prepare": "modified"}}}
    assert status["prepare"] == [changed] and status["register"] == [changed], status
    assert json.loads(sh(dvc("status", "--json"), dest, env)) == {}  # restored: up to date


def recfusion(args: list[str], dest: Path, env: dict[str, str]) -> str:
    return sh([str(BIN / "recfusion"), *args], dest, env)


def texts(path: Path) -> list[str]:
    """A file's text (of every member, for a zip)."""
    import zipfile

    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return [z.read(n).decode("utf-8", "replace") for n in z.namelist()]
    return [path.read_bytes().decode("utf-8", "replace")]


def tokens(path: Path) -> list[str]:
    """The word-like tokens of a file's text (of every member, for a zip)."""
    return [t for text in texts(path) for t in re.findall(r"[\w-]+", text)]


def held_out_user(dest: Path) -> str:
    """A user with events in the test split (the reports name users by pseudonym only)."""
    import pandas as pd

    return str(pd.read_parquet(dest / "data/prepared/test.parquet", columns=["user_id"])
               ["user_id"].iloc[0])  # fmt: skip


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_registry_gate_and_served_model(workspace) -> None:
    """After `dvc repro`: one version the gate moved or refused with reasons; promoted to
    production it is served over HTTP by `mlflow models serve` from the alias; a second run
    is gated against it; rollback puts it back."""
    dest, env = workspace
    gate = json.loads((dest / "reports/gate.json").read_text())
    assert gate["version"] == "1" and gate["champion"] is None
    assert gate["outcome"] == ("staging" if gate["passed"] else "rejected")
    assert gate["passed"] or gate["reasons"]
    assert "# Gate: recfusion version 1" in (dest / "reports/gate.md").read_text()
    listed = recfusion(["registry", "list"], dest, env)
    assert re.search(rf"^1\s+{gate['outcome']}\s+candidate", listed, re.M), listed
    # nothing the run logged names a customer: not the reports and Data Docs people read, not
    # the model's input example, not one file of the registered model (fitted state only: users
    # and their events are in the online store, the user vocabulary is pseudonymised)
    import pandas as pd

    ids = set(pd.read_parquet(dest / "data/prepared/users.parquet")["user_id"].astype(str))
    logged = [p for p in (dest / "mlartifacts").rglob("*") if p.is_file()]
    model_files = [p for p in logged if "workspace" in p.parts]
    assert any(p.name == "evaluation.html" for p in logged) and any(p.name == "input_example.json"
                                                                    for p in logged)  # fmt: skip
    assert any(p.name == "stacker.txt" for p in model_files), "the scan missed the model"
    leaks = {p.name: found for p in logged if (found := ids & set(tokens(p)))}
    assert not leaks, leaks
    # nor a user's demographics: their signup times (one per user, to the second) are nowhere
    signup = pd.read_parquet(dest / "data/prepared/users.parquet")["signup_ts"].dropna()
    stamps = {t.strftime(f) for t in signup for f in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")}
    pattern = re.compile("|".join(re.escape(t) for t in sorted(stamps)))
    seen = {p.name for p in logged if any(pattern.search(text) for text in texts(p))}
    assert stamps and not seen, seen
    assert not [p for p in model_files if "prepared" in p.parts or p.suffix == ".sqlite"]
    tables = [pd.read_parquet(p) for p in model_files if p.suffix == ".parquet"]
    assert tables and not [t.columns for t in tables if "user_id" in t.columns]
    # logged from code (serving/pyfunc_model.py runs at load): no pickled python model
    mlmodels = list((dest / "mlartifacts").rglob("MLmodel"))
    assert mlmodels and not list((dest / "mlartifacts").rglob("python_model.pkl"))
    assert all("model_code_path" in m.read_text() for m in mlmodels), mlmodels
    promote = ["registry", "promote", "1", "--to", "production", "--reason", "e2e"]
    recfusion(promote + ([] if gate["passed"] else ["--force"]), dest, env)

    port = free_port()
    serve_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}"}
    mlflow_bin = str(BIN / "mlflow")
    server = subprocess.Popen([mlflow_bin, "models", "serve", "-m", "models:/recfusion@production",
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                              cwd=dest, env=serve_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 240
        while True:
            assert server.poll() is None, f"mlflow models serve exited: {server.stderr.read()}"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "the served model did not come up within 240 s"
            time.sleep(2)
        user = held_out_user(dest)
        body = {"dataframe_records": [{"user_id": user, "k": 5, "exclude": []},
                                      {"user_id": "never-seen", "k": 2, "exclude": []}]}  # fmt: skip
        status, answer = post(f"{url}/invocations", json.dumps(body).encode())
        assert status == 200, answer
        rows = answer["predictions"]
        assert [r["rank"] for r in rows if r["user_id"] == user] == [1, 2, 3, 4, 5]
        assert all(r["reason"] and r["item_id"] for r in rows)
        assert [r["reason"] for r in rows if r["user_id"] == "never-seen"] == [
            "popular right now"] * 2  # fmt: skip
        # search rows: every row carries every column (MLflow's schema check)
        body = {"dataframe_records": [
            {"user_id": user, "k": 4, "query": "leather boots", "exclude": []},
            {"user_id": "anonymous", "k": 3, "query": "jacekts", "exclude": []},
            {"user_id": user, "k": 2, "query": "", "exclude": []}]}  # fmt: skip
        status, answer = post(f"{url}/invocations", json.dumps(body).encode())
        assert status == 200, answer
        rows = answer["predictions"]
        assert len(rows) == 4 + 3 + 2
        personal = json.loads((dest / "reports/search.json").read_text())["personal_weight"] > 0
        assert ("ordered for your taste" in rows[0]["reason"]) == personal  # chosen on validation
        assert all("taste" not in r["reason"] for r in rows[4:7])  # anonymous: not personalised
        assert all("words" in r["reason"] for r in rows[:7])
        assert all(r["reason"] for r in rows[7:])  # an empty query is a recommendation
        limit = yaml.safe_load((dest / "params.yaml").read_text())["serving"]["max_query_chars"]
        too_long = {"user_id": user, "k": 3, "query": "x" * (limit + 1)}
        status, answer = post(
            f"{url}/invocations", json.dumps({"dataframe_records": [too_long]}).encode()
        )
        assert status == 400 and f"at most {limit}" in answer["message"], answer
        for bad, message in [({"dataframe_records": [{"user_id": user, "k": 1000}]}, "k must be"),
                             ({"dataframe_records": [{"k": 3}]}, "user_id"),
                             # MLflow's schema check: a list column must be a list in every row
                             ({"dataframe_records": [{"user_id": user, "k": 3, "exclude": ["i"]},
                                                     {"user_id": user, "k": 3}]}, "exclude"),
                             ("{not json", "")]:  # fmt: skip
            raw = bad.encode() if isinstance(bad, str) else json.dumps(bad).encode()
            status, answer = post(f"{url}/invocations", raw)
            assert 400 <= status < 500, (bad, status, answer)
            assert message in answer.get("message", ""), answer
    finally:
        server.terminate()
        server.wait(timeout=30)

    # a second version (another serving setting: only register and gate rerun, the flow tests
    # retrain with another fusion method) is gated against production on the same test users
    # ... first with the tracking store unreachable: a clear failure, nothing registered
    original = (dest / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["serving"]["max_rows"] = 999
    params["registry"]["tracking_uri"] = "http://127.0.0.1:9"
    try:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = subprocess.run(dvc("repro"), cwd=dest, env=env, capture_output=True, text=True)
        assert proc.returncode != 0
        assert "tracking store http://127.0.0.1:9 is unreachable" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr
        params["registry"]["tracking_uri"] = "sqlite:///mlflow.db"
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        listed = recfusion(["registry", "list"], dest, env)
        assert re.search(r"^1\s", listed, re.M) and not re.search(r"^2\s", listed, re.M)
        out = sh(dvc("repro"), dest, env)  # the retry
        assert "Running stage 'register'" in out and "Running stage 'gate'" in out
        assert "Running stage 'evaluate'" not in out
    finally:
        (dest / "params.yaml").write_text(original)
    second = json.loads((dest / "reports/gate.json").read_text())
    assert second["version"] == "2" and second["champion"] == "1"
    assert set(second["production"]) == set(second["candidate"])
    # every drop check has its paired interval; the gain interval is the primary metric's
    drops = second["drop_intervals"]
    assert {"ndcg@10", "recall@10", "cold_start=warm"} <= set(drops)
    assert (
        all(lo <= hi for lo, hi in drops.values()) and second["gain_interval"] == drops["ndcg@10"]
    )
    recfusion(["registry", "promote", "2", "--to", "production", "--reason", "e2e"]
              + ([] if second["passed"] else ["--force"]), dest, env)  # fmt: skip
    assert "back on version 1" in recfusion(["registry", "rollback"], dest, env)
    history = recfusion(["registry", "history"], dest, env)
    assert history.count("production") >= 3, history


def test_bad_params_stop_with_a_clear_message(workspace) -> None:
    dest, env = workspace
    params = (dest / "params.yaml").read_text()
    try:
        (dest / "params.yaml").write_text(params.replace("dedup_events:", "dedupe_events:"))
        proc = subprocess.run([sys.executable, "-m", "recfusion.stages.prepare"], cwd=dest,
                              env=env, capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2
        assert "unknown key 'prepare.dedupe_events'" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        (dest / "params.yaml").write_text(params)
