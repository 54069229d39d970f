"""The Dask engine against the local one: `ingest` (synthetic generation) and `prepare` at a
shop size, their wall times, and whether their outputs are identical.

For each `--size`, two scratch folders get this checkout's params.yaml with
`ingest.synthetic.size: SIZE` and `engine.kind: local` or `dask` (a LocalCluster of
`engine.workers` processes, started by the stage). Each runs `python -m recfusion.stages.ingest`
once, then `prepare` `--repeats` times, the two engines taking turns. `prepare` reads the local
run's raw tables in both folders (validation is not part of this comparison). Times are of the
whole stage process: start-up, the cluster's start and stop, reading and writing included.

    python benchmarks/dask_engine.py --size medium [--repeats 3] [--workdir /tmp/recfusion-dask]

Results: benchmarks/results/dask_engine.json, one entry per size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("local", "dask")


def setup(root: Path, size: str, engine: str) -> Path:
    folder = root / engine
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["source"] = "synthetic"
    params["ingest"]["synthetic"]["size"] = size
    params["engine"]["kind"] = engine
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run_stage(folder: Path, stage: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"recfusion.stages.{stage}", "--params",
                           "params.yaml"], cwd=folder, env=env, capture_output=True,
                          text=True)  # fmt: skip
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{stage} in {folder} failed:\n{done.stderr[-3000:]}")
    return round(seconds, 2)


def differences(a: Path, b: Path) -> list[str]:
    """Files under `a` and `b` whose contents differ (Parquet: as tables), or that only one has."""
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names |= {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    differ = []
    for name in sorted(names):
        pa, pb = a / name, b / name
        if not (pa.is_file() and pb.is_file()):
            differ.append(str(name))
        elif name.suffix == ".parquet":
            if not pd.read_parquet(pa).equals(pd.read_parquet(pb)):
                differ.append(str(name))
        elif pa.read_bytes() != pb.read_bytes():
            differ.append(str(name))
    return differ


def run_size(size: str, repeats: int, workdir: Path) -> dict[str, Any]:
    root = workdir / size
    folders = {e: setup(root, size, e) for e in ENGINES}
    entry: dict[str, Any] = {"ingest_seconds": {}, "prepare_seconds": {e: [] for e in ENGINES}}
    for e in ENGINES:
        print(f"[{size}] ingest, {e} engine ...", flush=True)
        entry["ingest_seconds"][e] = run_stage(folders[e], "ingest")
    entry["ingest_differences"] = differences(folders["local"] / "data/raw",
                                              folders["dask"] / "data/raw")  # fmt: skip
    for e in ENGINES:
        shutil.copytree(folders["local"] / "data/raw", folders[e] / "data/validated")
    for r in range(repeats):
        for e in ENGINES if r % 2 == 0 else ENGINES[::-1]:
            seconds = run_stage(folders[e], "prepare")
            entry["prepare_seconds"][e].append(seconds)
            print(f"[{size}] prepare, {e} engine: {seconds} s", flush=True)
    entry["prepare_differences"] = differences(folders["local"] / "data/prepared",
                                               folders["dask"] / "data/prepared")  # fmt: skip
    median = {e: statistics.median(entry["prepare_seconds"][e]) for e in ENGINES}
    entry["prepare_median_seconds"] = median
    entry["prepare_dask_over_local"] = round(median["dask"] / median["local"], 2)
    summary = json.loads((folders["dask"] / "data/prepared/summary.json").read_text())
    entry["rows"] = json.loads((folders["local"] / "data/raw/source.json").read_text())["rows"]
    entry["split_events"] = {k: v["events"] for k, v in summary["splits"].items()}
    entry["workers"] = yaml.safe_load((REPO / "params.yaml").read_text())["engine"]["workers"]
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", required=True,
                        choices=["tiny", "small", "medium", "large", "xl"])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recfusion-dask"))
    args = parser.parse_args()
    path = RESULTS / "dask_engine.json"
    results = json.loads(path.read_text()) if path.is_file() else {"sizes": {}}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "src").strip())
    for size in args.size:
        entry = run_size(size, args.repeats, args.workdir)
        results["sizes"][size] = {
            **entry,
            "commit": commit,
            "src_uncommitted_changes": dirty,
            "machine": machine(),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(json.dumps(results["sizes"][size], indent=2), flush=True)


if __name__ == "__main__":
    main()
