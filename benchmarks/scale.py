"""The whole pipeline at a shop size: each stage's wall time and peak memory, and the quality it
reaches.

For each `--size`, a scratch clone of this checkout (committed files only) gets
`ingest.synthetic.size: SIZE` plus that size's settings (SIZE_PARAMS, and any `--set KEY=VALUE`)
and runs the stages of dvc.yaml one at a time, each as `dvc repro --single-item STAGE` (what
`dvc repro` runs), through `--until` (default: every stage). Per stage: wall seconds and the
peak resident memory of its processes (the largest, from getrusage of the waited children).
After `evaluate`: NDCG@10 of the packaged method and of each source and method
(reports/metrics.json). A stage that fails ends that size with its error recorded.

    python benchmarks/scale.py --size small [--size medium ...] [--until evaluate]
        [--set train.retrieval.epochs=3] [--workdir /tmp/recfusion-scale] [--resume [--pull]]

`--resume` goes on in the clone an earlier run of that size left, after the stages it finished
(its entry keeps the commit it was cloned at); `--resume --pull` first moves that clone to this
checkout's HEAD, to go on after a fix. Every stage records the commit it ran at.

Results: benchmarks/results/scale.json, one entry per size (a new run of a size replaces its
entry, other sizes' entries stay).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# what each size changes besides its data: fewer epochs, fewer users scored (the defaults are
# the `small` settings)
SIZE_PARAMS: dict[str, dict[str, Any]] = {
    "large": {
        "train.retrieval.epochs": 3,
        "train.ranking.epochs": 2,
        "train.search.epochs": 5,
        "evaluate.max_users": 10000,
    },
    "xl": {
        "train.retrieval.epochs": 2,
        "train.ranking.epochs": 1,
        "train.search.epochs": 3,
        "evaluate.max_users": 5000,
    },
}
PEAK = "PEAK_RSS_KB"
MEASURED = (  # argv: the file for the peak, then the command
    "import pathlib, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    f"pathlib.Path(sys.argv[1]).write_text(f'{PEAK} {{peak}}')\n"
    "sys.exit(code)\n"
)


def set_key(params: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    if last not in node:
        raise KeyError(f"params.yaml has no key {dotted}")
    node[last] = value


def clone(dest: Path, size: str, overrides: dict[str, Any]) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)  # committed files
    write_params(dest, size, overrides)


def update(dest: Path, size: str, overrides: dict[str, Any]) -> None:
    """Brings the clone to this checkout's HEAD (committed files), its params set again; the
    data and models the finished stages left stay, and so do the tracked files they changed
    (dvc.lock, reports)."""
    subprocess.run(["git", "fetch", "-q", str(REPO), "HEAD"], cwd=dest, check=True)
    ahead = subprocess.run(["git", "merge-base", "--is-ancestor", "HEAD", "FETCH_HEAD"], cwd=dest)
    if ahead.returncode != 0:
        raise SystemExit(f"{dest}: this checkout's HEAD does not follow the clone's; start anew")
    changed = subprocess.run(["git", "diff", "HEAD", "--name-only", "-z"], cwd=dest,
                             capture_output=True, text=True,
                             check=True).stdout.split("\0")  # fmt: skip
    kept = {name: (dest / name).read_bytes() if (dest / name).is_file() else None
            for name in changed if name and name != "params.yaml"}  # fmt: skip
    try:
        subprocess.run(["git", "checkout", "-q", "HEAD", "--", "."], cwd=dest, check=True)
        subprocess.run(["git", "merge", "-q", "--ff-only", "FETCH_HEAD"], cwd=dest, check=True)
    finally:  # the finished stages' files come back whether or not the move worked
        for name, content in kept.items():
            if content is None:
                (dest / name).unlink(missing_ok=True)
            else:
                (dest / name).write_bytes(content)
    write_params(dest, size, overrides)


def head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def write_params(dest: Path, size: str, overrides: dict[str, Any]) -> None:
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["ingest"]["source"] = "synthetic"
    params["ingest"]["synthetic"]["size"] = size
    for key, value in {**SIZE_PARAMS.get(size, {}), **overrides}.items():
        set_key(params, key, value)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(root: Path, name: str, log: Path) -> dict[str, Any]:
    # the clone's code, not this checkout's editable install
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(root / "src")}  # fmt: skip
    t = time.perf_counter()
    peak_file = log.with_suffix(".peak")  # beside the log, out of the clone
    peak_file.unlink(missing_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with log.open("a") as out:  # the stage's output goes to the log as it comes (tail -f)
        done = subprocess.run([sys.executable, "-c", MEASURED, str(peak_file), str(BIN / "dvc"),
                               "repro", "--single-item", name], cwd=root, stdout=out,
                              stderr=subprocess.STDOUT, env=env)  # fmt: skip
    seconds = time.perf_counter() - t
    text = peak_file.read_text() if peak_file.is_file() else ""
    peak = [int(line.split()[1]) for line in text.splitlines() if line.startswith(PEAK)]
    result = {"seconds": round(seconds, 1), "peak_rss_gb": round(peak[-1] / 2**20, 2) if peak else None,
              "ok": done.returncode == 0, "commit": head(root)}  # fmt: skip
    if done.returncode != 0:
        with log.open("rb") as f:
            f.seek(start)
            result["error"] = f.read().decode(errors="replace").strip()[-1500:]
    return result


def quality(root: Path) -> dict[str, Any]:
    path = root / "reports/metrics.json"
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    ndcg = {name: round(v["ndcg@10"], 5) for name, v in m["methods"].items()}
    return {"packaged": m["packaged"], "packaged_ndcg@10": ndcg[m["packaged"]],
            "packaged_ndcg@10_interval": m.get("packaged_ndcg@10_interval"),
            "test_users": m["test_users"], "test_users_total": m.get("test_users_total"),
            "ndcg@10": ndcg}  # fmt: skip


def run_size(size: str, until: str | None, overrides: dict[str, Any], workdir: Path,
             save: Callable[[dict], None], previous: dict | None = None,
             pull: bool = False) -> dict:  # fmt: skip
    """Runs the stages of `size`; `save(entry)` after each, so a run stopped midway keeps the
    stages it finished. With `previous` (the entry of an earlier run in the same clone), the
    clone is kept and the stages it finished are not run again; with `pull` too, the clone first
    moves to this checkout's HEAD (each stage records the commit it ran)."""
    root = workdir / size
    log = workdir / f"{size}.log"
    if previous is None:
        clone(root, size, overrides)
        log.write_text("")
    elif pull:
        update(root, size, overrides)
    stages = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    if until:
        stages = stages[: stages.index(until) + 1]
    entry: dict[str, Any] = {"settings": {**SIZE_PARAMS.get(size, {}), **overrides},
                             "stages": {}, "log": str(log)}  # fmt: skip
    done = {k: v for k, v in (previous or {}).get("stages", {}).items() if v["ok"]}
    entry["stages"].update(done)
    start = time.perf_counter() - sum(r["seconds"] for r in done.values())
    for name in (s for s in stages if s not in done):
        print(f"[{size}] {name} ...", flush=True)
        result = run_stage(root, name, log)
        entry["stages"][name] = result
        save(entry)
        print(f"[{size}] {name}: {result['seconds']} s, peak {result['peak_rss_gb']} GB"
              + ("" if result["ok"] else " FAILED"), flush=True)  # fmt: skip
        if not result["ok"]:
            break
    entry["total_seconds"] = round(time.perf_counter() - start, 1)
    entry["completed"] = all(r["ok"] for r in entry["stages"].values()) and len(
        entry["stages"]) == len(stages)  # fmt: skip
    entry["max_peak_rss_gb"] = max((r["peak_rss_gb"] or 0) for r in entry["stages"].values())
    summary = root / "data/raw/source.json"
    if summary.is_file():
        entry["data"] = json.loads(summary.read_text()).get("rows")
    entry["quality"] = quality(root)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", required=True,
                        choices=["tiny", "small", "medium", "large", "xl"])  # fmt: skip
    parser.add_argument("--until", default=None, help="last stage to run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recfusion-scale"))
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on in the clone of an earlier run, after the stages it finished",
    )
    parser.add_argument(
        "--pull",
        action="store_true",
        help="with --resume: first bring the clone to this checkout's HEAD",
    )
    args = parser.parse_args()
    if args.pull and not args.resume:
        parser.error("--pull goes with --resume")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    sizes = results.setdefault("sizes", {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    for size in args.size:
        previous = sizes.get(size) if args.resume else None
        at = previous["commit"] if previous else commit  # the code the clone was made at

        def save(entry: dict, size: str = size, at: str = at) -> None:
            sizes[size] = {**entry, "commit": at, "machine": machine()}
            RESULTS.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

        # a resumed run keeps the settings it started with (a new --set adds to them)
        settings = {**(previous or {}).get("settings", {}), **overrides}
        save(run_size(size, args.until, settings, args.workdir, save, previous, args.pull))
        print(json.dumps({k: v for k, v in sizes[size].items() if k != "stages"}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
