"""Candidate sources: each scores the whole catalogue for a batch of users and can say why an
item scored well (the reason shown with a recommendation).

- two_tower: the retrieval model's user embedding . item embeddings;
- ease: EASE (Steck 2019), a closed-form item-to-item model on the user's interactions;
- popularity: how many users chose the item in the history period;
- category_popularity: popularity within the categories the user favours;
- content: similarity of the item's content (category levels, brand, title tokens) to the
  user's history profile.

Scores are dense [users, items] arrays; the catalogues this runs on in one process (up to about
1e5 items) fit that in user batches. A source may instead find its top items through an index
(`candidates`): the two-tower source does when the retrieval model exported a faiss index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

from recfusion.config import FusionConfig
from recfusion.metrics.ranking import top_k
from recfusion.models.dataset import History, ModelData
from recfusion.models.inputs import user_inputs
from recfusion.models.item_index import ItemIndex

# (row of the user in the batch, catalogue positions) -> the source's scores of those items
ScoreLookup = Callable[[int, np.ndarray], np.ndarray]
ITEM_BLOCK = 512  # items whose co-occurrence rows are made at once (sparse_ease_weights)

REASONS = {
    "two_tower": "close to what you liked, such as '{item}'",
    "ease": "people who chose '{item}' also chose this",
    "popularity": "popular right now",
    "category_popularity": "popular in {category}",
    "content": "matches your interest in {category}",
}


class Source:
    """A candidate source. Subclasses set `name` and implement `scores` and `explain_item`."""

    name = "source"

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        raise NotImplementedError

    def candidates(self, rows: np.ndarray, history: History, n: int,
                   exclude: Sequence[np.ndarray]) -> tuple[np.ndarray, ScoreLookup]:  # fmt: skip
        """[U, n] top catalogue positions (excluded ones skipped; -1 may pad), and a lookup
        (batch row u, positions) -> this source's scores of those items for that user."""
        dense = self.scores(rows, history)
        return top_k(dense, n, exclude), lambda u, items: dense[u, items]

    def explain_item(self, row: int, item: int, history: History) -> str:
        raise NotImplementedError


def _item_label(data: ModelData, item: int) -> str:
    return str(data.catalog.titles[item]) or str(data.catalog.item_ids[item])


class TwoTowerSource(Source):
    name = "two_tower"

    def __init__(self, data: ModelData, encode: Callable[[dict], np.ndarray],
                 item_embeddings: np.ndarray, index: ItemIndex | None = None) -> None:  # fmt: skip
        self.data, self.encode, self.items = data, encode, item_embeddings
        self.index = index

    def _users(self, rows: np.ndarray, history: History) -> np.ndarray:
        """[U, dim] user embeddings of `rows` from their recent history."""
        return self.encode(user_inputs(self.data.users, rows, history.recent[rows]))

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        return self._users(rows, history) @ self.items.T

    def candidates(self, rows: np.ndarray, history: History, n: int,
                   exclude: Sequence[np.ndarray]) -> tuple[np.ndarray, ScoreLookup]:  # fmt: skip
        if self.index is None or not self.index.approximate:
            return super().candidates(rows, history, n, exclude)
        q = self._users(rows, history)
        return self.index.top(q, n, exclude), lambda u, items: self.items[items] @ q[u]

    def explain_item(self, row: int, item: int, history: History) -> str:
        seen = history.matrix[row].indices
        if len(seen) == 0:
            return "suggested for people like you"
        closest = seen[np.argmax(self.items[seen] @ self.items[item])]
        return REASONS[self.name].format(item=_item_label(self.data, closest))


ItemWeights: TypeAlias = (
    np.ndarray | sp.csr_matrix
)  # [n_items, n_items]: dense EASE, or sparse neighbours
EaseFit: TypeAlias = Callable[
    [sp.csr_matrix], ItemWeights
]  # a period's [users, items] history -> weights


def ease_fit(fc: FusionConfig) -> EaseFit:
    """How the ease source is fitted under `fc` (`item_to_item_weights` with its settings)."""
    return lambda x: item_to_item_weights(x, fc.ease_l2, fc.ease_dense_max_items,
                                          fc.ease_head_items, fc.ease_neighbours)  # fmt: skip


def item_to_item_weights(train: sp.csr_matrix, l2: float, dense_max_items: int,
                         head_items: int, neighbours: int) -> ItemWeights:  # fmt: skip
    """The ease source's weights: dense EASE (`ease_weights`) up to `dense_max_items` items;
    above, `sparse_ease_weights` (its dense inverse would not fit: 320 GB at 200K items)."""
    if train.shape[1] <= dense_max_items:
        return ease_weights(train, l2)
    return sparse_ease_weights(train, l2, head_items, neighbours)


def sparse_ease_weights(train: sp.csr_matrix, l2: float, head_items: int,
                        neighbours: int) -> sp.csr_matrix:  # fmt: skip
    """EASE on the `head_items` most chosen items plus co-occurrence neighbours for the rest,
    as a CSR matrix of at most 2 x `neighbours` weights per item (row).

    Head rows keep their `neighbours` EASE weights of largest magnitude among head items (the
    negative ones count). Every row also gets those of its `neighbours` closest items by cosine
    co-occurrence that EASE did not cover (any pair but head to head), scaled by the median
    ratio, over head rows, of their positive EASE mass to their cosine mass among head items,
    so a history mixing head and tail items adds comparable evidence.
    """
    n = train.shape[1]
    x = train.astype(np.float32).tocsc()
    counts = np.asarray(x.getnnz(axis=0)).ravel()
    head = np.sort(np.argsort(-counts, kind="stable")[: min(head_items, n)])
    in_head = np.zeros(n, dtype=bool)
    in_head[head] = True
    ease = _keep_largest(sp.csr_matrix(ease_weights(x[:, head].tocsr(), l2)), neighbours)
    inv = (1.0 / np.sqrt(np.maximum(counts, 1))).astype(np.float32)
    among_head = _keep_largest(_cosine_rows(x[:, head], x[:, head], inv[head], inv[head]),
                               neighbours)  # fmt: skip
    mass = [
        np.clip(ease[i].data, 0, None).sum() / among_head[i].data.sum()
        for i in range(len(head))
        if among_head[i].nnz and (ease[i].data > 0).any()
    ]
    scale = float(np.median(mass)) if mass else 1.0
    # each row's closest items overall but the head-to-head pairs EASE covers: a head row keeps
    # its tail neighbours, a tail row all of its own (head items included)
    closest = sp.vstack([
        _keep_largest(_cosine_rows(x[:, start : start + ITEM_BLOCK], x,
                                   inv[start : start + ITEM_BLOCK], inv, start), neighbours)
        for start in range(0, n, ITEM_BLOCK)
    ]).tocoo()  # fmt: skip
    outside = ~(in_head[closest.row] & in_head[closest.col])
    tail = sp.csr_matrix((closest.data[outside], (closest.row[outside], closest.col[outside])),
                         shape=(n, n))  # fmt: skip
    ease_rows = sp.csr_matrix((ease.data, head[ease.indices], ease.indptr), shape=(len(head), n))
    place = sp.csr_matrix((np.ones(len(head), np.float32), (head, np.arange(len(head)))),
                          shape=(n, len(head)))  # fmt: skip
    return sp.csr_matrix(place @ ease_rows + scale * tail, dtype=np.float32)


def _cosine_rows(rows: sp.csc_matrix, cols: sp.csc_matrix, inv_rows: np.ndarray,
                 inv_cols: np.ndarray, offset: int = 0) -> sp.csr_matrix:  # fmt: skip
    """Cosine co-occurrence of the items of `rows` ([users, b]) with those of `cols` ([users,
    m]): [b, m], each item's pair with itself (row r and column offset + r) left out. Made a
    block of items at a time, so X'X ([n, n], billions of values for long histories) is never
    whole."""
    block = sp.csr_matrix(sp.diags(inv_rows) @ (rows.T @ cols) @ sp.diags(inv_cols))
    block = block.tocoo()
    other = block.col != block.row + offset
    return sp.csr_matrix((block.data[other], (block.row[other], block.col[other])),
                         shape=block.shape)  # fmt: skip


def _keep_largest(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """A copy of `m` with only the `k` values of largest magnitude in each row (EASE's negative
    weights count: dropping them cost 0.03 NDCG@10 on MovieLens-100K; ties: the first
    columns)."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        size = np.abs(m.data[lo:hi])
        keep = np.arange(hi - lo)
        if hi - lo > k:  # a partition first: a full sort of a 20,000-value row costs 10x more
            kth = size[np.argpartition(-size, k - 1)[k - 1]]
            keep = keep[size >= kth]
        keep = lo + keep[np.lexsort((keep, -size[keep]))[:k]]
        rows.append(np.full(len(keep), r))
        cols.append(m.indices[keep])
        vals.append(m.data[keep])
    if not rows:
        return sp.csr_matrix(m.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=m.shape, dtype=np.float32)  # fmt: skip


def ease_weights(train: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's [n_items, n_items] float32 weights: B = I - P / diag(P), P = (X'X + lambda I)^-1,
    with a zero diagonal."""
    gram = (train.T @ train).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    p = spd_inverse(gram)
    p /= -np.diag(p).copy()
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32)


def spd_inverse(a: np.ndarray, block: int = 2048) -> np.ndarray:
    """The inverse of the symmetric positive definite `a`, computed in `a`'s own memory (which it
    overwrites) by Cholesky (LAPACK potrf + potri): np.linalg.inv holds three n x n arrays, 22 GB
    at 30,000 items, and was killed there on a 24 GB machine."""
    from scipy.linalg import lapack

    f = a.T  # the same memory in Fortran order: a is symmetric, so a.T == a
    c, info = lapack.dpotrf(f, lower=0, overwrite_a=1, clean=0)
    if info == 0:
        c, info = lapack.dpotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE's Gram matrix is not positive definite (LAPACK {info})")
    n = len(c)  # potri filled the upper triangle: mirror it, a band at a time
    for start in range(0, n, block):
        stop = min(start + block, n)
        upper = np.triu(c[start:stop, start:stop])
        c[start:stop, start:stop] = upper + np.triu(upper, 1).T
        c[stop:, start:stop] = c[start:stop, stop:].T
    return c.T  # symmetric now: the same values in C order


class EaseSource(Source):
    """scores = X_u B, B from `item_to_item_weights` (fitted on a period's history, or loaded):
    dense EASE, or sparse neighbours above `fusion.ease_dense_max_items` items."""

    name = "ease"

    def __init__(self, data: ModelData, b: ItemWeights) -> None:
        self.data = data
        self.b = b

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        out = history.matrix[rows] @ self.b
        return out.toarray() if sp.issparse(out) else np.asarray(out)

    def explain_item(self, row: int, item: int, history: History) -> str:
        seen = history.matrix[row].indices
        if len(seen) == 0:
            return REASONS["popularity"]
        column = self.b[seen, item]
        column = column.toarray().ravel() if sp.issparse(column) else np.asarray(column)
        if column.max() <= 0:  # no chosen item links to it (a sparse model's zero tie)
            return REASONS["popularity"]
        best = seen[np.argmax(column)]
        return REASONS[self.name].format(item=_item_label(self.data, best))


class PopularitySource(Source):
    name = "popularity"

    def __init__(self, counts: np.ndarray) -> None:
        self.pop = np.log1p(counts.astype(np.float32))

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        return np.tile(self.pop, (len(rows), 1))

    def explain_item(self, row: int, item: int, history: History) -> str:
        return REASONS[self.name]


def _category_onehot(data: ModelData, level: int) -> tuple[sp.csr_matrix, np.ndarray]:
    cats = data.catalog.category[:, level - 1]
    values, idx = np.unique(cats, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(idx), np.float32), (np.arange(len(idx)), idx)),
                           shape=(len(idx), len(values)))  # fmt: skip
    return onehot, values


def _category_name(data: ModelData, vocab_index: int) -> str:
    values = data.vocab.category.values
    return values[vocab_index - 1].split(">")[-1] if 0 < vocab_index <= len(values) else "your area"


class CategoryPopularitySource(Source):
    """Item popularity within its subcategory, weighted by the user's share of history there."""

    name = "category_popularity"

    def __init__(self, data: ModelData, counts: np.ndarray, level: int = 2) -> None:
        self.data = data
        self.onehot, self.values = _category_onehot(data, level)
        totals = np.asarray(self.onehot.T @ counts).ravel()
        within = counts / np.maximum(np.asarray(self.onehot @ totals).ravel(), 1.0)
        self.within = within.astype(np.float32)

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        per_cat = np.asarray((history.matrix[rows] @ self.onehot).todense(), dtype=np.float32)
        share = per_cat / np.maximum(per_cat.sum(axis=1, keepdims=True), 1.0)
        affinity = np.asarray(self.onehot @ share.T).T  # [users, items]
        return affinity * self.within[None, :]

    def explain_item(self, row: int, item: int, history: History) -> str:
        cat = self.values[self.onehot[item].indices[0]]
        return REASONS[self.name].format(category=_category_name(self.data, int(cat)))


class ContentSource(Source):
    """Cosine between the item's content vector and the mean vector of the user's history."""

    name = "content"

    def __init__(self, data: ModelData) -> None:
        self.data = data
        c = data.catalog
        offsets, blocks = 0, []
        for col in [c.category[:, 0], c.category[:, 1], c.category[:, 2], c.brand]:
            blocks.append((col, offsets, 1.0))
            offsets += int(col.max()) + 1
        rows, cols, vals = [], [], []
        for col, off, w in blocks:
            keep = col > 0
            rows.append(np.flatnonzero(keep))
            cols.append(col[keep] + off)
            vals.append(np.full(int(keep.sum()), w, np.float32))
        tok_r, tok_c = np.nonzero(c.tokens)
        rows.append(tok_r)
        cols.append(c.tokens[tok_r, tok_c] + offsets)
        vals.append(np.full(len(tok_r), 0.5, np.float32))
        offsets += int(c.tokens.max()) + 1
        m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(c), offsets))  # fmt: skip
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        self.items = (sp.diags(1.0 / np.maximum(norms, 1e-9)) @ m).tocsr()  # [items, features]
        # [features, items], kept as CSR: `profile @ items.T` would convert the transposed (CSC)
        # catalogue to CSR at every call, 23% of a request at 100K items (py-spy)
        self.items_t = self.items.T.tocsr()

    def scores(self, rows: np.ndarray, history: History) -> np.ndarray:
        profile = history.matrix[rows] @ self.items
        norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        profile = sp.diags(1.0 / np.maximum(norms, 1e-9)) @ profile
        return np.asarray((profile @ self.items_t).todense(), dtype=np.float32)

    def explain_item(self, row: int, item: int, history: History) -> str:
        return REASONS[self.name].format(
            category=_category_name(self.data, int(self.data.catalog.category[item, 1]))
        )


def build_sources(
    names: Sequence[str],
    data: ModelData,
    counts: np.ndarray,
    ease: Callable[[], ItemWeights],
    two_tower: Callable[[], Source] | None = None,
) -> list[Source]:
    """The sources `names`, in that order, over item `counts` (positives per item); `ease` gives
    EASE's weights and `two_tower` the two-tower source, each called only when named (fitting
    EASE or loading its weights; a served recommender builds the two-tower source per request).

    Raises:
        ValueError: an unknown source name, or two_tower named without a `two_tower`.
    """
    make: dict[str, Callable[[], Source]] = {
        "ease": lambda: EaseSource(data, ease()),
        "popularity": lambda: PopularitySource(counts),
        "category_popularity": lambda: CategoryPopularitySource(data, counts),
        "content": lambda: ContentSource(data),
    }
    if two_tower is not None:
        make["two_tower"] = two_tower
    unknown = [n for n in names if n not in make]
    if unknown:
        known = ", ".join(["two_tower", *(n for n in make if n != "two_tower")])
        raise ValueError(f"unknown candidate source '{unknown[0]}' (sources: {known})")
    return [make[n]() for n in names]
