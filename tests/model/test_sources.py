"""Candidate sources on the tiny trained model: exclusions hold, ranks agree with the sources'
own orderings, every source explains its items."""

from __future__ import annotations

import numpy as np

from recfusion.evaluation.metrics import top_k
from recfusion.fusion.candidates import gather, source_ranking
from recfusion.fusion.sources import (
    CategoryPopularitySource,
    ContentSource,
    EaseSource,
    PopularitySource,
    TwoTowerSource,
    build_history,
)


def test_gather_sources_and_reasons(trained) -> None:
    cfg, data, fitted = trained
    history = build_history(data, ["train"])
    counts = np.asarray(history.matrix.sum(axis=0)).ravel()
    tower = fitted.model.user_tower
    sources = [
        TwoTowerSource(data, lambda x: tower(x, training=False).numpy(), fitted.item_embeddings),
        EaseSource(data, history.matrix, 100.0),
        PopularitySource(counts),
        CategoryPopularitySource(data, counts),
        ContentSource(data),
    ]
    seen = data.items_by_user(["train"])
    rows = np.array(sorted(seen))[:40]
    exclude = [seen[r] for r in rows]
    c = gather(sources, rows, history, exclude, per_source=20)
    for u, r in enumerate(rows):
        got = c.items[u][c.items[u] >= 0]
        assert not np.isin(got, seen[r]).any(), "an excluded item came back"
        assert len(np.unique(got)) == len(got)
    for s in sources:
        own = top_k(s.scores(rows, history), 20, exclude)
        ranked = source_ranking(c, s.name, 20)
        # the same items at each rank (ties may swap places)
        assert np.mean(own == ranked) > 0.95, s.name
        reason = s.explain_item(int(rows[0]), int(ranked[0, 0]), history)
        assert isinstance(reason, str) and reason, s.name
