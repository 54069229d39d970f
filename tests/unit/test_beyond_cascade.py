"""Beyond-accuracy measures and the cascade's rules and MMR, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recfusion.evaluation.beyond import (
    coverage,
    intra_list_diversity,
    long_tail_items,
    long_tail_share,
    novelty,
)
from recfusion.fusion.candidates import CandidateSet
from recfusion.fusion.cascade import apply_rules, mmr_rerank


def test_coverage_and_long_tail() -> None:
    ranked = np.array([[0, 1], [1, -1]])
    assert coverage(ranked, 4) == 0.5  # items 0 and 1 of 4
    counts = np.array([70, 20, 5, 5])  # item 0 holds 70%, with item 1 90% >= 80% -> head {0, 1}
    tail = long_tail_items(counts, 0.8)
    assert tail.tolist() == [False, False, True, True]
    assert long_tail_share(np.array([[0, 2, 3]]), tail) == pytest.approx(2 / 3)


def test_diversity_and_novelty() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert intra_list_diversity(np.array([[0, 1]]), emb) == pytest.approx(0.0)  # identical
    assert intra_list_diversity(np.array([[0, 2]]), emb) == pytest.approx(1.0)  # orthogonal
    # item chosen by 3 of 7 users: p = (3 + 1) / (7 + 1) = 0.5 -> 1 bit
    assert novelty(np.array([[0]]), np.array([3]), 7) == pytest.approx(1.0)


def cands() -> CandidateSet:
    items = np.array([[0, 1, 2, 3]])
    zeros = np.zeros((1, 4))
    return CandidateSet(np.array([0]), items, {"a": zeros}, {"a": zeros.astype(int)}, 4)


def test_rules_drop_purchased_and_out_of_stock() -> None:
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    out = apply_rules(cands(), scores, np.array([True, False, True, True]), [np.array([2])])
    assert np.isinf(out[0, 1]) and np.isinf(out[0, 2]) and out[0, 0] == 4.0


def test_mmr_trades_relevance_for_diversity_and_caps_brands() -> None:
    # items 0 and 1 are near-identical and best scored; item 2 differs
    emb = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.7, 0.7]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.array([[1.0, 0.95, 0.6, 0.1]])
    brands = np.array([1, 2, 3, 4])
    plain = mmr_rerank(cands(), scores, emb, brands, 2, diversity=0.0, max_per_brand=0)
    assert plain.tolist() == [[0, 1]]
    diverse = mmr_rerank(cands(), scores, emb, brands, 2, diversity=0.7, max_per_brand=0)
    assert diverse.tolist() == [[0, 2]]
    same_brand = np.array([1, 1, 1, 2])
    capped = mmr_rerank(cands(), scores, emb, same_brand, 2, diversity=0.0, max_per_brand=1)
    assert capped.tolist() == [[0, 3]]


def test_slices_and_gap_skip_tiny_groups() -> None:
    from recfusion.evaluation.slices import MIN_GROUP_USERS, slice_ndcg, slice_ndcg_per_user

    n = MIN_GROUP_USERS
    # users 0..n-1 hit their item at rank 1 (NDCG 1), users n..2n-1 miss (0), one tiny group user
    ranked = np.array([[1, 2]] * (2 * n + 1))
    relevant = [np.array([1])] * n + [np.array([9])] * n + [np.array([1])]
    masks = {"g": {"a": np.r_[np.ones(n, bool), np.zeros(n + 1, bool)],
                   "b": np.r_[np.zeros(n, bool), np.ones(n, bool), [False]],
                   "tiny": np.r_[np.zeros(2 * n, bool), [True]]}}  # fmt: skip
    tail = np.zeros(10, dtype=bool)
    tail[9] = True
    out = slice_ndcg(ranked, relevant, masks, tail, 2)
    assert out["g"]["groups"] == {"a": 1.0, "b": 0.0, "tiny": 1.0}
    assert out["g"]["gap"] == 1.0  # a vs b; the one-user group is not counted
    assert out["long_tail_items"] == {"ndcg": 0.0, "users": n}
    # per user, in user order: the vectors the gate pairs between two models
    per = slice_ndcg_per_user(ranked, relevant, masks, tail, 2)
    assert per["g=a"].tolist() == [1.0] * n and per["g=b"].tolist() == [0.0] * n
    assert per["g=tiny"].tolist() == [1.0] and per["long_tail_items"].tolist() == [0.0] * n


def test_items_without_a_brand_are_not_capped_as_one_brand(tiny_tables) -> None:
    """A missing brand is no brand: on a catalogue without brands (MovieLens, files without a
    brand column) the prepared brand index is 0 for every item, and the cascade's cap per brand
    leaves the list whole instead of keeping `max_per_brand` items."""
    from recfusion.models.inputs import Vocabularies, build_catalog
    from recfusion.stages import prepare
    from tests.conftest import repo_config

    cfg = repo_config()
    tables = {**tiny_tables, "items": tiny_tables["items"].assign(brand=None)}
    p = prepare.run(cfg, tables)
    assert p.vocabularies["brand"] == []
    catalog = build_catalog(p.items, Vocabularies.from_lists(p.vocabularies), 4)
    assert (catalog.brand == 0).all()
    emb = np.eye(4)
    out = mmr_rerank(cands(), np.array([[4.0, 3.0, 2.0, 1.0]]), emb, catalog.brand[:4], 4,
                     diversity=0.0, max_per_brand=1)  # fmt: skip
    assert out.tolist() == [[0, 1, 2, 3]]
