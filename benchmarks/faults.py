"""Faults injected for real into throwaway copies of the project: what each does to a run, how
fast the user gets a clear message, and whether anything is lost (issue 20 item 7).

1. Build (reused when --workdir already holds it): a copy of the project made by the e2e tests'
   helper (tests/workspace.py `copy_repo`: git ls-files, git-initialised) at the --preset size
   (`default`: params.yaml as it is; `tiny`: the e2e tests' size), then `dvc repro` of every
   stage but register and gate. Each fault runs in its own copy of that snapshot; the faults
   that need a registered model share one copy where `dvc repro register` has run, and leave it
   as they found it.
2. The faults (--faults picks some; a log line as each starts and ends):
   kill-training      SIGKILL `python -m recfusion.stages.train_retrieval` once it logs
                      "retrieval epoch 1:", then run it again: it must resume and complete.
   tracking-down      the register stage with registry.tracking_uri (what register and gate
                      read; MLFLOW_TRACKING_URI is set too) on a closed 127.0.0.1 port: a clear
                      error in seconds, no traceback, no new version or run in the registry.
   artifact-missing   one file deleted from the registered version's workspace in the artifact
                      store, then `recfusion recommend --model models:/recfusion/<version>`:
                      the error must name the file (serving/manifest.py); the file is put back.
   two-repros         a second `dvc repro` while the first runs register: DVC's lock must
                      refuse it, the first must complete, nothing lost.
   worker-killed      `mlflow models serve -w 2` (`make serve`'s command, by version rather
                      than @production), clients sending requests in a loop, one worker
                      SIGKILLed: failed requests, time to the next answer, time to a new worker.
   online-store-down  `recfusion serve --workers 2` under load, the SQLite store file renamed away
                      for 10 s and back: 503s with a clear message meanwhile, answers again
                      after, every accepted event in the store and the log once.
3. Results: benchmarks/results/faults.json (faults run before at the same preset and not run
   again are kept); README.md's reliability section is rewritten from it.

    python benchmarks/faults.py [--preset default|tiny] [--faults kill-training two-repros ...]
    python benchmarks/faults.py --readme     # only rewrite README.md's section from the JSON
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO))  # the copies are built as the e2e tests build theirs
from tests.workspace import (  # noqa: E402
    BIN,
    REGISTRY_STAGES,
    copy_repo,
    copy_workspace,
    dvc,
    free_port,
    sh,
    stage_names,
    tool_env,
)

from common import RESULTS, write_result  # noqa: E402

log = logging.getLogger("faults")
README = REPO / "README.md"
START, END = "<!-- faults:start -->", "<!-- faults:end -->"
MESSAGE_CHARS = 300  # a message is cut to this many characters
TABLES = ("users", "items", "events", "queries")  # in data/raw, data/validated, data/quarantine
CLEAR_SECONDS = 60.0  # a message later than this is a hang, not a clear failure
RECOVERY_SECONDS = 600.0  # the longest wait for uvicorn to replace a killed worker
# children flush each line as it happens (a reader waits for some), without TensorFlow's noise
QUIET = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "DO_NOT_TRACK": "true"}
# the folders and marker a Bench creates under its root (all that --fresh removes)
CREATED = ("snapshot", "snapshot.json", "registered", "kill_training", "two_repros")


@dataclass(frozen=True)
class Bench:
    """Where the copies live, and how to run things in them."""

    root: Path  # this preset's folder under --workdir
    env: dict[str, str]  # the venv's tools first on PATH, a git identity, QUIET
    timeout: float  # seconds any one command may take

    @property
    def snapshot(self) -> Path:
        """The copy where every stage but register and gate has run."""
        return self.root / "snapshot"

    def clear(self) -> None:
        for name in CREATED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()

    def fresh_copy(self, name: str) -> Path:
        """A new copy of the snapshot for one fault (an older one is removed first)."""
        dest = self.root / name
        shutil.rmtree(dest, ignore_errors=True)
        return copy_workspace(self.snapshot, dest)

    def registered(self) -> Path:
        """The copy where `dvc repro register` has run: built on first use, then shared."""
        dest = self.root / "registered"
        if not (dest / "reports/register.json").is_file():
            log.info("registering a model in %s", dest)
            shutil.rmtree(dest, ignore_errors=True)
            copy_workspace(self.snapshot, dest)
            sh(dvc("repro", "register"), dest, self.env, timeout=int(self.timeout))
        return dest


# -- running and watching processes --


class Watched:
    """A child process whose output (stdout and stderr merged) a thread reads line by line,
    stamping each line with the time it arrived, so that the caller can wait for a line."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[tuple[float, str]] = []
        self.ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # Popen(stdout=PIPE)
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append((time.perf_counter(), line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(
        self, pattern: str, timeout: float, after: int = 0
    ) -> tuple[int, float, re.Match[str]] | None:
        """The first line from index `after` on that matches `pattern`, as (its index, the time
        it arrived, the match); None when the output ends or `timeout` passes first."""
        regex = re.compile(pattern)
        deadline = time.perf_counter() + timeout
        i = after
        with self._changed:
            while True:
                while i < len(self.lines):
                    at, line = self.lines[i]
                    if found := regex.search(line):
                        return i, at, found
                    i += 1
                left = deadline - time.perf_counter()
                if self.ended or left <= 0:
                    return None
                self._changed.wait(left)

    def finish(self, timeout: float) -> int | None:
        """Waits for the process to exit: its exit code, or None when `timeout` passed (it is
        stopped then)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Ends the process, then whatever it started and left running, each by its id."""
        import psutil

        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=60)
        for child in family:
            if child.is_running():
                child.kill()
        self._reader.join(timeout=10)

    def text(self) -> str:
        with self._changed:
            return "\n".join(line for _, line in self.lines)


@dataclass(frozen=True)
class Finished:
    code: int | None  # exit code; None: stopped after the timeout (a hang)
    seconds: float
    output: str  # stdout, then stderr


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Finished:
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        # the captured output is bytes here whatever `text` says (subprocess docs)
        parts = [
            p.decode(errors="replace") if isinstance(p, bytes) else p or ""
            for p in (e.stdout, e.stderr)
        ]
        return Finished(None, time.perf_counter() - t, "".join(parts))
    return Finished(proc.returncode, time.perf_counter() - t, proc.stdout + proc.stderr)


def pick_message(output: str, pattern: str, lines_after: int = 0) -> str:
    """The first line of `output` that matches `pattern` (with the `lines_after` non-blank
    lines after it), else its last non-blank line, cut to MESSAGE_CHARS."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    if not found:
        return (lines[-1] if lines else "(no output)")[:MESSAGE_CHARS]
    return " ".join(lines[found[0] : found[0] + 1 + lines_after])[:MESSAGE_CHARS]


def name_outcome(done: Finished, clear: bool) -> str:
    if done.code is None:
        return "hang"
    if done.code == 0:
        return "no error"
    return "clear error" if clear else "unclear error"


# -- what "nothing lost" is checked against --


def count_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows) if path.is_file() else 0


def check_rows(ws: Path) -> tuple[bool, str]:
    """Whether every raw row is in data/validated or data/quarantine, table by table."""
    counts = {
        t: [
            count_rows(ws / "data" / d / f"{t}.parquet") for d in ("raw", "validated", "quarantine")
        ]
        for t in TABLES
    }
    ok = all(raw == clean + held for raw, clean, held in counts.values())
    shown = ", ".join(f"{t} {raw} = {clean} + {held}" for t, (raw, clean, held) in counts.items())
    return ok, f"rows in data/raw = data/validated + data/quarantine: {ok} ({shown})"


def hash_tree(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes under `folder`."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def read_registry_params(ws: Path) -> dict[str, Any]:
    return yaml.safe_load((ws / "params.yaml").read_text())["registry"]


def open_registry(ws: Path) -> Any:
    """An MlflowClient on the copy's SQLite store (tracking and registry)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{ws / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def read_registry(ws: Path) -> dict[str, Any]:
    """The copy's registry: each version of the model with its status (READY unless it is
    half-registered) and the number of runs in the pipeline's experiment."""
    if not (ws / "mlflow.db").is_file():  # a client would create it
        return {"versions": {}, "runs": 0}
    from mlflow.entities import ViewType

    rc = read_registry_params(ws)
    client = open_registry(ws)
    found = client.search_model_versions(f"name = '{rc['model_name']}'")
    versions = {str(v.version): str(v.status) for v in sorted(found, key=lambda v: int(v.version))}
    exp = client.get_experiment_by_name(rc["experiment"])
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL) if exp else []
    return {"versions": versions, "runs": len(runs)}


def cut_short(done: str, outcome: str, message: str, passed: bool | None = None) -> dict[str, Any]:
    """The record of a fault that could not be carried out to the end."""
    return {
        "what_was_done": done,
        "outcome": outcome,
        "seconds_to_clear_message": None,
        "message": message,
        "data_lost": None,
        "passed": passed,
    }


def describe_loss(ok: bool, how: str) -> str:
    """The `data_lost` entry: "none: <how it was checked>", or what the check found."""
    return f"none: {how}" if ok else f"NOT none: {how}"


# -- the faults --


def kill_training(bench: Bench) -> dict[str, Any]:
    ws = bench.fresh_copy("kill_training")
    cmd = [sys.executable, "-m", "recfusion.stages.train_retrieval"]  # dvc.yaml's cmd
    done = (
        "SIGKILL to `python -m recfusion.stages.train_retrieval` once it logged 'retrieval "
        "epoch 1:', then the same command again"
    )
    uninterrupted = json.loads((ws / "reports/retrieval.json").read_text())["epochs"]
    data_before = hash_tree(ws / "data")
    first = Watched(cmd, ws, bench.env)
    epoch = first.wait_for(r"retrieval epoch 1:", bench.timeout)
    if epoch is None:
        first.stop()
        return cut_short(done, "no epoch logged", pick_message(first.text(), r"ERROR"), False)
    os.kill(first.proc.pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    first.finish(60)
    checkpoints = ws / ".recfusion/checkpoints/train_retrieval"
    left_by_kill = any(p.is_file() for p in checkpoints.rglob("*"))
    second = Watched(cmd, ws, bench.env)
    resumed = second.wait_for(r"resuming after epoch (\d+)", bench.timeout)
    code = second.finish(bench.timeout)
    rerun_seconds = time.perf_counter() - second.started
    completed = code == 0 and (ws / "models/retrieval/user_tower/saved_model.pb").is_file()
    epochs = (
        json.loads((ws / "reports/retrieval.json").read_text())["epochs"] if completed else None
    )
    after = int(resumed[2].group(1)) if resumed else 0
    same_data = hash_tree(ws / "data") == data_before
    rows_ok, rows = check_rows(ws)
    if completed:
        outcome = "resumed" if resumed else "restarted from scratch"
    else:
        outcome = "hang" if code is None else "failed"
    return {
        "what_was_done": done,
        "outcome": outcome,
        # from the kill until the run started again says it resumes
        "seconds_to_clear_message": round(resumed[1] - killed_at, 1) if resumed else None,
        "message": resumed[2].string[:MESSAGE_CHARS]
        if resumed
        else pick_message(second.text(), r"ERROR"),
        "data_lost": describe_loss(
            after >= 1 and same_data and rows_ok,
            f"resumed after epoch {after} (the epoch finished before the kill was kept); "
            f"data/ byte-identical before and after: {same_data}; {rows}",
        ),
        "passed": completed and after >= 1 and same_data and rows_ok,
        "details": {
            "epoch_1_logged_after_s": round(epoch[1] - first.started, 1),
            "checkpoint_left_by_the_kill": left_by_kill,
            "rerun_exit_code": code,
            "rerun_seconds": round(rerun_seconds, 1),
            "checkpoints_removed_after": not any(p.is_file() for p in checkpoints.rglob("*")),
            # tests/model/test_resume.py asserts exact equality; here it is only recorded
            "same_epochs_as_the_uninterrupted_run": epochs == uninterrupted if epochs else None,
        },
    }


def unplug_tracking(bench: Bench) -> dict[str, Any]:
    ws = bench.registered()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["registry"]["tracking_uri"] = url
    unreachable = ws / "params.unreachable.yaml"
    unreachable.write_text(yaml.safe_dump(params, sort_keys=False))
    record = (ws / "reports/register.json").read_bytes()
    before = read_registry(ws)
    cmd = [sys.executable, "-m", "recfusion.stages.register", "--params", unreachable.name]
    try:
        # the stage reads registry.tracking_uri; the variable too, so that nothing falls back
        # to a store that works
        done = run_timed(cmd, ws, {**bench.env, "MLFLOW_TRACKING_URI": url}, bench.timeout)
    finally:
        unreachable.unlink()
    after = read_registry(ws)
    message = pick_message(done.output, r"ERROR recfusion")
    clear = "Traceback" not in done.output and "unreachable" in message and url in message
    unchanged = before == after and all(s == "READY" for s in after["versions"].values())
    same_record = (ws / "reports/register.json").read_bytes() == record
    rows_ok, rows = check_rows(ws)
    return {
        "what_was_done": f"`python -m recfusion.stages.register` with registry.tracking_uri "
        f"{url} (a closed port) in its params file, and MLFLOW_TRACKING_URI the same",
        "outcome": name_outcome(done, clear),
        "seconds_to_clear_message": round(done.seconds, 1),
        "message": message,
        "data_lost": describe_loss(
            unchanged and same_record and rows_ok,
            f"registry versions (status) before {before['versions']}, after "
            f"{after['versions']}; runs before {before['runs']}, after {after['runs']}; "
            f"reports/register.json unchanged: {same_record}; {rows}",
        ),
        "passed": done.code not in (0, None)
        and clear
        and done.seconds <= CLEAR_SECONDS
        and unchanged
        and same_record,
        "details": {"exit_code": done.code, "traceback_in_output": "Traceback" in done.output},
    }


def find_model_workspace(ws: Path, version: str) -> Path:
    """The artifact store's folder of registered `version`'s workspace: the folder with the
    MANIFEST.json, two levels under the MLmodel file that names the logged model."""
    name = read_registry_params(ws)["model_name"]
    model_id = open_registry(ws).get_model_version(name, version).model_id
    found = [m.parent for m in (ws / "mlartifacts").rglob("workspace/MANIFEST.json")]
    for folder in found:
        mlmodel = folder.parent.parent / "MLmodel"  # <model>/artifacts/workspace
        if mlmodel.is_file() and yaml.safe_load(mlmodel.read_text()).get("model_id") == model_id:
            return folder
    if len(found) == 1:
        return found[0]
    raise RuntimeError(f"no one workspace of version {version} in {ws / 'mlartifacts'}: {found}")


def delete_artifact(bench: Bench) -> dict[str, Any]:
    from recfusion.serving.manifest import MANIFEST, WorkspaceMismatch, verify_manifest

    ws = bench.registered()
    version = json.loads((ws / "reports/register.json").read_text())["version"]
    uri = f"models:/{read_registry_params(ws)['model_name']}/{version}"
    folder = find_model_workspace(ws, version)
    listed = sorted(json.loads((folder / MANIFEST).read_text())["files"])
    # the file serving/manifest.py's docstring names, else the first model file
    victim = next((f for f in listed if f == "models/fusion/stacker.txt"), None) or next(
        (f for f in listed if f.startswith("models/")), listed[0]
    )
    before = read_registry(ws)
    aside = ws / "faults-removed" / Path(victim).name
    aside.parent.mkdir(exist_ok=True)
    shutil.move(folder / victim, aside)
    cmd = [str(BIN / "recfusion"), "recommend", "--user", "u-faults", "--k", "5", "--model", uri]
    try:
        done = run_timed(cmd, ws, bench.env, bench.timeout)
    finally:
        shutil.move(aside, folder / victim)
    message = pick_message(done.output, r"ERROR recfusion|^recfusion:")
    clear = victim in message and "Traceback" not in done.output
    try:
        verify_manifest(folder, uri)
        verifies = True
    except WorkspaceMismatch:
        verifies = False
    after = read_registry(ws)
    kept = before == after and after["versions"].get(version) == "READY"
    return {
        "what_was_done": f"deleted {victim} from {uri}'s workspace in the artifact store, then "
        f"`recfusion recommend --model {uri}`; the file was put back after",
        "outcome": name_outcome(done, clear),
        "seconds_to_clear_message": round(done.seconds, 1),
        "message": message,
        "data_lost": describe_loss(
            kept and verifies,
            f"nothing but the deleted file: the registry still lists {after['versions']} "
            f"(before: {before['versions']}); with the file put back the workspace matches "
            f"its {MANIFEST} again: {verifies}",
        ),
        "passed": done.code not in (0, None)
        and clear
        and done.seconds <= CLEAR_SECONDS
        and kept
        and verifies,
        "details": {"exit_code": done.code, "deleted": victim},
    }


def is_up_to_date(ws: Path, env: dict[str, str], timeout: float) -> bool:
    """Whether `dvc status` finds every stage's outputs as dvc.lock records them."""
    proc = subprocess.run(
        dvc("status", "--json"), cwd=ws, env=env, capture_output=True, text=True, timeout=timeout
    )
    try:
        return proc.returncode == 0 and json.loads(proc.stdout) == {}
    except ValueError:
        return False


def run_two_repros(bench: Bench) -> dict[str, Any]:
    ws = bench.fresh_copy("two_repros")
    done = (
        "`dvc repro` (register and gate left to run) and, once it was running stage register, "
        "a second `dvc repro` in the same workspace"
    )
    first = Watched(dvc("repro"), ws, bench.env)
    running = first.wait_for(r"Running stage 'register'", bench.timeout)
    if running is None:
        first.stop()
        why = "the first `dvc repro` did not reach stage register: "
        return cut_short(done, "not run", why + pick_message(first.text(), r"ERROR"), None)
    second = run_timed(dvc("repro"), ws, bench.env, bench.timeout)
    overlapped = first.proc.poll() is None  # the first still ran when the second had ended
    code = first.finish(bench.timeout)
    first_seconds = time.perf_counter() - first.started
    up_to_date = is_up_to_date(ws, bench.env, bench.timeout)
    state = read_registry(ws)
    recorded = (
        json.loads((ws / "reports/register.json").read_text())["version"] if code == 0 else None
    )
    one_version = state["versions"] == {"1": "READY"} and recorded == "1"
    rows_ok, rows = check_rows(ws)
    # DVC refuses with its repo lock ("Unable to acquire lock") or, when the first run holds
    # the outputs, with its output lock ("... is busy, it is being blocked by:" and the
    # blocking process's PID and command on the next line)
    locks = ("Unable to acquire lock", "is busy, it is being blocked by")
    refused = second.code not in (0, None) and any(lock in second.output for lock in locks)
    if refused:
        outcome = "refused"
    else:
        outcome = "ran concurrently" if second.code == 0 else name_outcome(second, False)
    return {
        "what_was_done": done,
        "outcome": outcome,
        "seconds_to_clear_message": round(second.seconds, 1),
        "message": pick_message(second.output, r"ERROR", lines_after=1),
        "data_lost": describe_loss(
            code == 0 and up_to_date and one_version and rows_ok,
            f"the first run exited {code}; `dvc status` up to date after it: {up_to_date}; "
            f"registry {state['versions']}, one READY version that reports/register.json "
            f"names: {one_version}; {rows}",
        ),
        "passed": refused
        and overlapped
        and second.seconds <= CLEAR_SECONDS
        and code == 0
        and up_to_date
        and one_version
        and rows_ok,
        "details": {
            "second_exit_code": second.code,
            "first_exit_code": code,
            "first_still_running_when_the_second_ended": overlapped,
            "first_seconds": round(first_seconds, 1),
        },
    }


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    ok: bool
    detail: str  # the HTTP status, or the error the client got


def ask(url: str, body: bytes) -> tuple[bool, str]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            r.read()
            return r.status == 200, str(r.status)
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"
    except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut short
        return False, f"{type(e).__name__}: {e}"


def send_requests(url: str, users: list[str], stop: threading.Event, answers: list[Answer]) -> None:
    """One closed-loop client: single-user recommendation requests, one after another."""
    i = 0
    while not stop.is_set():
        row = {"user_id": users[i % len(users)], "k": 10, "query": "", "exclude": []}
        sent = time.perf_counter()
        ok, detail = ask(url, json.dumps({"dataframe_records": [row]}).encode())
        answers.append(Answer(sent, time.perf_counter(), ok, detail))
        i += 1


def stop_all(stop: threading.Event, clients: list[threading.Thread], server: Watched) -> None:
    """Stops the client threads (each finishes its request in flight), then the server."""
    stop.set()
    for t in clients:
        if t.is_alive():
            t.join(timeout=60)
    server.stop()


def find_workers(server: Watched) -> list[int]:
    """The uvicorn workers under `mlflow models serve`: its multiprocessing-spawn children (the
    uvicorn supervisor and multiprocessing's resource tracker are not workers)."""
    import psutil

    found = []
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(found)


def kill_worker(bench: Bench, clients: int = 2, steady: float = 10.0) -> dict[str, Any]:
    """Fault worker-killed: a worker of a 2-worker model server SIGKILLed under load.

    Args:
        clients: closed-loop clients sending requests.
        steady: seconds of load before the kill (and half as many once the replacement started).
    """
    import pandas as pd

    ws = bench.registered()
    version = json.loads((ws / "reports/register.json").read_text())["version"]
    uri = f"models:/{read_registry_params(ws)['model_name']}/{version}"
    port = free_port()
    done = (
        f"`mlflow models serve -m {uri} --env-manager local --host 127.0.0.1 -w 2`, {clients} "
        f"clients sending requests in a loop, one worker SIGKILLed after {steady:.0f} s"
    )
    users = pd.read_parquet(ws / "data/prepared/users.parquet", columns=["user_id"])["user_id"]
    sample = users.astype(str).head(200).tolist()
    env = {**bench.env, "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}"}
    serve = ["models", "serve", "-m", uri, "--env-manager", "local", "--host", "127.0.0.1"]
    cmd = [str(BIN / "mlflow"), *serve, "-p", str(port), "-w", "2"]  # `make serve`, 2 workers
    started = r"Started server process \[(\d+)\]"  # uvicorn, once a worker has loaded the app
    server = Watched(cmd, ws, env)
    stop = threading.Event()
    answers: list[Answer] = []
    threads = [
        threading.Thread(
            target=send_requests,
            args=(f"http://127.0.0.1:{port}/invocations", sample, stop, answers),
        )
        for _ in range(clients)
    ]
    try:
        first = server.wait_for(started, bench.timeout)
        second = server.wait_for(started, bench.timeout, first[0] + 1) if first else None
        workers = find_workers(server)
        if second is None or len(workers) != 2:
            why = f"the server did not come up with 2 workers ({len(workers)} found): "
            return cut_short(done, "not run", why + pick_message(server.text(), r"ERROR|Error"))
        for t in threads:
            t.start()
        time.sleep(steady)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.perf_counter()
        died = server.wait_for(rf"Child process \[{victim}\] died", 60, second[0] + 1)
        replaced = None
        after = second[0] + 1
        while found := server.wait_for(started, RECOVERY_SECONDS, after):
            if int(found[2].group(1)) not in workers:
                replaced = found
                break
            after = found[0] + 1
        time.sleep(steady / 2)  # the replacement takes requests too
        workers_after = find_workers(server)
    finally:
        stop_all(stop, threads, server)
    before = [a for a in answers if a.received < killed_at]  # answered before the kill
    window = [a for a in answers if a.received >= killed_at]  # incl. those in flight at it
    failed = [a for a in window if not a.ok]
    next_ok = min((a.received for a in window if a.ok and a.sent >= killed_at), default=None)
    answering = next_ok is not None and len(failed) <= clients  # only requests in flight fail
    recovered = replaced is not None and len(workers_after) == 2
    calm_before = all(a.ok for a in before)
    if answering:
        outcome = "kept answering" if recovered else "kept answering, worker not replaced"
    else:
        outcome = "stopped answering"
    seen = failed[0].detail if failed else died[2].string if died else "no request failed"
    return {
        "what_was_done": done,
        "outcome": outcome,
        # from the kill until a request sent after it was answered
        "seconds_to_clear_message": round(next_ok - killed_at, 1) if next_ok else None,
        "message": seen[:MESSAGE_CHARS],
        "data_lost": describe_loss(
            calm_before,
            f"the server holds no state; {len(failed)} of {len(window)} requests answered after "
            f"the kill failed: those in flight on the killed worker (a client has at most one), "
            f"which the client must retry; {sum(not a.ok for a in before)} of {len(before)} "
            "failed before it",
        ),
        "passed": answering and recovered and calm_before,
        "details": {
            "workers": 2,
            "clients": clients,
            "worker_replaced_after_s": round(replaced[1] - killed_at, 1) if replaced else None,
            "supervisor_line": died[2].string[:MESSAGE_CHARS] if died else None,
            "failed_requests": [a.detail[:MESSAGE_CHARS] for a in failed],
        },
    }


def send_events(url: str, users: list[str], items: list[str], stop: threading.Event,
                answers: list[Answer], sent_events: list[tuple[str, str, bool]]) -> None:  # fmt: skip
    """One closed-loop client posting one click at a time; records each event and whether the
    server accepted it."""
    i = 0
    while not stop.is_set():
        event = {"user_id": users[i % len(users)], "item_id": items[i % len(items)],
                 "event_type": "click"}  # fmt: skip
        sent = time.perf_counter()
        ok, detail = ask(url, json.dumps({"events": [event]}).encode())
        answers.append(Answer(sent, time.perf_counter(), ok, detail))
        sent_events.append((event["user_id"], event["item_id"], ok))
        i += 1


def stop_online_store(bench: Bench, outage: float = 10.0, steady: float = 8.0) -> dict[str, Any]:
    """Fault online-store-down: the SQLite store file taken away (renamed) for `outage` seconds
    while `recfusion serve --workers 2` answers two recommendation clients and one event client,
    then put back.

    Passed when every request during the outage got a clear 503 (no 500, no hang), answers came
    back once the store did, and every event the server accepted is in the store and the event
    log exactly once while every refused one is in neither (the client retries those).
    """
    import sqlite3

    import pandas as pd

    ws = bench.fresh_copy("store-down")
    store = ws / "data/online/store.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    done = (f"`recfusion serve --model workspace --workers 2`, two clients asking for "
            f"recommendations and one posting clicks in a loop; after {steady:.0f} s the store "
            f"file renamed away for {outage:.0f} s, then back")  # fmt: skip
    users = pd.read_parquet(ws / "data/prepared/users.parquet", columns=["user_id"])["user_id"]
    sample = users.astype(str).head(200).tolist()
    items = pd.read_parquet(ws / "data/prepared/items.parquet", columns=["item_id"])["item_id"]

    def stored() -> int:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
            n = int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        con.close()
        return n

    before_events = stored()
    server = Watched([str(BIN / "recfusion"), "serve", "--model", "workspace", "--workers", "2",
                      "--port", str(port)], ws, bench.env)  # fmt: skip
    stop = threading.Event()
    answers: list[Answer] = []
    event_answers: list[Answer] = []
    sent_events: list[tuple[str, str, bool]] = []
    threads = [threading.Thread(target=send_requests, args=(f"{url}/invocations", sample, stop,
                                                            answers)) for _ in range(2)]  # fmt: skip
    threads.append(
        threading.Thread(
            target=send_events,
            args=(
                f"{url}/events",
                sample,
                items.astype(str).tolist(),
                stop,
                event_answers,
                sent_events,
            ),
        )
    )
    try:
        deadline = time.perf_counter() + bench.timeout
        while not ask(f"{url}/invocations", json.dumps({"dataframe_records": [
                {"user_id": sample[0], "k": 1}]}).encode())[0]:  # fmt: skip
            if server.proc.poll() is not None or time.perf_counter() > deadline:
                return cut_short(done, "not run", "the server did not come up: "
                                 + pick_message(server.text(), r"Error|error"))  # fmt: skip
            time.sleep(1)
        for t in threads:
            t.start()
        time.sleep(steady)
        away = store.with_name(store.name + ".away")
        store.rename(away)
        down_at = time.perf_counter()
        time.sleep(outage)
        away.rename(store)
        back_at = time.perf_counter()
        time.sleep(steady)
    finally:
        stop_all(stop, threads, server)
    every = answers + event_answers
    during = [a for a in every if a.sent >= down_at + 0.5 and a.received <= back_at]
    in_outage_ok = bool(during) and all(a.detail.startswith("HTTP 503") for a in during)
    first_503 = min((a.received for a in every if a.detail.startswith("HTTP 503")), default=None)
    next_ok = min((a.received for a in answers if a.ok and a.sent >= back_at), default=None)
    errors = [a.detail for a in every if a.detail.startswith("HTTP 5") and
              not a.detail.startswith("HTTP 503")]  # fmt: skip
    accepted = [(u, i) for u, i, ok in sent_events if ok]
    refused = [(u, i) for u, i, ok in sent_events if not ok]
    log_files = list((ws / "data/live/events").rglob("*.parquet"))
    logged = (pd.concat([pd.read_parquet(f) for f in log_files]) if log_files
              else pd.DataFrame({"user_id": [], "item_id": []}))  # fmt: skip
    in_log = sorted(zip(logged["user_id"].astype(str), logged["item_id"].astype(str), strict=True))
    exact = stored() - before_events == len(accepted) and in_log == sorted(accepted)
    passed = in_outage_ok and next_ok is not None and not errors and exact
    message = next((a.detail for a in every if a.detail.startswith("HTTP 503")), "no 503 seen")
    return {
        "what_was_done": done,
        "outcome": "503 during the outage, answering again after" if passed else "see details",
        "seconds_to_clear_message": round(first_503 - down_at, 1) if first_503 else None,
        "message": message[:MESSAGE_CHARS],
        "data_lost": describe_loss(
            exact,
            f"{len(accepted)} events accepted, each in the store and the event log once; "
            f"{len(refused)} refused with a 503 during the outage, in neither (the client "
            "retries them)",
        ),
        "passed": passed,
        "details": {
            "requests_during_outage": len(during),
            "all_503_during_outage": in_outage_ok,
            "answering_again_after_s": round(next_ok - back_at, 1) if next_ok else None,
            "other_5xx": errors[:5],
        },
    }


FAULTS: dict[str, tuple[str, Callable[[Bench], dict[str, Any]]]] = {
    "kill-training": ("training killed after an epoch, then run again", kill_training),
    "tracking-down": ("MLflow tracking store unreachable at register", unplug_tracking),
    "artifact-missing": ("a file missing from a registered model", delete_artifact),
    "two-repros": ("two `dvc repro` at once in one workspace", run_two_repros),
    "worker-killed": ("a serving worker killed under load", kill_worker),
    "online-store-down": ("the online store down during serving", stop_online_store),
}


# -- build, results, README --


def build_snapshot(bench: Bench, preset: str) -> dict[str, Any]:
    """The copy with every stage but register and gate run; reused when `bench.root` holds one
    (the marker snapshot.json records how it was built)."""
    marker = bench.root / "snapshot.json"
    if marker.is_file():
        return {**json.loads(marker.read_text()), "reused": True}
    bench.clear()
    bench.snapshot.mkdir(parents=True)
    copy_repo(bench.snapshot)  # git ls-files, git-initialised, at the e2e tests' tiny size
    if preset == "default":
        shutil.copy2(REPO / "params.yaml", bench.snapshot / "params.yaml")
        commit = ["git", "commit", "-qam", "params.yaml as in the project", "--allow-empty"]
        sh(commit, bench.snapshot, bench.env)
    targets = [s for s in stage_names(bench.snapshot) if s not in REGISTRY_STAGES]
    t = time.perf_counter()
    sh(dvc("repro", *targets), bench.snapshot, bench.env, timeout=int(bench.timeout))
    built = {"preset": preset, "pipeline_seconds": round(time.perf_counter() - t, 1)}
    marker.write_text(json.dumps(built))
    return {**built, "reused": False}


def merge_faults(new: list[dict[str, Any]], preset: str) -> list[dict[str, Any]]:
    """`new`, and the faults of the last results at the same preset that were not run again,
    in FAULTS order."""
    path = RESULTS / "faults.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    kept = {f["id"]: f for f in old.get("faults", []) if old.get("preset") == preset}
    kept.update({f["id"]: f for f in new})
    return [kept[k] for k in FAULTS if k in kept]


def render_readme_section(result: dict[str, Any]) -> str:
    """What goes between README.md's faults markers: the fault table of faults.json."""
    m = result["machine"]
    lines = [
        f"Generated by `python benchmarks/faults.py --preset {result['preset']}` "
        f"({m['date']}, {m['cpus']} CPUs); what was done and how each check was made: "
        "`benchmarks/results/faults.json`.",
        "",
        "| fault | outcome | time to clear message | data lost |",
        "|---|---|---|---|",
    ]
    for f in result["faults"]:
        outcome = f["outcome"] + (" (check failed)" if f["passed"] is False else "")
        seconds = f["seconds_to_clear_message"]
        shown = "-" if seconds is None else f"{seconds:.1f} s"
        data = "-" if f["data_lost"] is None else f["data_lost"].split(":")[0]
        lines.append(f"| {f['fault']} | {outcome} | {shown} | {data} |")
    killed = next((f for f in result["faults"] if f["id"] == "worker-killed"), None)
    if killed and killed.get("details", {}).get("workers"):
        d = killed["details"]
        lines += [
            "",
            f"Killing a serving worker loses no data (the server holds none), but the "
            f"{len(d['failed_requests'])} request(s) in flight on it failed and are the "
            f"client's to retry; the other worker answered at once, and a new worker was up "
            f"after {d['worker_replaced_after_s']} s.",
        ]
    fuzz_file = RESULTS / "fuzz_http.json"
    if fuzz_file.is_file():  # the fuzz run of benchmarks/fuzz_http.py, said beside the faults
        fuzz = json.loads(fuzz_file.read_text())
        lines += [
            "",
            f"Fuzzed with Schemathesis from the server's OpenAPI schema "
            f"(`python benchmarks/fuzz_http.py`, {fuzz['machine']['date']}): "
            f"{fuzz['requests']:,} generated requests, valid and invalid, to `recfusion serve`; "
            f"{fuzz['server_errors']} answered with a 5xx.",
        ]
    return "\n".join(lines)


def write_readme(section: str, readme: Path = README) -> None:
    """Replaces what lies between the faults markers of `readme` with `section`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks the markers {START} ... {END} (in this order)")
    readme.write_text(f"{text[: start + len(START)]}\n{section}\n{text[end:]}")


def inject(key: str, bench: Bench) -> dict[str, Any]:
    """Runs fault `key` and returns its entry; an error of the benchmark itself (not of the
    fault's outcome) is recorded as such, so that the other faults still run."""
    title, fault = FAULTS[key]
    log.info("fault %s: %s ...", key, title)
    try:
        entry = fault(bench)
    except Exception as e:  # noqa: BLE001 - recorded in the results, with the log's traceback
        log.exception("fault %s: the benchmark failed", key)
        entry = {
            "what_was_done": "the benchmark failed before the fault's outcome was known",
            "outcome": "benchmark error",
            "seconds_to_clear_message": None,
            "message": f"{type(e).__name__}: {e}"[:MESSAGE_CHARS],
            "data_lost": None,
            "passed": None,
        }
    log.info(
        "fault %s: %s, message after %s s, passed: %s",
        key,
        entry["outcome"],
        entry["seconds_to_clear_message"],
        entry["passed"],
    )
    return {"id": key, "fault": title, **entry, "date": time.strftime("%Y-%m-%d")}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=["default", "tiny"],
        default="default",
        help="default: params.yaml as it is; tiny: the e2e tests' data size (quick)",
    )
    parser.add_argument(
        "--faults",
        nargs="+",
        choices=list(FAULTS),
        default=list(FAULTS),
        metavar="FAULT",
        help=f"run only these: {', '.join(FAULTS)}",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "recfusion-bench-faults",
        help="where the copies live, one folder per preset (a built snapshot there is reused)",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the snapshot")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds any one command may take"
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only rewrite README.md's reliability section from faults.json and print it",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.readme:
        path = RESULTS / "faults.json"
        if not path.is_file():
            parser.error(f"{path} does not exist yet: run python benchmarks/faults.py first")
        section = render_readme_section(json.loads(path.read_text()))
        write_readme(section)
        print(section)
        return 0
    if not (REPO / ".git").exists():
        parser.error("needs the git checkout of recfusion (the copies are made from git ls-files)")
    bench = Bench(args.workdir.resolve() / args.preset, {**tool_env(), **QUIET}, args.timeout)
    if args.fresh:
        bench.clear()
    log.info("snapshot (%s preset) in %s ...", args.preset, bench.snapshot)
    built = build_snapshot(bench, args.preset)
    log.info("snapshot ready: %s", built)
    entries = [inject(key, bench) for key in args.faults]
    result = {"preset": args.preset, "build": built, "faults": merge_faults(entries, args.preset)}
    path = write_result("faults", result)
    write_readme(render_readme_section(json.loads(path.read_text())))
    log.info("results in %s; README.md's reliability section rewritten", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
