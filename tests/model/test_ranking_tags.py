"""Ranking examples and model, and the tags head, on tiny synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.models.devices import plan_devices
from recfusion.models.ranking import fit_ranking, predict
from recfusion.models.ranking_data import (
    ECOMMERCE_HEADS,
    RATING_HEADS,
    heads_for,
    negative_examples,
    observed_examples,
)
from recfusion.models.retrieval import tower_sizes
from recfusion.stages.train_ranking import build_examples, head_reports


def test_impressions_carry_their_session_funnel(tiny_model_data) -> None:
    cfg, data = tiny_model_data
    u, i = data.users.user_ids[0], data.catalog.item_ids[0]
    t = pd.Timestamp("2025-01-01 10:00")
    events = pd.DataFrame({
        "user_id": [u, u, u, u],
        "item_id": [i, i, i, i],
        "event_type": ["view", "click", "add_to_cart", "view"],
        "timestamp": [t, t, t, t + pd.Timedelta(days=1)],
        "session_id": ["s1", "s1", "s1", "s2"],
        "value": [np.nan] * 4,
    })  # fmt: skip
    ex = observed_examples(events, data, ECOMMERCE_HEADS)
    # two impressions: s1 clicked and carted, s2 only viewed
    assert len(ex) == 2
    assert ex.labels["click"].tolist() == [1.0, 0.0]
    assert ex.labels["add_to_cart"].tolist() == [1.0, 0.0]
    assert ex.labels["purchase"].tolist() == [0.0, 0.0]
    assert ex.hour.tolist() == [11, 11]  # hour 10 -> index 11 (0 is unknown)
    assert heads_for(events) == ECOMMERCE_HEADS
    assert heads_for(events.assign(event_type="rating")) == RATING_HEADS


def test_negatives_avoid_touched_items_and_mask_ratings() -> None:
    rng = np.random.default_rng(0)
    touched = {0: np.arange(0, 8)}  # user 0 touched items 0..7 of 10
    hard = {0: np.array([3, 8, 9])}  # 3 is touched, so hard negatives are 8 then 9
    ex = negative_examples(np.array([0]), 10, touched, hard, np.array([50]), 2, RATING_HEADS,
                           np.array([5]), rng)  # fmt: skip
    assert not np.isin(ex.item, touched[0]).any()
    assert ex.item[-2:].tolist() == [8, 9]
    assert (ex.weights["rating"] == 0).all() and (ex.weights["like"] == 1).all()
    assert (ex.labels["like"] == 0).all()


def test_ranking_learns_better_than_chance(tiny_model_data, tmp_path: Path) -> None:
    cfg, data = tiny_model_data
    from recfusion.data.synthetic import generate
    from recfusion.models.dataset import PreparedData
    from recfusion.models.inputs import Vocabularies
    from recfusion.stages import prepare
    from tests.conftest import repo_config

    tables = generate(cfg.ingest.synthetic, cfg.seed, progress=False)
    p = prepare.run(repo_config(), tables)
    prepared = PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies))
    heads, sets = build_examples(cfg, data, prepared, None, np.random.default_rng(0))
    fitted = fit_ranking(data, tower_sizes(data, 32), heads, sets["train"], sets["val"],
                         cfg.train.ranking, cfg.seed, tmp_path / "backup", plan_devices("cpu"))  # fmt: skip
    report = head_reports(fitted.model, heads, sets["val"], sets["test"], data)
    assert report["click"]["auc"] > 0.55
    for h in heads:
        assert 0 <= report[h]["calibration"]["ece"] <= 1
    probs = predict(fitted.model, *sets["test"], data)["click"]
    assert ((probs >= 0) & (probs <= 1)).all()


def test_tags_head_on_frozen_tower(trained, tmp_path: Path) -> None:
    from recfusion.models.tags import fit_tag_head, item_tags, load_frozen_user_tower, tag_matrix
    from recfusion.models.tf_setup import tf

    cfg, data, fitted = trained
    weights = tmp_path / "towers"
    tf.train.Checkpoint(user_tower=fitted.model.user_tower).write(str(weights))
    sizes = tower_sizes(data, cfg.train.retrieval.embedding_dim)
    tower = load_frozen_user_tower(sizes, weights, data.history_len)
    assert not tower.trainable and len(tower.trainable_weights) == 0
    rows = np.arange(5)
    inputs = {"user_id": data.users.id_idx[rows], "gender": data.users.gender[rows],
              "region": data.users.region[rows], "age": data.users.age[rows],
              "history": data.history(["train"])[rows]}  # fmt: skip
    np.testing.assert_allclose(tower(inputs).numpy(),
                               fitted.model.user_tower(inputs, training=False).numpy(), atol=1e-6)  # fmt: skip
    tc = cfg.train.tags
    tag_of_item, cats = item_tags(data, tc.level)
    labels = tag_matrix(data, ["train"], tc.level, tc.min_share, len(cats), tag_of_item)
    # oracle: a user's tags are the tags holding at least min_share of their train positives
    pairs = data.pairs_of(["train"])
    frame = pd.DataFrame({"user": data.users.positions(pairs["user_id"]),
                          "item": data.catalog.positions(pairs["item_id"])})  # fmt: skip
    frame = frame[(frame["user"] >= 0) & (frame["item"] >= 0)]
    share = (
        frame.assign(tag=tag_of_item[frame["item"]])
        .groupby("user")["tag"]
        .value_counts(normalize=True)
    )
    expected = np.zeros_like(labels)
    kept = share[share >= tc.min_share].index
    expected[kept.get_level_values(0), kept.get_level_values(1)] = True
    np.testing.assert_array_equal(labels, expected)
    assert ((share > 0) & (share < tc.min_share)).any()  # the threshold leaves some tags out
    assert not labels[np.setdiff1d(np.arange(len(labels)), frame["user"])].any()  # no history
    users = np.flatnonzero(labels.any(axis=1))
    x = tower({k: v[users] for k, v in {
        "user_id": data.users.id_idx, "gender": data.users.gender, "region": data.users.region,
        "age": data.users.age, "history": data.history(["train"])}.items()}).numpy()  # fmt: skip
    head = fit_tag_head(x, labels[users], tc, cfg.seed)
    assert 0.05 <= head.threshold <= 0.95
