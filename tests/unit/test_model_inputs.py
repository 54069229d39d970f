"""Model feature arrays: histories, target removal, vocab lookups (hand-checked)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recfusion.models.inputs import Vocab, history_without_target, last_items


def test_vocab_lookup_is_one_based_with_zero_for_unknown() -> None:
    v = Vocab(("a", "b", "c"))
    assert v.size == 4
    assert v.lookup(["b", "zzz", None, "a"]).tolist() == [2, 0, 0, 1]


def test_history_without_target() -> None:
    # rows are the last 4 items (oldest first); keep the last 3 that are not the target
    history = np.array([[5, 6, 7, 8], [0, 0, 6, 9], [1, 2, 3, 4]])
    target = np.array([7, 9, 99])
    out = history_without_target(history, target, 3)
    # row 0: 7 removed -> [5, 6, 8]; row 1: 9 removed -> [0, 0, 6];
    # row 2: target absent -> the oldest (1) falls off -> [2, 3, 4]
    assert out.tolist() == [[5, 6, 8], [0, 0, 6], [2, 3, 4]]


class _Users:
    def positions(self, ids):
        return pd.Index(["u1", "u2"]).get_indexer(pd.Index(list(ids)))

    def __len__(self):
        return 2


class _Catalog:
    id_idx = np.array([1, 2, 0, 3])  # item "c" has no id index (cold)

    def positions(self, ids):
        return pd.Index(["a", "b", "c", "d"]).get_indexer(pd.Index(list(ids)))


def test_last_items_keeps_order_and_skips_unknown() -> None:
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u1"],
                          "item_id": ["a", "b", "c", "d", "d"]})  # fmt: skip
    out = last_items(pairs, _Users(), _Catalog(), 2)
    # u1's known items in order: a(1), b(2), d(3) -> last two [2, 3]; u2: d -> [0, 3]
    assert out.tolist() == [[2, 3], [0, 3]]


def test_group_by_user_keeps_each_users_order() -> None:
    from recfusion.models.dataset import group_by_user

    got = group_by_user(np.array([3, 1, 3, 0, 1, 3]), np.array([9, 8, 7, 6, 5, 4]))
    assert list(got) == [0, 1, 3]  # users ascending
    assert {u: v.tolist() for u, v in got.items()} == {0: [6], 1: [8, 5], 3: [9, 7, 4]}
    assert all(v.dtype == np.int64 for v in got.values())
    assert group_by_user(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == {}
