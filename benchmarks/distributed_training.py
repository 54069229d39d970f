"""Multi-worker training against single-process training on the same prepared data.

Runs the `train_retrieval` and `train_ranking` stages as `dvc repro` runs them (their `main`,
in a scratch copy of data/prepared) with `train.distribute: none` and with
`train.distribute: multi_worker` (`--workers` processes on 127.0.0.1), over several seeds, and
records each run's test NDCG@10 / Recall@10 (two-tower), the best epoch and the wall time, and
for the first `--ranking-seeds` seeds the ranking heads' test AUC. Seed-to-seed spread of the single-process runs is the noise the
multi-worker mean is compared against. Multi-worker runs keep `batch_size` per replica (so the
global batch is `workers` times larger, as with MirroredStrategy); `--same-global-batch` also
runs them with the single process's global retrieval batch (ranking's stays per replica).

Needs data/prepared (run `dvc repro prepare` first; the default is the `small` shop).

    python benchmarks/distributed_training.py [--seeds 42 43 44] [--workers 2] [--ranking-seeds 1]

Results: benchmarks/results/distributed_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_stage(root: Path, name: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"recfusion.stages.{name}", "--params",
                           "params.yaml"], cwd=root, env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def one(root: Path, params: dict, seed: int, distribute: str, workers: int, batch: int,
        ranking: bool) -> dict[str, Any]:  # fmt: skip
    p = json.loads(json.dumps(params))
    p["seed"] = seed
    p["train"].update(distribute=distribute, workers=workers)
    p["train"]["retrieval"]["batch_size"] = batch
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    shutil.rmtree(root / "models", ignore_errors=True)
    shutil.rmtree(root / ".recfusion", ignore_errors=True)
    names = ("train_retrieval", "train_ranking") if ranking else ("train_retrieval",)
    seconds = {name: round(run_stage(root, name), 1) for name in names}
    retrieval = json.loads((root / "reports/retrieval.json").read_text())
    test = retrieval["test"]["all"]["two_tower"]
    out = {"seed": seed, "distribute": distribute, "workers": workers if distribute != "none" else 1,
           "retrieval_batch_per_replica": batch, "ndcg@10": round(test["ndcg@10"], 5),
           "recall@10": round(test["recall@10"], 5), "best_epoch": retrieval["best_epoch"],
           "retrieval_train_seconds": retrieval["train_seconds"],
           "stage_seconds": seconds, "devices": retrieval["devices"]}  # fmt: skip
    if ranking:
        heads = json.loads((root / "reports/ranking.json").read_text())["heads"]
        out["ranking_auc"] = {h: round(r["auc"], 4) for h, r in heads.items()}
    print(json.dumps(out), flush=True)
    return out


def summary(runs: list[dict]) -> dict[str, Any]:
    ndcg = [r["ndcg@10"] for r in runs]
    ranked = [r for r in runs if "ranking_auc" in r]
    out = {"runs": len(runs), "ndcg@10_mean": round(statistics.mean(ndcg), 5),
           "ndcg@10_sd": round(statistics.stdev(ndcg), 5) if len(ndcg) > 1 else None,
           "retrieval_stage_seconds_mean": round(statistics.mean(
               r["stage_seconds"]["train_retrieval"] for r in runs), 1)}  # fmt: skip
    if ranked:
        out["ranking_runs"] = len(ranked)
        out["ranking_mean_auc"] = round(statistics.mean(
            statistics.mean(r["ranking_auc"].values()) for r in ranked), 4)  # fmt: skip
        out["ranking_stage_seconds_mean"] = round(statistics.mean(
            r["stage_seconds"]["train_ranking"] for r in ranked), 1)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--same-global-batch", action="store_true")
    parser.add_argument(
        "--ranking-seeds",
        type=int,
        default=1,
        help="train_ranking runs for the first N seeds (it is the slow one)",
    )
    args = parser.parse_args()
    prepared = REPO / "data/prepared"
    if not (prepared / "train.parquet").is_file():
        sys.exit("data/prepared is missing: run `dvc repro prepare` first")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    batch = params["train"]["retrieval"]["batch_size"]
    variants = [("none", 1, batch), ("multi_worker", args.workers, batch)]
    if args.same_global_batch:
        variants.append(("multi_worker", args.workers, batch // args.workers))
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="recfusion-bench-dist-") as tmp:
        root = Path(tmp)
        shutil.copytree(prepared, root / "data/prepared")
        for distribute, workers, b in variants:
            key = f"{distribute}" if distribute == "none" else f"{distribute}_{workers}x{b}"
            runs[key] = [one(root, params, s, distribute, workers, b, i < args.ranking_seeds)
                         for i, s in enumerate(args.seeds)]  # fmt: skip
    summaries = {k: summary(v) for k, v in runs.items()}
    single = summaries["none"]
    for s in summaries.values():
        s["ndcg@10_gap_vs_single"] = round(s["ndcg@10_mean"] - single["ndcg@10_mean"], 5)
    size = params["ingest"]["synthetic"]["size"] if params["ingest"]["source"] == "synthetic" \
        else params["ingest"]["source"]  # fmt: skip
    path = write_result("distributed_training", {
        "data": size, "seeds": args.seeds, "summary": summaries, "runs": runs,
        "target": "multi-worker NDCG@10 within 0.01 of single-process (issue 14)",
        "met": all(abs(s["ndcg@10_gap_vs_single"]) <= 0.01 for s in summaries.values()),
    })  # fmt: skip
    print(json.dumps(summaries, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
