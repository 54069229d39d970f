"""The item index behind the two-tower source and semantic search: the exact scan, the faiss HNSW
index above the catalogue-size threshold, and candidate gathering from an index that finds fewer
items than asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recfusion.fusion.candidates import gather
from recfusion.fusion.sources import Source
from recfusion.metrics.ranking import top_k
from recfusion.models.export import build_faiss, save_faiss
from recfusion.models.item_index import ItemIndex


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


ITEMS = unit_rows(300, 16, 0)
QUERIES = unit_rows(20, 16, 1)
EXCLUDE = [np.array([int(np.argmax(ITEMS @ q))]) for q in QUERIES]  # each query's best item


def test_exact_index_is_the_full_scan() -> None:
    index = ItemIndex(ITEMS)
    assert not index.approximate
    assert np.array_equal(index.top(QUERIES, 10, EXCLUDE), top_k(QUERIES @ ITEMS.T, 10, EXCLUDE))


def test_faiss_index_finds_the_exact_top_on_a_small_catalogue() -> None:
    index = ItemIndex(ITEMS, build_faiss(ITEMS))
    assert index.approximate
    found = index.top(QUERIES, 10, EXCLUDE)
    exact = top_k(QUERIES @ ITEMS.T, 10, EXCLUDE)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.95  # HNSW at efSearch 128 over 300 items
    assert not any(np.isin(f, e).any() for f, e in zip(found, EXCLUDE, strict=True))


def test_faiss_index_answers_each_query_when_exclusions_differ_in_size() -> None:
    """Queries are searched in groups of similar exclusion sizes; each answer is still its own
    query's (a mix-up would drop recall far below the exact scan's)."""
    exact_order = np.argsort(-(QUERIES @ ITEMS.T), axis=1)
    exclude = [exact_order[i, : (i % 5) * 15] for i in range(len(QUERIES))]  # 0 to 60 items
    found = ItemIndex(ITEMS, build_faiss(ITEMS)).top(QUERIES, 10, exclude)
    exact = top_k(QUERIES @ ITEMS.T, 10, exclude)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.95
    assert not any(np.isin(f, e).any() for f, e in zip(found, exclude, strict=True))


def test_load_uses_the_exported_index_and_checks_its_size(tmp_path: Path) -> None:
    assert not ItemIndex.load(tmp_path, ITEMS).approximate  # nothing exported: exact scan
    save_faiss(ITEMS, tmp_path / "index.faiss")
    assert ItemIndex.load(tmp_path, ITEMS).approximate
    with pytest.raises(ValueError, match="holds 300 items, the embeddings 299"):
        ItemIndex.load(tmp_path, ITEMS[:-1])


class _Short(Source):
    """Finds only two items per user, padding with -1 as an approximate index may."""

    name = "short"

    def candidates(self, rows, history, n, exclude):
        tops = np.full((len(rows), n), -1)
        tops[:, :2] = [[5, 3]] * len(rows)
        return tops, lambda u, items: items.astype(np.float32)


class _Dense(Source):
    name = "dense"

    def scores(self, rows, history):
        return np.tile(np.arange(8, dtype=np.float32), (len(rows), 1))  # item 7 best


def test_gather_skips_padding_and_ranks_what_was_found() -> None:
    c = gather(
        [_Short(), _Dense()], np.array([0]), None, [np.array([], int)], per_source=3, batch=16
    )  # no history: the batch size is given
    # union of {5, 3} and the dense top 3 {7, 6, 5}
    assert c.items[0].tolist()[:4] == [3, 5, 6, 7]
    assert c.ranks["short"][0, :4].tolist() == [2, 1, 4, 4]  # absent = per_source + 1
    assert c.ranks["dense"][0, :4].tolist() == [4, 3, 2, 1]
    assert c.scores["short"][0, :4].tolist() == [3.0, 5.0, 6.0, 7.0]  # the lookup's scores
