"""Candidate sources on the tiny trained model: exclusions hold, ranks agree with the sources'
own orderings, every source explains its items."""

from __future__ import annotations

import numpy as np

from recfusion.fusion.candidates import gather, source_ranking
from recfusion.fusion.period import fit_sources
from recfusion.fusion.sources import Source, ease_weights
from recfusion.metrics.ranking import top_k
from recfusion.models.dataset import History, ModelData


def train_sources(data: ModelData, fitted) -> tuple[History, list[Source]]:
    """Every candidate source fitted on the train split, the two-tower one on `fitted`."""
    tower = fitted.model.user_tower
    fs = fit_sources(data, ["train"], lambda x: tower(x, training=False).numpy(),
                     fitted.item_embeddings, lambda x: ease_weights(x, 100.0))  # fmt: skip
    return fs.history, fs.sources


def test_gather_sources_and_reasons(trained) -> None:
    cfg, data, fitted = trained
    history, sources = train_sources(data, fitted)
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


def with_event(history: History, data, row: int, item: int) -> History:
    """`history` plus one new positive: user `row` chose catalogue item `item` just now."""
    matrix = history.matrix.tolil(copy=True)
    matrix[row, item] = 1.0
    recent = history.recent.copy()
    recent[row] = np.append(recent[row][1:], data.catalog.id_idx[item])  # oldest first
    return History(matrix.tocsr(), recent, history.splits)


def test_an_event_of_one_user_changes_no_other_users_candidates(trained) -> None:
    """Invariance: the fitted sources score a user from that user's own history, so a new event
    of user A leaves every other user's candidates, source scores and ranks (what each fusion
    method combines) exactly as they were, and changes A's own."""
    cfg, data, fitted = trained
    history, sources = train_sources(data, fitted)
    seen = data.items_by_user(["train"])
    users = np.array(sorted(seen))[:30]
    a, others = int(users[0]), users[1:]
    # A's new item: one the two-tower model knows, that A never chose
    item = int(next(i for i in np.flatnonzero(data.catalog.id_idx > 0) if i not in seen[a]))
    changed = with_event(history, data, a, item)
    exclude = [seen[r] for r in others]
    before = gather(sources, others, history, exclude, per_source=20)
    after = gather(sources, others, changed, exclude, per_source=20)
    np.testing.assert_array_equal(before.items, after.items)
    for name in before.scores:
        np.testing.assert_array_equal(before.scores[name], after.scores[name], err_msg=name)
        np.testing.assert_array_equal(before.ranks[name], after.ranks[name], err_msg=name)
    own_before = gather(sources, np.array([a]), history, [seen[a]], per_source=20)
    own_after = gather(sources, np.array([a]), changed, [seen[a]], per_source=20)
    assert any(
        not np.array_equal(own_before.scores[n], own_after.scores[n]) for n in own_before.scores
    ), "user A's own event changed nothing: the test could not tell"
