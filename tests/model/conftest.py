"""A two-tower model trained once on the tiny synthetic data, shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recfusion.models.dataset import ModelData, PreparedData, build_model_data
from recfusion.models.features import Vocabularies
from recfusion.stages import prepare
from tests.conftest import repo_config

TRAIN = {"train": {"retrieval": {"epochs": 6, "batch_size": 256, "max_eval_users": 0,
                                 "patience": 3}}}  # fmt: skip


def model_data(tables, overrides=None) -> tuple[object, ModelData]:
    cfg = repo_config({**TRAIN, **(overrides or {})})
    p = prepare.run(cfg, tables)
    prepared = PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies))
    return cfg, build_model_data(prepared, cfg.train)


@pytest.fixture(scope="session")
def tiny_model_data(tiny_tables):
    return model_data(tiny_tables)


@pytest.fixture(scope="session")
def trained(tiny_model_data, tmp_path_factory):
    from recfusion.models.devices import plan_devices
    from recfusion.models.retrieval import fit_retrieval

    cfg, data = tiny_model_data
    fitted = fit_retrieval(data, cfg.train, cfg.seed, Path(tmp_path_factory.mktemp("ckpt")),
                           plan_devices("cpu"))  # fmt: skip
    return cfg, data, fitted
