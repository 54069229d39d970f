"""Picks the configured data source and returns the canonical tables."""

from __future__ import annotations

import pandas as pd

from recfusion.config import IngestConfig
from recfusion.data import files, movielens, synthetic


def load_source(cfg: IngestConfig, seed: int, progress: bool = True) -> dict[str, pd.DataFrame]:
    """The canonical tables {users, items, events, queries} of `cfg.source`."""
    if cfg.source == "synthetic":
        return synthetic.generate(cfg.synthetic, seed, progress=progress)
    if cfg.source == "movielens":
        return movielens.load(cfg.movielens)
    return files.load(cfg.files)
