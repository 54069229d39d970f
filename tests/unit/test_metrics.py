"""Ranking metrics on rankings small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recfusion.metrics.ranking import ranking_metrics, top_k


def test_top_k_orders_and_excludes() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, 0.0, 0.2, 0.3]])
    assert top_k(scores, 2).tolist() == [[1, 3], [0, 3]]
    # user 0 already has item 1, user 1 items 0 and 3
    assert top_k(scores, 2, [np.array([1]), np.array([0, 3])]).tolist() == [[3, 2], [2, 1]]


def test_metrics_by_hand() -> None:
    # user 0: ranked [5, 3, 9], relevant {3, 7}: one hit at rank 2
    #   recall@3 = 1/2, precision@3 = 1/3, dcg = 1/log2(3) = 0.6309, idcg = 1 + 0.6309
    #   ndcg = 0.6309 / 1.6309 = 0.3869, mrr = 1/2, map = (1/2) / min(2, 3) = 0.25
    # user 1: ranked [1, 2, 4], relevant {1}: hit at rank 1 -> every metric 1 but precision 1/3
    # user 2: no relevant items -> not counted
    ranked = np.array([[5, 3, 9], [1, 2, 4], [0, 6, 8]])
    relevant = [np.array([3, 7]), np.array([1]), np.array([], dtype=np.int64)]
    m = ranking_metrics(ranked, relevant, [1, 3])
    assert m["recall@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["ndcg@3"] == pytest.approx((0.6309298 / 1.6309298 + 1.0) / 2, rel=1e-6)
    assert m["mrr@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["map@3"] == pytest.approx((0.25 + 1.0) / 2)
    assert m["hit@3"] == pytest.approx(1.0)
    assert m["hit@1"] == pytest.approx(0.5)  # only user 1 hits at rank 1


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="fewer than k=5"):
        ranking_metrics(np.zeros((1, 3), dtype=int), [np.array([1])], [5])
    with pytest.raises(ValueError, match=r"must be \[users, items\]"):
        top_k(np.zeros(3), 2)


def test_ndcg_per_user_matches_the_mean() -> None:
    from recfusion.metrics.ranking import ndcg_per_user

    ranked = np.array([[5, 3, 9], [1, 2, 4]])
    relevant = [np.array([3, 7]), np.array([1])]
    per_user = ndcg_per_user(ranked, relevant, 3)
    assert per_user == pytest.approx([0.6309298 / 1.6309298, 1.0], rel=1e-6)
    assert per_user.mean() == pytest.approx(ranking_metrics(ranked, relevant, [3])["ndcg@3"])


def test_per_user_metrics_average_to_ranking_metrics() -> None:
    from recfusion.metrics.ranking import per_user_metrics

    ranked = np.array([[5, 3, 9], [1, 2, 4], [7, 8, 6]])
    relevant = [np.array([3, 7]), np.array([1]), np.array([], dtype=int)]  # user 2: no positive
    per_user = per_user_metrics(ranked, relevant, [1, 3])
    means = ranking_metrics(ranked, relevant, [1, 3])
    assert set(per_user) == set(means)
    for name, values in per_user.items():
        assert len(values) == 2 and values.mean() == pytest.approx(means[name])
    assert per_user["recall@3"] == pytest.approx([0.5, 1.0])
    assert per_user["mrr@3"] == pytest.approx([0.5, 1.0]) and per_user["hit@1"] == pytest.approx(
        [0, 1]
    )


def test_paired_bootstrap() -> None:
    from recfusion.metrics.ranking import paired_bootstrap

    a = np.array([0.5, 0.6, 0.7, 0.8])
    same = paired_bootstrap(a, a)
    assert same["mean_diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    better = paired_bootstrap(a + 0.1, a)  # every user 0.1 better -> the interval is [0.1, 0.1]
    assert better["ci_low"] == pytest.approx(0.1) and better["ci_high"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(a, a[:2])


def test_sample_users_is_a_seeded_sorted_subset_and_all_below_the_cap() -> None:
    from recfusion.metrics.ranking import sample_users

    rows = np.arange(100, 200)
    assert sample_users(rows, 100, 0) is rows and sample_users(rows, 500, 0) is rows
    a, b = sample_users(rows, 10, 42), sample_users(rows, 10, 42)
    assert len(a) == 10 and len(set(a)) == 10 and set(a) <= set(rows)
    assert a.tolist() == sorted(a.tolist()) and np.array_equal(a, b)  # evaluate = gate
    assert not np.array_equal(a, sample_users(rows, 10, 43))
