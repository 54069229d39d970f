"""`make ui`: a Prefect server, an MLflow server and the process serving the flow deployments,
all bound to 127.0.0.1; Ctrl-C stops all three.

Prefect keeps its database under .recfusion/prefect (PREFECT_HOME), MLflow uses the
tracking store of params.yaml.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from recfusion.config import load_config
from recfusion.logs import setup_logging
from recfusion.orchestration.dvc_stage import stage_env
from recfusion.orchestration.reports import CLASSIC_VIEW

log = logging.getLogger(__name__)
HOST = os.environ.get("HOST", "127.0.0.1")
PREFECT_PORT = int(os.environ.get("PREFECT_PORT", "4200"))
MLFLOW_PORT = int(os.environ.get("MLFLOW_PORT", "5000"))
STARTUP_TIMEOUT_S = 180  # the Prefect server takes about a minute to start on 2 cores
# what flows/serve.py serves, as flow/deployment: the UI is ready when all of them exist
DEPLOYMENTS = ("recfusion-training/train", "recfusion-promotion/promote",
               "recfusion-training/retrain-weekly")  # fmt: skip


def prefect_env(root: Path) -> dict[str, str]:
    """The environment every Prefect process of the UI shares."""
    api = f"http://{HOST}:{PREFECT_PORT}/api"
    return stage_env({"PREFECT_HOME": str(root / ".recfusion" / "prefect"),
                      "PREFECT_API_URL": api, "PREFECT_UI_API_URL": api,
                      "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(PREFECT_PORT),
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                      "RECFUSION_MLFLOW_UI": f"http://{HOST}:{MLFLOW_PORT}"})  # fmt: skip


def wait_for(url: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    """Polls `url` until it answers 200.

    Raises:
        RuntimeError: a process died or the URL did not answer in time.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def mlflow_runs_url(ui: str, experiment: str) -> str:
    """The experiment's table of training runs in the UI's model-training view (MLflow 3.17
    otherwise opens an experiment on its GenAI overview: reports.CLASSIC_VIEW), or the UI's front
    page while the experiment does not exist yet."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urllib.request.urlopen(f"{ui}/api/2.0/mlflow/experiments/get-by-name?{query}",
                                    timeout=10) as r:  # fmt: skip
            found = json.loads(r.read())["experiment"]["experiment_id"]
    except (OSError, KeyError, ValueError):
        return ui
    return f"{ui}/#/experiments/{found}/runs{CLASSIC_VIEW}"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) != 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children like Ctrl-C does


def main() -> int:
    setup_logging()
    root = Path.cwd()
    busy = [p for p in (PREFECT_PORT, MLFLOW_PORT) if not port_free(p)]
    if busy:
        log.error("port %s on %s is in use (another `make ui`?); stop it or set PREFECT_PORT / "
                  "MLFLOW_PORT", busy[0], HOST)  # fmt: skip
        return 1
    signal.signal(signal.SIGTERM, _stop)
    registry = load_config(root / "params.yaml").registry
    tracking, experiment = registry.tracking_uri, registry.experiment
    env = prefect_env(root)
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    # each child in its own session: Ctrl-C reaches this process only, which then stops the
    # children in order (no child is interrupted mid-request, none prints a traceback)
    procs = [
        # Prefect's server with SQLite writes that wait their turn (orchestration/prefect_server)
        subprocess.Popen([sys.executable, "-m", "recfusion.orchestration.prefect_server",
                          "server", "start", "--host", HOST, "--port", str(PREFECT_PORT)],
                         env=env, start_new_session=True),
        subprocess.Popen([str(bin_dir / "mlflow"), "server", "--backend-store-uri", tracking,
                          "--host", HOST, "--port", str(MLFLOW_PORT), "--workers", "1"], env=env,
                         start_new_session=True),
    ]  # fmt: skip
    try:
        log.info("starting the Prefect and MLflow servers (up to %d s)...", STARTUP_TIMEOUT_S)
        wait_for(f"{env['PREFECT_API_URL']}/health", STARTUP_TIMEOUT_S, procs)
        wait_for(f"http://{HOST}:{MLFLOW_PORT}/health", STARTUP_TIMEOUT_S, procs)
        procs.append(subprocess.Popen([sys.executable, "-m", "flows.serve"], env=env, cwd=root,
                                      start_new_session=True))  # fmt: skip
        log.info("registering the deployments...")
        for name in DEPLOYMENTS:
            wait_for(f"{env['PREFECT_API_URL']}/deployments/name/{name}", STARTUP_TIMEOUT_S, procs)
        log.info("ready. Prefect UI: http://%s:%d  (deployments: %s)", HOST, PREFECT_PORT,
                 ", ".join(DEPLOYMENTS))  # fmt: skip
        log.info("MLflow UI:  %s   Ctrl-C stops everything",
                 mlflow_runs_url(f"http://{HOST}:{MLFLOW_PORT}", experiment))  # fmt: skip
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        log.error("a UI process exited; stopping the others")
        return 1
    except KeyboardInterrupt:
        log.info("stopping...")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the clean-up
        # one at a time, the deployments first, so each stops while the servers it talks to
        # still answer (stopped together, the runner's event stream broke with a traceback)
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
