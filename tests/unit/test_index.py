"""The exported top-K index: which kind is chosen, and that the faiss HNSW index finds what
exact search finds."""

from __future__ import annotations

import numpy as np

from recfusion.models.export import build_faiss, choose_index


def test_choose_index() -> None:
    assert choose_index("auto", 1_000, 100_000) == "brute_force"
    assert choose_index("auto", 200_000, 100_000) == "faiss"
    assert choose_index("faiss", 10, 100_000) == "faiss"


def test_faiss_hnsw_recall_against_exact() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(5000, 32)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    queries = items[rng.choice(5000, 200, replace=False)] + 0.1 * rng.normal(size=(200, 32))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    _, approx = build_faiss(items).search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95
