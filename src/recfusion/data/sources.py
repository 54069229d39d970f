"""Picks the configured data source and returns the canonical tables."""

from __future__ import annotations

import pandas as pd

from recfusion.config import IngestConfig
from recfusion.data import files, movielens, synthetic
from recfusion.engine import Engine


def load_source(cfg: IngestConfig, seed: int, progress: bool = True,
                engine: Engine | None = None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """The canonical tables {users, items, events, queries} of `cfg.source` (the synthetic
    generator simulates its chunks of users on `engine`; None = in this process)."""
    if cfg.source == "synthetic":
        return synthetic.generate(cfg.synthetic, seed, progress=progress, engine=engine)
    if cfg.source == "movielens":
        return movielens.load(cfg.movielens)
    return files.load(cfg.files)
