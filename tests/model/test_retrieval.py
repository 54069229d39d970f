"""Two-tower behaviour on tiny synthetic data: it learns categories, serves cold items by
content, beats popularity, resumes from checkpoints, and exports loadable SavedModels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recfusion.models.inputs import user_inputs
from recfusion.models.retrieval import holdout_report
from tests.conftest import REPO


def leaf_of(data, items_df):
    cat = items_df.set_index("item_id")["category"]
    return np.array([cat[i] for i in data.catalog.item_ids])


def ranked(encode, items: np.ndarray, data, history_items: np.ndarray, k: int) -> np.ndarray:
    """Top-k catalogue positions for a new user (no id) with the given history positions, by a
    user encoder (inputs -> embeddings) and the item embeddings."""
    history = np.zeros((1, data.history_len), dtype=np.int32)
    ids = data.catalog.id_idx[history_items][-data.history_len :]
    history[0, -len(ids) :] = ids
    inputs = user_inputs(data.users, np.array([0]), history)
    inputs["user_id"] = np.array([0], dtype=np.int32)
    scores = (encode(inputs) @ items.T)[0]
    scores[history_items] = -np.inf
    return np.argsort(-scores)[:k]


def recommend(fitted, data, history_items: np.ndarray, k: int) -> np.ndarray:
    def encode(inputs):
        return fitted.model.user_tower(inputs, training=False).numpy()

    return ranked(encode, fitted.item_embeddings, data, history_items, k)


def one_category_shares(encode, items: np.ndarray, data, items_df) -> list[float]:
    """For each of the three most common leaves among warm items: the share of that leaf in the
    top 10 of a new user who bought ten of its items and nothing else."""
    leaf = leaf_of(data, items_df)
    warm = data.catalog.id_idx > 0
    leaves, counts = np.unique(leaf[warm], return_counts=True)
    shares = []
    for target in leaves[np.argsort(-counts)[:3]]:
        history = np.flatnonzero(warm & (leaf == target))[:10]
        shares.append(float(np.mean(leaf[ranked(encode, items, data, history, 10)] == target)))
    return shares


def test_a_user_who_only_buys_one_category_gets_it_back(trained, tiny_tables) -> None:
    cfg, data, fitted = trained
    shares = one_category_shares(lambda x: fitted.model.user_tower(x, training=False).numpy(),
                                 fitted.item_embeddings, data, tiny_tables["items"])  # fmt: skip
    # 48 leaves: a category-blind model would give about 0.02. The tiny data makes the share
    # vary with the seed: seeds 42, 1, 2, 3 gave a mean of 0.58 (0.17 to 0.83 per seed)
    assert np.mean(shares) >= 0.3, shares


def test_a_new_item_is_retrievable_by_its_content(trained, tiny_tables) -> None:
    cfg, data, fitted = trained
    items = tiny_tables["items"].set_index("item_id")
    leaf = leaf_of(data, tiny_tables["items"])
    brand = np.array([items.loc[i, "brand"] for i in data.catalog.item_ids])
    cold = np.flatnonzero(data.catalog.id_idx == 0)
    assert len(cold) > 0
    ranks, random_ranks = [], []
    rng = np.random.default_rng(0)
    for c in cold[:15]:
        fans = np.flatnonzero((data.catalog.id_idx > 0) & (leaf == leaf[c]))
        if len(fans) < 3:
            continue
        same_brand = fans[brand[fans] == brand[c]]
        history = np.concatenate([same_brand, fans])[:10]
        order = recommend(fitted, data, history, len(data.catalog))
        ranks.append(int(np.flatnonzero(order == c)[0]))
        other = rng.choice(np.flatnonzero(data.catalog.id_idx > 0), 10, replace=False)
        order = recommend(fitted, data, other, len(data.catalog))
        random_ranks.append(int(np.flatnonzero(order == c)[0]))
    n = len(data.catalog)
    # the new item sits in the top 10% for users who like its category and brand,
    # and far lower for users with unrelated histories
    assert np.median(ranks) < 0.1 * n, ranks
    assert np.median(ranks) < 0.5 * np.median(random_ranks)


def test_learns_far_more_than_a_random_order_on_test(trained) -> None:
    """On the tiny data (300 users) the two-tower and popularity trade places from seed to seed
    (two of eight seeds put the two-tower ahead), so that comparison is the benchmark's, on the
    default data: benchmarks/results/retrieval_synthetic.json (about 3x popularity). Here: it
    learned the data, far above any fixed order of the catalogue."""
    from recfusion.models.retrieval import build_eval_set, popularity_metrics

    cfg, data, fitted = trained
    report = holdout_report(fitted, data, [10], cfg.seed)
    two_tower = report["all"]["two_tower"]["ndcg@10"]
    test = build_eval_set(data.users, data.history(["train", "val"]),
                          data.items_by_user(["train", "val"]), data.items_by_user(["test"]),
                          0, cfg.seed)  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    orders = [popularity_metrics(rng.random(len(data.catalog)), test, [10])["ndcg@10"]
              for _ in range(5)]  # fmt: skip
    assert two_tower > 3 * np.mean(orders), (two_tower, orders)
    assert report["cold_items"]["users"] > 0


def test_scoring_in_row_batches_ranks_as_all_at_once(trained, monkeypatch) -> None:
    """A large catalogue is scored a few users at a time (metrics.ranking.rows_per_batch), so
    memory stays bounded; the metrics are those of scoring every user at once."""
    from recfusion.metrics import ranking
    from recfusion.models.retrieval import build_eval_set, evaluate, popularity_metrics

    cfg, data, fitted = trained
    test = build_eval_set(data.users, data.history(["train", "val"]),
                          data.items_by_user(["train", "val"]), data.items_by_user(["test"]),
                          0, cfg.seed)  # fmt: skip
    counts = np.random.default_rng(0).integers(0, 5, len(data.catalog)).astype(float)  # ties
    tower, items = fitted.model.user_tower, fitted.item_embeddings
    whole = popularity_metrics(counts, test, [5, 10]), evaluate(tower, items, test, [10])
    assert ranking.rows_per_batch(len(data.catalog)) >= len(test)  # one batch on tiny data
    monkeypatch.setattr(ranking, "SCORE_CELLS", 7 * len(data.catalog))  # 7 users a batch
    batched = popularity_metrics(counts, test, [5, 10]), evaluate(tower, items, test, [10])
    assert batched[0] == whole[0]
    assert batched[1] == pytest.approx(whole[1], abs=1e-9)  # a weighted mean of batch means


def test_training_resumes_from_checkpoint(tiny_model_data, tmp_path: Path, caplog) -> None:
    from recfusion.models.devices import plan_devices
    from recfusion.models.retrieval import fit_retrieval

    cfg, data = tiny_model_data
    plan = plan_devices("cpu")
    short, _ = model_data_cfg(cfg, epochs=2)
    first = fit_retrieval(data, short.train, cfg.seed, tmp_path, plan)
    assert [e["epoch"] for e in first.state["history"]] == [1, 2]
    longer, _ = model_data_cfg(cfg, epochs=3)
    caplog.set_level("INFO")
    second = fit_retrieval(data, longer.train, cfg.seed, tmp_path, plan)
    assert "resuming after epoch 2" in caplog.text
    assert [e["epoch"] for e in second.state["history"]] == [1, 2, 3]
    assert second.state["history"][:2] == first.state["history"]


def model_data_cfg(cfg, epochs: int):
    from recfusion.config import with_overrides

    return with_overrides(cfg, {"train": {"retrieval": {"epochs": epochs, "patience": 9}}}), None


def test_exports_load_and_agree(trained, trained_retrieval, tmp_path: Path) -> None:
    from recfusion.models.export import load_retrieval
    from recfusion.models.tf_setup import tf
    from recfusion.stages import train_retrieval

    cfg, data, fitted = trained
    train_retrieval.write_outputs(trained_retrieval, tmp_path / "retrieval", tmp_path / "reports")
    rows = np.arange(3)
    inputs = user_inputs(data.users, rows, data.history(["train"])[rows])
    expected = fitted.model.user_tower(inputs, training=False).numpy()
    tower = tf.saved_model.load(str(tmp_path / "retrieval/user_tower"))
    got = tower.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(got["embedding"].numpy(), expected, atol=1e-5)
    index = tf.saved_model.load(str(tmp_path / "retrieval/index"))
    top = index.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    best = np.argmax(expected @ fitted.item_embeddings.T, axis=1)
    assert [x.decode() for x in top["item_ids"].numpy()[:, 0]] == list(data.catalog.item_ids[best])
    meta = json.loads((tmp_path / "retrieval/meta.json").read_text())
    assert meta["index"] == "brute_force"
    loaded = load_retrieval(data, tmp_path / "retrieval")
    np.testing.assert_array_equal(loaded.items, fitted.item_embeddings)
    np.testing.assert_allclose(loaded.encode(inputs), expected, atol=1e-5)
    assert not loaded.item_index.approximate
    assert json.loads((tmp_path / "reports/retrieval.json").read_text())["best_epoch"] >= 1


def test_two_logical_devices_train_with_mirrored_strategy() -> None:
    script = """
from recfusion.models.devices import split_cpu
split_cpu(2)
from recfusion.models.devices import plan_devices
from recfusion.models.retrieval import fit_retrieval
from tests.conftest import repo_config
from tests.model.conftest import model_data
from recfusion.data.synthetic import generate
import tempfile, pathlib, json, math
cfg = repo_config()
tables = generate(cfg.ingest.synthetic, cfg.seed, progress=False)
cfg, data = model_data(tables, {"train": {"retrieval": {"epochs": 1}}})
plan = plan_devices("cpu")
with tempfile.TemporaryDirectory() as tmp:
    fitted = fit_retrieval(data, cfg.train, cfg.seed, pathlib.Path(tmp), plan)
print(json.dumps({"strategy": type(plan.strategy).__name__,
                  "replicas": plan.strategy.num_replicas_in_sync,
                  "loss": fitted.state["history"][0]["loss"]}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["strategy"] == "MirroredStrategy" and out["replicas"] == 2
    assert np.isfinite(out["loss"])


def test_gpu_request_without_gpu_is_a_clear_error() -> None:
    from recfusion.models.devices import plan_devices
    from recfusion.models.tf_setup import tf

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="sees no GPU"):
        plan_devices("gpu")
