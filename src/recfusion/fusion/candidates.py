"""Candidate sets: every source's top-N for each user, merged, with per-source features.

For user u and candidate slot c, `items[u, c]` is a catalogue position (-1 for an empty slot),
`scores[s][u, c]` source s's score of that item and `ranks[s][u, c]` its 1-based rank in
source s's list (n + 1 when the item is not in that source's top-n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recfusion.fusion.sources import Source
from recfusion.metrics.ranking import rows_per_batch
from recfusion.models.dataset import History


@dataclass(frozen=True)
class CandidateSet:
    rows: np.ndarray  # [U] user rows
    items: np.ndarray  # [U, C] catalogue positions, -1 = empty slot
    scores: dict[str, np.ndarray]  # source -> [U, C] raw score
    ranks: dict[str, np.ndarray]  # source -> [U, C] rank in the source's top-n (n + 1 = absent)
    per_source: int  # n

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0

    def top(self, fused: np.ndarray, k: int) -> np.ndarray:
        """[U, k] catalogue positions ordered by `fused` ([U, C]); empty slots last (-1)."""
        masked = np.where(self.valid, fused, -np.inf)
        order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        return np.where(np.take_along_axis(self.valid, order, axis=1),
                        np.take_along_axis(self.items, order, axis=1), -1)  # fmt: skip


def gather(
    sources: Sequence[Source],
    rows: np.ndarray,
    history: History,
    exclude: Sequence[np.ndarray],
    per_source: int,
    batch: int | None = None,
) -> CandidateSet:
    """Merges each source's top-`per_source` (excluded items removed) for users `rows`,
    `batch` users at a time (by default as many as keep every source's dense scores of the
    batch bounded: 2,048 users up to 8,192 items, 83 at 200,000)."""
    if batch is None:
        batch = rows_per_batch(history.matrix.shape[1], most=2048)
    n_src = len(sources)
    width = n_src * per_source
    items = np.full((len(rows), width), -1, dtype=np.int64)
    scores = {s.name: np.zeros((len(rows), width), np.float32) for s in sources}
    ranks = {s.name: np.full((len(rows), width), per_source + 1, np.int32) for s in sources}
    for start in range(0, len(rows), batch):
        sl = slice(start, start + batch)
        found = {s.name: s.candidates(rows[sl], history, per_source, exclude[sl]) for s in sources}
        for u in range(len(rows[sl])):
            union = np.unique(np.concatenate([t[u] for t, _ in found.values()]))
            union = union[union >= 0]
            g = start + u
            items[g, : len(union)] = union
            for name, (t, lookup) in found.items():
                scores[name][g, : len(union)] = lookup(u, union)
                top = t[u][t[u] >= 0]
                pos = np.full(len(union), per_source + 1, np.int32)
                pos[np.searchsorted(union, top)] = np.arange(1, len(top) + 1)
                ranks[name][g, : len(union)] = pos
    return CandidateSet(rows, items, scores, ranks, per_source)


def source_ranking(cands: CandidateSet, name: str, k: int) -> np.ndarray:
    """[U, k] the source's own top-k (its ranks inside the candidate set)."""
    return cands.top(-cands.ranks[name].astype(np.float64), k)
