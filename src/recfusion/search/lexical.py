"""Lexical candidates: BM25 (the bm25s library) over each item's title, category path and brand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import pandas as pd

from recfusion.preparation.vocab import tokenize

NO_WORDS = "\x00"


def item_documents(items: pd.DataFrame) -> list[list[str]]:
    """Per item (catalogue order), the words BM25 indexes: title, category path and brand."""
    text = (items["title"].fillna("").astype(str) + " "
            + items["category"].fillna("").astype(str).str.replace(">", " ") + " "
            + items["brand"].fillna("").astype(str))  # fmt: skip
    return [tokenize(t) for t in text]


class LexicalIndex:
    """BM25 over the catalogue; a query's words that no item has score nothing."""

    def __init__(self, retriever: bm25s.BM25, n_items: int) -> None:
        self.retriever = retriever
        self.n_items = n_items

    @classmethod
    def build(cls, documents: Sequence[list[str]]) -> LexicalIndex:
        if not documents:
            raise ValueError("cannot build a search index over an empty catalogue")
        retriever = bm25s.BM25()
        # an item without words still needs a row; NO_WORDS is never a query token
        retriever.index([d or [NO_WORDS] for d in documents], show_progress=False)
        return cls(retriever, len(documents))

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per query.

        Returns:
            ([n, k] catalogue positions, -1 where fewer items match; [n, k] BM25 scores).
        """
        k = min(k, self.n_items)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        for n, query in enumerate(queries):
            ids = self.retriever.get_tokens_ids(tokenize(query))
            if not ids:
                continue
            score = self.retriever.get_scores_from_ids(ids)
            # only the items that match: bm25s's own top-k partitions the whole catalogue, and
            # np.argpartition over an array of mostly tied zeros took 15 ms at 100K items
            # (py-spy: half of a search request); ties by catalogue position
            hits = np.flatnonzero(score > 0)
            if len(hits) > k:  # a partition first: a word matching most of the catalogue
                hits = hits[score[hits] >= -np.partition(-score[hits], k - 1)[k - 1]]
            best = hits[np.lexsort((hits, -score[hits]))[:k]]
            items[n, : len(best)] = best
            scores[n, : len(best)] = score[best]
        return items, scores

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder))

    @classmethod
    def load(cls, folder: Path, n_items: int) -> LexicalIndex:
        return cls(bm25s.BM25.load(str(folder)), n_items)
