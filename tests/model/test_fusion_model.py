"""Fusion on the tiny trained model: fitted fusion survives save/load, every method returns
valid lists without seen items, and every recommendation has a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recfusion.fusion.fused import FittedFusion, fit_fusion, rank_all, reasons
from recfusion.fusion.period import build_period
from recfusion.fusion.sources import ease_fit


def test_fit_save_load_rank_and_explain(trained, tmp_path: Path) -> None:
    cfg, data, fitted = trained
    tower = fitted.model.user_tower

    def encode(x):
        return tower(x, training=False).numpy()

    fc = cfg.fusion
    val = build_period(data, ["train"], ["val"], encode, fitted.item_embeddings, ease_fit(fc), 30)
    fusion = fit_fusion(val, fc, cfg.seed)
    fusion.save(tmp_path / "fusion")
    loaded = FittedFusion.load(tmp_path / "fusion")
    assert loaded.weights == fusion.weights
    np.testing.assert_allclose(loaded.stack(val), fusion.stack(val))

    test = build_period(data, ["train", "val"], ["test"], encode, fitted.item_embeddings,
                        ease_fit(fc), 30)  # fmt: skip
    no_purchases = [np.array([], dtype=np.int64)] * len(test.candidates.rows)
    ranked = rank_all(test, loaded, fc, data, fitted.item_embeddings, no_purchases, 10)
    seen = data.items_by_user(["train", "val"])
    for name, lists in ranked.items():
        assert lists.shape == (len(test.candidates.rows), 10), name
        for u, row in enumerate(test.candidates.rows):
            items = lists[u][lists[u] >= 0]
            assert len(set(items)) == len(items), name
            assert not np.isin(items, seen.get(int(row), [])).any(), name
    why = reasons(test, 0, ranked["fusion:cascade"][0])
    assert len(why) == int((ranked["fusion:cascade"][0] >= 0).sum())
    assert all(src in fc.sources and text for src, text in why)
