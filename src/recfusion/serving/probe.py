"""The gate's infrastructure check, run in a fresh process: load a model by URI, answer a sample
request, time single-user requests.

`python -m recfusion.serving.probe MODEL_URI --users a,b,c --requests 20` prints one JSON line
{loads, answers, latency_ms, load_s, error}; `probe()` runs it in a subprocess and reads it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from recfusion.registry.gate import Infra

TIMEOUT_S = 600


def check(model_uri: str, users: Sequence[str], requests: int, k: int = 10) -> dict:
    """Loads the model and exercises it; every failure is reported, never raised."""
    import mlflow
    import pandas as pd

    out: dict = {"loads": False, "answers": False, "latency_ms": float("inf"), "error": None}
    start = time.perf_counter()
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as e:  # noqa: BLE001 - the report says what went wrong
        out["error"] = f"load failed: {type(e).__name__}: {str(e)[:500]}"
        return out
    out["loads"], out["load_s"] = True, time.perf_counter() - start
    try:
        answer = model.predict(pd.DataFrame({"user_id": list(users), "k": k}))
        per_user = answer.groupby("user_id").size()
        bad = [u for u in users if per_user.get(u, 0) != k]
        if list(answer.columns) != ["user_id", "rank", "item_id", "score", "reason"] or bad:
            out["error"] = f"malformed answer: columns {list(answer.columns)}, short lists {bad}"
            return out
        times = []
        for i in range(requests):
            one = pd.DataFrame({"user_id": [users[i % len(users)]], "k": [k]})
            t = time.perf_counter()
            model.predict(one)
            times.append((time.perf_counter() - t) * 1000)
    except Exception as e:  # noqa: BLE001
        out["error"] = f"request failed: {type(e).__name__}: {str(e)[:500]}"
        return out
    out["answers"], out["latency_ms"] = True, float(np.percentile(times, 95))
    return out


def probe(model_uri: str, users: Sequence[str], requests: int, env: dict[str, str]) -> Infra:
    """Runs `check` in a fresh Python process (same interpreter, `env`) and reads its report."""
    cmd = [sys.executable, "-m", "recfusion.serving.probe", model_uri, "--users", ",".join(users),
           "--requests", str(requests)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Infra(False, False, float("inf"), f"no answer within {TIMEOUT_S} s")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return Infra(False, False, float("inf"),
                     f"probe exited {done.returncode}: {done.stderr.strip()[-500:]}")  # fmt: skip
    r = json.loads(lines[-1])
    return Infra(r["loads"], r["answers"], r["latency_ms"], r["error"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_uri")
    parser.add_argument("--users", required=True, help="comma-separated user ids")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(check(args.model_uri, args.users.split(","), args.requests)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
