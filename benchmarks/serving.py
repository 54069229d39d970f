"""Online serving at catalogue scale: latency and throughput of the packaged model.

1. Build (skipped when --workdir already holds a registered model): a copy of the project whose
   synthetic catalogue has --items items (100K by default), EASE off (its dense items x items
   matrix would need 40 GB at 100K items), retrieval epochs cut to 5 (this measures speed, not
   accuracy), then `dvc repro register`: every sub-model, search, fusion, evaluation, and the
   packaged model logged and registered in the copy's own SQLite MLflow store.
2. In process, on one core (a child process pinned to CPU 0 with one TensorFlow / OpenMP
   thread): the packaged recommender answers --requests single-user top-10 recommendation
   requests (random known users, the full fused path) and as many single search requests (the
   held-out queries with their users); p50 / p95 / p99 and requests per second.
3. Over HTTP: `mlflow models serve` on 127.0.0.1 and locust (headless, --clients concurrent
   closed-loop clients, half recommendation and half search requests) for --seconds; latency
   percentiles, throughput and failures; then bad requests and the status code each gets.

    python benchmarks/serving.py [--items 100000] [--requests 300] [--seconds 60] [--clients 4]

Results: benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip
SKIPPED = ("data/raw", "data/prepared", "data/validated", "data/quarantine", "data/online",
           "data/live", "reports/", "models/", "mlflow.db", "mlartifacts")  # fmt: skip


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def tool_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "TF_CPP_MIN_LOG_LEVEL": "2", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip


def project_copy(workdir: Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    """A git-initialised copy of the project's files (no pipeline outputs) in `workdir`, its
    params.yaml changed by `edit`; returns the environment to run its tools in."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], REPO)
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file() and not name.startswith(SKIPPED):
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, workdir / name)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    edit(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = tool_env()
    run(["git", "init", "-q"], workdir, env)
    run(["git", "add", "-A"], workdir, env)
    run(["git", "commit", "-qm", "benchmark copy"], workdir, env)
    return env


def build(workdir: Path, items: int) -> dict[str, Any]:
    """The project copy with a registered model at `items` items (reused when present)."""
    if (workdir / "reports/register.json").is_file():
        return {"reused": True}

    def edit(params: dict[str, Any]) -> None:
        params["ingest"]["synthetic"]["n_items"] = items
        params["fusion"]["sources"] = [s for s in params["fusion"]["sources"] if s != "ease"]
        params["train"]["retrieval"]["epochs"] = 5
        params["train"]["retrieval"]["faiss_above"] = items // 2  # the index is faiss HNSW

    env = project_copy(workdir, edit)
    t = time.perf_counter()
    run([str(BIN / "dvc"), "repro", "register"], workdir, env)
    return {"reused": False, "pipeline_seconds": round(time.perf_counter() - t, 1)}


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2),
            "requests_per_s": round(1000.0 / float(a.mean()), 1)}  # fmt: skip


def request_pool(workdir: Path, seed: int, n: int) -> dict[str, list]:
    """Known users and held-out searches (query, its user or "anonymous") to send."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    users = pd.read_parquet(workdir / "data/prepared/users.parquet", columns=["user_id"])
    q = pd.read_parquet(workdir / "data/prepared/queries.parquet")
    q = q[q["split"] == "test"]
    picked = rng.choice(len(users), size=min(n, len(users)), replace=False)
    rows = rng.choice(len(q), size=min(n, len(q)), replace=False)
    return {"users": users["user_id"].astype(str).to_numpy()[picked].tolist(),
            "searches": [[str(u) if isinstance(u, str) else "anonymous", str(t)]
                         for u, t in q[["user_id", "query"]].to_numpy()[rows]]}  # fmt: skip


def in_process(workdir: Path, requests: int) -> dict[str, Any]:
    """Runs `measure` in a child process on one core with one thread."""
    out = run([sys.executable, __file__, "--measure", "--workdir", str(workdir),
               "--requests", str(requests)], workdir, {**tool_env(), **ONE_THREAD})  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def measure(workdir: Path, requests: int) -> dict[str, Any]:
    """(child) Latency of single requests through the packaged recommender, in this process."""
    os.sched_setaffinity(0, {0})
    import pandas as pd

    from recfusion.serving.recommender import Recommender

    os.chdir(workdir)
    t = time.perf_counter()
    rec = Recommender.load(Path("."))
    load_s = time.perf_counter() - t
    pool = request_pool(workdir, 0, requests)
    users = len(pd.read_parquet(workdir / "data/prepared/users.parquet", columns=["user_id"]))
    result: dict[str, Any] = {"load_seconds": round(load_s, 1), "items": len(rec.package.catalog),
                              "users": users, "cpu_affinity": sorted(os.sched_getaffinity(0))}  # fmt: skip
    kinds = {
        "recommend": [pd.DataFrame({"user_id": [u], "k": [10]}) for u in pool["users"]],
        "search": [pd.DataFrame({"user_id": [u], "k": [10], "query": [q]})
                   for u, q in pool["searches"]],
    }  # fmt: skip
    for kind, frames in kinds.items():
        for f in frames[:20]:  # warm-up: graph tracing, caches
            rec.recommend(f)
        ms = []
        for f in frames:
            t = time.perf_counter()
            answer = rec.recommend(f)
            ms.append((time.perf_counter() - t) * 1000.0)
            if len(answer) == 0:
                raise RuntimeError(f"empty answer to {f.to_dict('records')}")
        result[kind] = percentiles(ms)
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()[:200]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()[:300]


BAD_REQUESTS = {
    "malformed JSON": b"{not json",
    "missing user_id": json.dumps({"dataframe_records": [{"k": 3}]}).encode(),
    "k too large": json.dumps({"dataframe_records": [{"user_id": "u", "k": 100000}]}).encode(),
    "k not a number": json.dumps({"dataframe_records": [{"user_id": "u", "k": "ten"}]}).encode(),
    "query too long": json.dumps({"dataframe_records": [
        {"user_id": "u", "k": 3, "query": "x" * 5000}]}).encode(),
    "extra column": json.dumps({"dataframe_records": [{"user_id": "u", "k": 3, "x": 1}]}).encode(),
    "unknown user": json.dumps({"dataframe_records": [{"user_id": "never-seen", "k": 3}]}).encode(),
}  # fmt: skip
# what each bad request should get: an unknown user is a cold start, answered with popular items
# in stock (by design); MLflow's schema check drops a column the signature does not name
EXPECTED = {"extra column": 200, "unknown user": 200}


def over_http(workdir: Path, seconds: int, clients: int, pool_size: int) -> dict[str, Any]:
    version = json.loads((workdir / "reports/register.json").read_text())["version"]
    port = free_port()
    env = {**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m",
                               f"models:/recfusion/{version}", "--env-manager", "local",
                               "--host", "127.0.0.1", "-p", str(port)], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited: {server.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(2)
        startup = time.perf_counter() - t
        pool_file = workdir / "bench_pool.json"
        pool_file.write_text(json.dumps(request_pool(workdir, 1, pool_size)))
        prefix = workdir / "locust"
        run([str(BIN / "locust"), "-f", str(Path(__file__).parent / "serving_locust.py"),
             "--headless", "-u", str(clients), "-r", str(clients), "-t", f"{seconds}s",
             "-H", url, "--csv", str(prefix), "--only-summary"], workdir,
            {**tool_env(), "RECFUSION_BENCH_POOL": str(pool_file)})  # fmt: skip
        load = {}
        with open(f"{prefix}_stats.csv", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                load[row["Name"]] = {
                    "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                    "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]),
                    "p99_ms": float(row["99%"]), "requests_per_s": round(float(row["Requests/s"]), 1),
                }  # fmt: skip
        bad = {}
        for name, body in BAD_REQUESTS.items():
            status, text = post(f"{url}/invocations", body)
            bad[name] = {"status": status, "expected": EXPECTED.get(name, "4xx"), "answer": text}
        return {"server_startup_seconds": round(startup, 1), "seconds": seconds,
                "clients": clients, "workers": 1, "load": load, "bad_requests": bad}  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recfusion-bench-serving"))
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir.resolve(), args.requests)))
        return 0
    workdir = args.workdir.resolve()
    built = build(workdir, args.items)
    built["params"] = {k: v for k, v in yaml.safe_load((workdir / "params.yaml").read_text())
                       .items() if k in ("fusion",)}  # fmt: skip
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    built["quality_at_this_size"] = {
        "packaged_ndcg@10": metrics["methods"][metrics["packaged"]]["ndcg@10"],
        "search_ndcg@10": {v: m["ndcg@10"] for v, m in metrics["search"]["variants"].items()},
        "two_tower_index": json.loads((workdir / "models/retrieval/meta.json").read_text())["index"],
    }  # fmt: skip
    print("built:", built)
    local = in_process(workdir, args.requests)
    print("in process, one core:", json.dumps(local, indent=1))
    http = over_http(workdir, args.seconds, args.clients, args.requests)
    print("over HTTP:", json.dumps(http, indent=1))
    targets = {"recommend_p99_ms_le_30": local["recommend"]["p99_ms"] <= 30.0,
               "search_p99_ms_le_50": local["search"]["p99_ms"] <= 50.0,
               "zero_errors_under_load": all(v["failures"] == 0 for v in http["load"].values()),
               "bad_requests_as_expected": all(
                   b["status"] == b["expected"] if isinstance(b["expected"], int)
                   else 400 <= b["status"] < 500 for b in http["bad_requests"].values()),
               "no_5xx": all(b["status"] < 500 for b in http["bad_requests"].values())}  # fmt: skip
    path = write_result("serving", {"build": built, "items": args.items, "in_process_one_core": local,
                                    "http": http, "targets_met": targets})  # fmt: skip
    print("targets:", targets, "->", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
