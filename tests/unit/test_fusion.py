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


@pytest.mark.parametrize("k", [1, 2])
def test_top_is_sorted_by_fused_score(k: int) -> None:
    c = cands()
    assert c.top(np.array([[3.0, 2.0, 1.0, 9.0]]), k).tolist() == [[10, 11][:k]]
