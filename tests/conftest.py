"""Shared fixtures: the repo's params with overrides, and tiny synthetic tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recfusion.config import Config, load_config
from recfusion.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
TINY = {"ingest": {"synthetic": {"size": "tiny"}}}


def repo_config(overrides: dict[str, Any] | None = None) -> Config:
    """The repository's params.yaml at the tiny size, with `overrides` merged in."""
    cfg = load_config(PARAMS, TINY)
    if not overrides:
        return cfg
    import dataclasses

    from recfusion.config import merge_overrides, parse_dataclass

    raw = merge_overrides(dataclasses.asdict(cfg), overrides, source="test")
    return parse_dataclass(Config, raw, source="test")


@pytest.fixture(scope="session")
def tiny_cfg() -> Config:
    return repo_config()


@pytest.fixture(scope="session")
def tiny_tables(tiny_cfg: Config) -> dict[str, pd.DataFrame]:
    return generate(tiny_cfg.ingest.synthetic, tiny_cfg.seed, progress=False)
