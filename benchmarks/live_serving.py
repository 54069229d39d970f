"""Live serving: load time against log size, freshness of posted events, latency with the store
lookup, HTTP under load with four workers, and whether fresh events move the answer.

1. Load vs log size: two copies of the project on the `small` shop, one with the preset's
   sessions per user and one with ten times as many (the same users and items, about 10x the
   events), trained with the same cut epochs (this measures loading, not accuracy) up to the
   `package` and `materialize` stages. The packaged recommender is loaded in --loads fresh
   processes each (one core); median seconds, the model's size on disk, the log's row count.
2. On the default workspace (--workspace, default: this checkout after `make run`, copied so its
   store and event log stay untouched):
   - in process, one core: single-user recommendation and search latency, the store lookup
     included (p50 / p99);
   - `recfusion serve --workers 4`, then freshness: --fresh times, a click of a random user on
     a random in-stock item is posted, and the time from the POST's answer to the answer of that
     user's next recommendation request, which must no longer hold the clicked item (it is
     history now) and must differ from the answer before;
   - direction: for --direction test users, the share of their top 10 in the top-level category
     least present there, before and after five clicks on that category's items;
   - load: --clients closed-loop clients for --seconds (70% recommendations, 10% searches, 20%
     event batches), throughput, latency percentiles, status codes; then a burst of bad requests
     and events, each of which must get a 4xx.

    python benchmarks/live_serving.py [--loads 3] [--fresh 200] [--seconds 60] [--clients 8]
    python benchmarks/live_serving.py --skip-logs --store redis   # part 2 over Redis

Results: benchmarks/results/live_serving.json. The 100K-item load and latency are measured by
benchmarks/serving.py (results/serving.json), which builds that catalogue.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_result  # noqa: E402
from serving import ONE_THREAD, free_port, percentiles, project_copy, run, tool_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE_PARTS = ("params.yaml", "models", "data/online", "data/prepared", ".recfusion")
CUT_EPOCHS = {"retrieval": 3, "ranking": 2, "tags": 5, "search": 2}


def build_log_copy(workdir: Path, sessions_per_user: float) -> dict[str, Any]:
    """A project copy on the small shop with `sessions_per_user`, run up to package and
    materialize (reused when its store exists)."""
    if (workdir / "data/online/store.sqlite").is_file():
        return {"reused": True}

    def edit(params: dict[str, Any]) -> None:
        params["ingest"]["synthetic"]["sessions_per_user"] = sessions_per_user
        for model, epochs in CUT_EPOCHS.items():
            params["train"][model]["epochs"] = epochs

    env = project_copy(workdir, edit)
    t = time.perf_counter()
    run([str(BIN / "dvc"), "repro", "package", "materialize", "fuse", "train_search"], workdir, env)
    return {"reused": False, "pipeline_seconds": round(time.perf_counter() - t, 1)}


LOAD_CHILD = """
import json, os, resource, sys, time
from pathlib import Path
os.sched_setaffinity(0, {0})
t = time.perf_counter()
from recfusion.serving.recommender import Recommender
from recfusion.serving.store import open_store
imported = time.perf_counter() - t
t = time.perf_counter()
rec = Recommender.load(Path("."), open_store(Path("data/online/store.sqlite")))
load = time.perf_counter() - t
rec.recommend(__import__("pandas").DataFrame({"user_id": ["nobody"], "k": [10]}))
print(json.dumps({"import_s": imported, "load_s": load,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def measure_loads(workdir: Path, loads: int) -> dict[str, Any]:
    """Fresh-process load times of the workspace's recommender (one core, one thread)."""
    import pandas as pd

    runs = []
    for _ in range(loads):
        out = run([sys.executable, "-c", LOAD_CHILD], workdir, {**tool_env(), **ONE_THREAD})
        runs.append(json.loads(out.strip().splitlines()[-1]))
    events = sum(len(pd.read_parquet(workdir / f"data/prepared/{s}.parquet", columns=["user_id"]))
                 for s in ("train", "val", "test"))  # fmt: skip
    parts = ("package", "retrieval", "ranking", "tags", "fusion", "search")
    return {
        "events": events,
        "load_seconds_median": round(statistics.median(r["load_s"] for r in runs), 2),
        "load_seconds": [round(r["load_s"], 2) for r in runs],
        "import_seconds_median": round(statistics.median(r["import_s"] for r in runs), 2),
        "max_rss_mb": max(r["max_rss_mb"] for r in runs),
        "model_mb": round(sum(folder_mb(workdir / "models" / p) for p in parts), 1),
        "store_mb": folder_mb(workdir / "data/online"),
    }


def copy_workspace(source: Path, dest: Path) -> Path:
    """The parts a served workspace needs, copied so the benchmark's events stay out of `source`."""
    if dest.exists():
        shutil.rmtree(dest)
    for part in WORKSPACE_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        elif src.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def call(url: str, payload: object | None = None) -> tuple[int, Any]:
    body = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def recommend(url: str, user: str, k: int = 10) -> list[str]:
    status, body = call(f"{url}/invocations", {"dataframe_records": [{"user_id": user, "k": k}]})
    assert status == 200, body
    return [row["item_id"] for row in body["predictions"]]


def in_process_latency(workdir: Path, requests: int) -> dict[str, Any]:
    """Single-request latency in a child pinned to one core (serving.py's measure, whose
    recommender now reads the store at each request)."""
    out = run([sys.executable, str(Path(__file__).parent / "serving.py"), "--measure",
               "--workdir", str(workdir), "--requests", str(requests)], workdir,
              {**tool_env(), **ONE_THREAD})  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def start_server(workdir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "recfusion"), "serve", "--model", "workspace",
                             "--workers", str(workers), "--port", str(port)], cwd=workdir,
                            env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    t = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"recfusion serve exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if call(f"{url}/health")[0] == 200:
                break
        except OSError:
            pass
        if time.perf_counter() - t > 600:
            raise RuntimeError("the server did not come up within 600 s")
        time.sleep(0.5)
    return proc, url


def freshness(url: str, users: list[str], n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ms, changed, excluded = [], 0, 0
    for _ in range(n):
        user = rng.choice(users)
        before = recommend(url, user)
        item = rng.choice(before)  # a recommended item, clicked: it must leave the list
        status, _ = call(f"{url}/events", {"events": [{"user_id": user, "item_id": item,
                                                       "event_type": "click"}]})  # fmt: skip
        assert status == 200
        t = time.perf_counter()
        after = recommend(url, user)
        ms.append((time.perf_counter() - t) * 1000)
        excluded += item not in after
        changed += after != before
    return {**percentiles(ms), "reflected": excluded, "answer_changed": changed, "posts": n}


def direction(url: str, users: list[str], top_level: dict[str, str], by_category: dict[str, list[str]],
              n: int, seed: int) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(seed)
    before_shares, after_shares = [], []
    for user in rng.sample(users, min(n, len(users))):
        before = recommend(url, user)
        present = {c: sum(top_level[i] == c for i in before) for c in by_category}
        target = min(sorted(by_category), key=lambda c: present[c])
        clicks = rng.sample(by_category[target], 5)
        call(f"{url}/events", {"events": [{"user_id": user, "item_id": i, "event_type": "click"}
                                          for i in clicks]})  # fmt: skip
        after = recommend(url, user)
        before_shares.append(present[target] / len(before))
        after_shares.append(sum(top_level[i] == target for i in after) / len(after))
    return {"users": len(before_shares), "share_before": round(float(np.mean(before_shares)), 4),
            "share_after": round(float(np.mean(after_shares)), 4),
            "users_moved_toward": int(sum(a > b for a, b in zip(after_shares, before_shares,
                                                                  strict=True)))}  # fmt: skip


def load_test(url: str, users: list[str], items: list[str], queries: list[str], seconds: float,
              clients: int, seed: int) -> dict[str, Any]:  # fmt: skip
    lock = threading.Lock()
    lat: dict[str, list[float]] = {"recommend": [], "search": [], "events": []}
    codes: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        rng = random.Random(seed + n)
        while time.perf_counter() < stop:
            r = rng.random()
            user = rng.choice(users)
            if r < 0.7:
                kind, path = "recommend", "invocations"
                payload: Any = {"dataframe_records": [{"user_id": user, "k": 10}]}
            elif r < 0.8:
                kind, path = "search", "invocations"
                payload = {"dataframe_records": [{"user_id": user, "k": 10,
                                                  "query": rng.choice(queries)}]}  # fmt: skip
            else:
                kind, path = "events", "events"
                payload = {"events": [{"user_id": user, "item_id": rng.choice(items),
                                       "event_type": rng.choice(["view", "click"])}]}  # fmt: skip
            t = time.perf_counter()
            try:
                status, _ = call(f"{url}/{path}", payload)
            except OSError:
                status = 0
            with lock:
                lat[kind].append((time.perf_counter() - t) * 1000)
                codes[status] = codes.get(status, 0) + 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = sum(codes.values())
    return {"seconds": seconds, "clients": clients, "requests": total,
            "requests_per_s": round(total / seconds, 1),
            "status_codes": {str(k): v for k, v in sorted(codes.items())},
            "server_errors": sum(v for k, v in codes.items() if k >= 500 or k == 0),
            **{kind: percentiles(v) for kind, v in lat.items() if v}}  # fmt: skip


def bad_burst(url: str, item: str) -> dict[str, Any]:
    cases: list[tuple[str, str, bytes, str | None]] = [
        ("events without content type", "events", b'{"events": []}', None),
        ("text/plain", "invocations", b"{}", "text/plain"),
        ("not JSON", "events", b"{nope", "application/json"),
        ("nested 5000 deep", "invocations", b"[" * 5000 + b"]" * 5000, "application/json"),
        ("unknown item", "events", json.dumps({"events": [{"user_id": "u", "item_id": "none",
                                                           "event_type": "click"}]}).encode(),
         "application/json"),
        ("future timestamp", "events", json.dumps({"events": [{
            "user_id": "u", "item_id": item, "event_type": "click",
            "timestamp": "2999-01-01T00:00:00Z"}]}).encode(), "application/json"),
        ("k as text", "invocations", json.dumps({"dataframe_records": [
            {"user_id": "u", "k": "5"}]}).encode(), "application/json"),
        ("100 KB user id", "invocations", json.dumps({"dataframe_records": [
            {"user_id": "u" * 100_000, "k": 5}]}).encode(), "application/json"),
    ]  # fmt: skip
    out = {}
    for name, path, body, kind in cases * 10:
        headers = {"Content-Type": kind} if kind else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/{path}", body, headers),
                                        timeout=60) as r:  # fmt: skip
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        out.setdefault(name, set()).add(status)
    return {name: sorted(s) for name, s in out.items()}


def served_parts(args: argparse.Namespace, ws: Path) -> dict[str, Any]:
    """Latency in process, then freshness, direction and load through `recfusion serve`."""
    import pandas as pd

    result: dict[str, Any] = {}
    result["in_process_one_core"] = in_process_latency(ws, args.requests)
    print(result["in_process_one_core"], flush=True)
    items = pd.read_parquet(ws / "data/prepared/items.parquet")
    stock = items[items["in_stock"]]
    top = dict(zip(items["item_id"].astype(str),
                   items["category"].astype(str).str.split(">").str[0], strict=True))  # fmt: skip
    by_category: dict[str, list[str]] = {}
    for i in stock["item_id"].astype(str):
        by_category.setdefault(top[i], []).append(i)
    test_users = sorted(
        set(pd.read_parquet(ws / "data/prepared/test.parquet")["user_id"].astype(str))
    )
    queries = pd.read_parquet(ws / "data/prepared/queries.parquet")["query"].astype(str).tolist()
    t = time.perf_counter()
    proc, url = start_server(ws, args.workers)
    result["http"] = {"workers": args.workers, "startup_seconds": round(time.perf_counter() - t, 1)}
    try:
        rng = random.Random(0)
        result["freshness"] = freshness(url, rng.sample(test_users, 200), args.fresh, 1)
        print(result["freshness"], flush=True)
        result["direction"] = direction(url, test_users, top, by_category, args.direction, 2)
        print(result["direction"], flush=True)
        result["http"]["load"] = load_test(url, test_users, stock["item_id"].astype(str).tolist(),
                                           queries, args.seconds, args.clients, 3)  # fmt: skip
        print(result["http"]["load"], flush=True)
        result["http"]["bad_requests"] = bad_burst(url, str(stock["item_id"].iloc[0]))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return result


def served_measures(args: argparse.Namespace, store: str) -> dict[str, Any]:
    """Part 2 on a copy of the workspace whose online store is `store`: sqlite, or a Redis
    server started for the copy (recfusion's own starter) and filled by its materialize stage."""
    result: dict[str, Any] = {"store": store}
    ws = copy_workspace(args.workspace, args.workdir / f"default-{store}")
    redis_url = f"redis://127.0.0.1:{free_port()}/0" if store == "redis" else None
    try:
        if redis_url is not None:
            import yaml

            from recfusion.serving.redis_server import ensure_local

            ensure_local(redis_url, ws / "data/online/redis")
            params = yaml.safe_load((ws / "params.yaml").read_text())
            params["serving"]["store"] = redis_url
            (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            t = time.perf_counter()
            run([sys.executable, "-m", "recfusion.stages.materialize"], ws, tool_env())
            result["materialize_seconds"] = round(time.perf_counter() - t, 1)
        result.update(served_parts(args, ws))
    finally:
        if redis_url is not None:
            from recfusion.serving.redis_server import stop_local

            stop_local(redis_url)
    fresh, http = result["freshness"], result["http"]
    result["targets_met"] = {
        "freshness_p99_ms_le_1000": fresh["p99_ms"] <= 1000,
        "freshness_p99_ms_le_100": fresh["p99_ms"] <= 100,
        "every_post_reflected": fresh["reflected"] == fresh["posts"],
        "recommend_p99_ms_le_30_one_core": result["in_process_one_core"]["recommend"]["p99_ms"] <= 30,
        "search_p99_ms_le_50_one_core": result["in_process_one_core"]["search"]["p99_ms"] <= 50,
        "no_5xx_under_load": http["load"]["server_errors"] == 0,
        "bad_requests_all_4xx": all(all(400 <= c < 500 for c in codes)
                                    for codes in http["bad_requests"].values()),
        "moved_toward_clicked_category": result["direction"]["share_after"]
        > result["direction"]["share_before"],
    }  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recfusion-live-bench"))
    parser.add_argument("--workspace", type=Path, default=REPO)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--fresh", type=int, default=200)
    parser.add_argument("--direction", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--skip-logs", action="store_true", help="skip part 1")
    parser.add_argument("--store", choices=["sqlite", "redis"], default="sqlite",
                        help="part 2's online store; redis adds a 'redis' section to the last "
                             "results")  # fmt: skip
    args = parser.parse_args()

    result: dict[str, Any] = {}
    if not args.skip_logs:
        preset = 6.0  # the small preset's sessions per user
        sizes = {}
        for name, spu in (("1x", preset), ("10x", preset * 10)):
            folder = args.workdir / f"log-{name}"
            built = build_log_copy(folder, spu)
            sizes[name] = {**built, "sessions_per_user": spu, **measure_loads(folder, args.loads)}
            print(name, sizes[name], flush=True)
        ratio = sizes["10x"]["load_seconds_median"] / sizes["1x"]["load_seconds_median"]
        result["load_vs_log"] = {"epochs": CUT_EPOCHS, "sizes": sizes,
                                 "load_ratio_10x_over_1x": round(ratio, 3),
                                 "events_ratio": round(sizes["10x"]["events"]
                                                       / sizes["1x"]["events"], 2)}  # fmt: skip
    if args.store == "redis":  # the Redis measures, kept beside the last SQLite ones
        previous = json.loads((RESULTS / "live_serving.json").read_text())
        previous.pop("machine", None)
        result = {**previous, **result, "redis": served_measures(args, "redis")}
    else:
        result.update(served_measures(args, "sqlite"))
    if "load_vs_log" in result:
        result["targets_met"]["load_within_20pct_of_10x_log"] = (
            abs(result["load_vs_log"]["load_ratio_10x_over_1x"] - 1.0) <= 0.2)  # fmt: skip
    os.chdir(REPO)
    print(write_result("live_serving", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
