"""Top-n items by inner product with the item embeddings: an exact scan, or the faiss HNSW index
`train_retrieval` exports for catalogues above `train.retrieval.faiss_above` items.

The two-tower candidate source, semantic search and the ranking model's hard negatives look items
up through here, so the catalogue size set in params decides, in one place, when the approximate
index replaces the scan (benchmarks/index_scale.py measures its recall@10 against the scan: 0.999
at 100K items). The index searches queries in groups of similar exclusion counts, each group
asking for n plus its largest exclusion list, so a query's answer can depend on the queries
searched with it (HNSW searches at least efSearch deep either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.metrics.ranking import rows_per_batch, top_k

INDEX_FILE = "index.faiss"
SEARCH_BATCH = 1024  # queries per faiss search, grouped by how many items they exclude


class ItemIndex:
    def __init__(self, items: np.ndarray, hnsw: Any = None) -> None:
        self.items = items  # [n_items, dim] float32, unit length
        self.hnsw = hnsw  # a faiss index over the same rows, or None for the exact scan

    @classmethod
    def load(cls, folder: Path, items: np.ndarray) -> ItemIndex:
        """The exported faiss index of `folder` when there is one, else the exact scan.

        Raises:
            ValueError: the index holds another number of items than `items`.
        """
        path = folder / INDEX_FILE
        if not path.is_file():
            return cls(items)
        import faiss

        index = faiss.read_index(str(path))
        if index.ntotal != len(items):
            raise ValueError(f"{path} holds {index.ntotal} items, the embeddings {len(items)}; "
                             "run train_retrieval again")  # fmt: skip
        return cls(items, index)

    @property
    def approximate(self) -> bool:
        return self.hnsw is not None

    def top(self, queries: np.ndarray, n: int, exclude: Sequence[np.ndarray] | None = None,
            ) -> np.ndarray:  # fmt: skip
        """[len(queries), n] catalogue positions, best first, never an excluded one; -1 pads a
        row when the approximate index finds fewer."""
        n = min(n, len(self.items))
        if self.hnsw is None:  # a bounded number of queries scored at a time
            step = rows_per_batch(len(self.items))
            parts = [top_k(queries[i : i + step] @ self.items.T, n,
                           None if exclude is None else exclude[i : i + step])
                     for i in range(0, len(queries), step)]  # fmt: skip
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, n), np.int64)
        out = np.full((len(queries), n), -1, dtype=np.int64)
        sizes = np.array([len(e) for e in exclude] if exclude is not None else [0] * len(queries))
        order = np.argsort(sizes, kind="stable")
        for start in range(0, len(order), SEARCH_BATCH):
            part = order[start : start + SEARCH_BATCH]
            # a batch of queries with similar exclusions asks for n plus the most it excludes
            want = min(n + int(sizes[part].max()), len(self.items))
            _, found = self.hnsw.search(np.ascontiguousarray(queries[part], dtype=np.float32), want)
            for u, row in zip(part, found, strict=True):
                row = row[row >= 0]
                if sizes[u]:
                    row = row[~np.isin(row, exclude[u])]  # type: ignore[index]
                out[u, : min(n, len(row))] = row[:n]
        return out
