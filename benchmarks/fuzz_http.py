"""Schemathesis against `recfusion serve` on the default workspace (issue 20 item 4): requests
generated from the app's OpenAPI schema, valid and invalid (negative mode), over HTTP to a real
server on 127.0.0.1; zero 5xx is the target.

    python benchmarks/fuzz_http.py [--examples 300] [--seed 0] [--workers 2]

--examples is per operation and mode (POST /invocations and POST /events, positive and
negative, plus GET /health and /ping), so the default sends about 1,200 requests.
Results: benchmarks/results/fuzz_http.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzz import fuzz_api  # noqa: E402

from common import write_result  # noqa: E402
from live_serving import REPO, copy_workspace, start_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workspace", type=Path, default=REPO)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recfusion-fuzz-bench"))
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ws = copy_workspace(args.workspace, args.workdir / "default")
    proc, url = start_server(ws, args.workers)
    try:
        t = time.perf_counter()
        result = fuzz_api(url, args.examples, args.seed)
        result["seconds"] = round(time.perf_counter() - t, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    result.update(examples_per_operation_and_mode=args.examples, seed=args.seed,
                  workers=args.workers,
                  targets_met={"at_least_1000_requests": result["requests"] >= 1000,
                               "no_5xx": result["server_errors"] == 0})  # fmt: skip
    print(result)
    print(write_result("fuzz_http", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
