"""Fusion building blocks on candidate sets small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recfusion.fusion import methods
from recfusion.fusion.candidates import CandidateSet, source_ranking
from recfusion.fusion.stacking import labels_of


def cands() -> CandidateSet:
    # one user, candidates items 10, 11, 12 and an empty slot; per source top-2 (n = 2)
    # source a ranks 11 then 10; source b ranks 12 then 11
    return CandidateSet(
        rows=np.array([0]),
        items=np.array([[10, 11, 12, -1]]),
        scores={"a": np.array([[0.5, 0.9, 0.1, 0.0]]), "b": np.array([[1.0, 2.0, 3.0, 0.0]])},
        ranks={"a": np.array([[2, 1, 3, 3]]), "b": np.array([[3, 2, 1, 3]])},
        per_source=2,
    )


def test_normalised_is_min_max_over_valid_slots() -> None:
    np.testing.assert_allclose(methods.normalised(cands(), "a")[0, :3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(methods.normalised(cands(), "b")[0, :3], [0.0, 0.5, 1.0])


def test_rrf_and_borda_by_hand() -> None:
    c = cands()
    # rrf: item 10: a rank 2 -> 1/62; 11: a 1, b 2 -> 1/61 + 1/62; 12: b 1 -> 1/61
    np.testing.assert_allclose(methods.rrf(c)[0, :3], [1 / 62, 1 / 61 + 1 / 62, 1 / 61])
    # borda with n = 2: rank 1 -> 2 points, rank 2 -> 1 point
    np.testing.assert_allclose(methods.borda(c)[0, :3], [1, 2 + 1, 2])
    assert c.top(methods.rrf(c), 3).tolist() == [[11, 12, 10]]


def test_weighted_and_top_skip_empty_slots() -> None:
    c = cands()
    fused = methods.weighted(c, {"a": 1.0, "b": 0.0})
    assert c.top(fused, 4).tolist() == [[11, 10, 12, -1]]
    assert source_ranking(c, "b", 2).tolist() == [[12, 11]]


def test_fit_weights_finds_the_useful_source() -> None:
    c = cands()
    # the user's relevant item is 12, which only source b ranks first
    w = methods.fit_weights(c, [np.array([12])], k=1)
    assert c.top(methods.weighted(c, w), 1).tolist() == [[12]]
    assert w["b"] > w["a"]


def test_labels_of() -> None:
    assert labels_of(cands(), [np.array([12, 99])]).tolist() == [[0, 0, 1, 0]]


def test_ease_closed_form_on_a_tiny_matrix() -> None:
    from recfusion.fusion.sources import EaseSource, ease_weights

    class _Data:  # EASE needs nothing else from the model data
        pass

    # two users who chose items {0, 1} and one who chose {0, 2}: item 1 co-occurs with 0
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    ease = EaseSource(_Data(), ease_weights(x, l2=1.0))  # type: ignore[arg-type]
    assert np.allclose(np.diag(ease.b), 0.0)
    gram = x.T @ x + np.eye(3)
    p = np.linalg.inv(gram)
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(ease.b, expected, rtol=1e-5)
    # a user who has item 0 gets item 1 (co-chosen twice) above item 2 (once)
    scores = np.asarray(sp.csr_matrix([[1, 0, 0]], dtype=np.float32) @ ease.b)[0]
    assert scores[1] > scores[2]


def planted_blocks(seed: int = 0) -> sp.csr_matrix:
    """600 users, 240 items in 8 blocks of 30; each user chooses 2-12 items of one block, the
    block's first 6 items far more often (a head) than the other 24 (its tail)."""
    rng = np.random.default_rng(seed)
    weights = np.r_[np.full(6, 0.1), np.full(24, 0.4 / 24)]
    rows, cols = [], []
    for u in range(600):
        block = rng.integers(0, 8)
        chosen = np.unique(block * 30 + rng.choice(30, size=rng.integers(2, 13), p=weights))
        rows += [u] * len(chosen)
        cols += chosen.tolist()
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(600, 240))


def test_item_weights_are_dense_ease_up_to_the_threshold_then_sparse() -> None:
    from recfusion.fusion.sources import (
        EaseSource,
        ease_weights,
        item_to_item_weights,
        sparse_ease_weights,
    )

    x = planted_blocks()
    dense = item_to_item_weights(x, 10.0, dense_max_items=240, head_items=48, neighbours=20)
    np.testing.assert_array_equal(dense, ease_weights(x, 10.0))
    sparse = item_to_item_weights(x, 10.0, dense_max_items=239, head_items=48, neighbours=20)
    assert sp.issparse(sparse) and sparse.shape == (240, 240)
    assert sparse.getnnz(axis=1).max() <= 40  # EASE's 20 and the tail's 20 at most
    np.testing.assert_array_equal(sparse.toarray(), sparse_ease_weights(x, 10.0, 48, 20).toarray())
    # the head (6 items of each block: 48) keeps EASE's strongest neighbours
    counts = np.asarray(x.getnnz(axis=0)).ravel()
    head = np.argsort(-counts, kind="stable")[:48]
    overlap = [len(set(np.argsort(-dense[i])[:5]) & set(sparse[i].indices[
        np.argsort(-sparse[i].data)[:5]])) / 5 for i in head]  # fmt: skip
    assert np.mean(overlap) >= 0.8, np.mean(overlap)
    # a tail item's neighbours are of its own block, as the planted tastes say
    tail = np.setdiff1d(np.arange(240), head)
    positive = [sparse[i].indices[sparse[i].data > 0] for i in tail]
    assert np.mean([np.mean(p // 30 == i // 30) for i, p in zip(tail, positive, strict=True)
                    if len(p)]) >= 0.95  # fmt: skip
    # ... and reach its block's head items too (only head-to-head pairs are left to EASE)
    assert np.mean([np.isin(i // 30 * 30 + np.arange(6), p).any()
                    for i, p in zip(tail, positive, strict=True)]) >= 0.9  # fmt: skip
    # a user who chose one tail item gets their block first, with a reason
    from types import SimpleNamespace

    titles = np.array([f"item {i}" for i in range(240)], dtype=object)
    catalog = SimpleNamespace(titles=titles, item_ids=titles)
    source = EaseSource(SimpleNamespace(catalog=catalog), sparse)  # type: ignore[arg-type]
    one = sp.csr_matrix(([1.0], ([0], [tail[0]])), shape=(1, 240), dtype=np.float32)

    class _History:
        matrix = one

    scores = source.scores(np.array([0]), _History())  # type: ignore[arg-type]
    assert scores.shape == (1, 240)
    best = np.argsort(-scores[0])[:10]
    assert np.all(best // 30 == tail[0] // 30), best
    said = source.explain_item(0, int(best[0]), _History())  # type: ignore[arg-type]
    assert said == f"people who chose 'item {tail[0]}' also chose this"
    unrelated = int((tail[0] // 30 + 4) % 8 * 30 + 20)  # no weight links it to the history
    assert source.explain_item(0, unrelated, _History()) == "popular right now"  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [1, 2])
def test_top_is_sorted_by_fused_score(k: int) -> None:
    c = cands()
    assert c.top(np.array([[3.0, 2.0, 1.0, 9.0]]), k).tolist() == [[10, 11][:k]]


def test_spd_inverse_matches_numpy_in_the_matrix_own_memory() -> None:
    from recfusion.fusion.sources import spd_inverse

    m = np.random.default_rng(0).standard_normal((300, 300))
    a = m @ m.T + 300 * np.eye(300)
    expected = np.linalg.inv(a)
    work = a.copy()
    got = spd_inverse(work, block=64)  # several bands, a last one shorter
    assert np.shares_memory(got, work) and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        spd_inverse(np.array([[1.0, 2.0], [2.0, 1.0]]))
