"""The tiny synthetic data prepared, and the two-tower model trained once on it by the
`train_retrieval` stage's `run`, shared by the model tests."""

from __future__ import annotations

import pytest

from recfusion.models.dataset import ModelData, PreparedData, build_model_data
from recfusion.models.inputs import Vocabularies
from recfusion.stages import prepare, train_retrieval
from tests.conftest import repo_config

TRAIN = {"train": {"retrieval": {"epochs": 6, "batch_size": 256, "max_eval_users": 0,
                                 "patience": 3}}}  # fmt: skip


def prepared_data(p: prepare.Prepared) -> PreparedData:
    """prepare's output as the training stages read it back (`read_prepared`)."""
    return PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies))


def model_data(tables, overrides=None) -> tuple[object, ModelData]:
    cfg = repo_config({**TRAIN, **(overrides or {})})
    return cfg, build_model_data(prepared_data(prepare.run(cfg, tables)), cfg.train)


@pytest.fixture(scope="session")
def tiny_model_data(tiny_tables):
    return model_data(tiny_tables)


@pytest.fixture(scope="session")
def trained_retrieval(tiny_model_data, tmp_path_factory) -> train_retrieval.TrainedRetrieval:
    """`train_retrieval.run` on the tiny data with the TRAIN settings."""
    cfg, data = tiny_model_data
    inputs = train_retrieval.RetrievalInputs(data, tmp_path_factory.mktemp("ckpt"))
    return train_retrieval.run(cfg, inputs)


@pytest.fixture(scope="session")
def trained(tiny_model_data, trained_retrieval):
    cfg, data = tiny_model_data
    return cfg, data, trained_retrieval.fitted
