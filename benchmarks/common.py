"""Shared benchmark helpers: MovieLens-100K prepared with the published protocol."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from fetch_movielens import fetch
from recfusion.config import Config, load_config, with_overrides
from recfusion.data.movielens import load as load_movielens
from recfusion.stages import prepare

RESULTS = Path(__file__).parent / "results"


def movielens_config(overrides: dict[str, Any] | None = None) -> Config:
    """params.yaml with the benchmark protocol: MovieLens, random per-user 80/10/10, ratings
    as positives."""
    base = {
        "ingest": {"source": "movielens", "movielens": {"path": "data/external/ml-100k"}},
        "prepare": {"split": {"method": "random_ratio", "val_frac": 0.1, "test_frac": 0.1}},
        "train": {"positive_events": ["rating"]},
    }
    return with_overrides(load_config("params.yaml", base), overrides or {})


def prepared_movielens(cfg: Config) -> prepare.Prepared:
    fetch(Path(cfg.ingest.movielens.path))
    return prepare.run(cfg, load_movielens(cfg.ingest.movielens))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2, sort_keys=True) + "\n")
    return path
