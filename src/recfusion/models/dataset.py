"""The prepared data as the models see it: catalogue, users, positive pairs per split,
histories and "already has" sets, and the `History` a period's predictions start from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recfusion.config import TrainConfig
from recfusion.data.io import read_table
from recfusion.data.schema import SPLITS
from recfusion.models.inputs import (
    ItemTable,
    UserTable,
    Vocabularies,
    build_catalog,
    build_users,
    last_items,
    positive_pairs,
)


@dataclass(frozen=True)
class PreparedData:
    splits: dict[str, pd.DataFrame]
    users: pd.DataFrame
    items: pd.DataFrame
    vocab: Vocabularies


def read_prepared(folder: Path) -> PreparedData:
    """Reads the prepare stage's outputs."""
    return PreparedData(
        splits={name: read_table(folder / f"{name}.parquet") for name in SPLITS},
        users=read_table(folder / "users.parquet"),
        items=read_table(folder / "items.parquet"),
        vocab=Vocabularies.read(folder / "vocab"),
    )


@dataclass(frozen=True)
class ModelData:
    catalog: ItemTable
    users: UserTable
    pairs: dict[str, pd.DataFrame]  # split -> distinct positive (user_id, item_id, timestamp)
    history_len: int
    vocab: Vocabularies

    def pairs_of(self, splits: Sequence[str]) -> pd.DataFrame:
        frames = [self.pairs[s] for s in splits]
        both = pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable")
        return both.drop_duplicates(["user_id", "item_id"], keep="first")

    def history(self, splits: Sequence[str]) -> np.ndarray:
        """[n_users, history_len] last items of each user within `splits`."""
        return last_items(self.pairs_of(splits), self.users, self.catalog, self.history_len)

    def items_by_user(self, splits: Sequence[str]) -> dict[int, np.ndarray]:
        """user row -> catalogue positions of the user's positives within `splits`."""
        pairs = self.pairs_of(splits)
        u = self.users.positions(pairs["user_id"])
        item = self.catalog.positions(pairs["item_id"])
        keep = (u >= 0) & (item >= 0)
        return group_by_user(u[keep], item[keep])


def group_by_user(users: np.ndarray, items: np.ndarray) -> dict[int, np.ndarray]:
    """user row -> that user's `items` (int64) in their order here, users ascending: a stable
    sort and one split, where a pandas groupby makes a frame per user (seconds at 500K
    users)."""
    order = np.argsort(users, kind="stable")
    u, it = users[order], np.asarray(items, dtype=np.int64)[order]
    if len(u) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    return dict(zip(u[starts].tolist(), np.split(it, starts[1:]), strict=True))


def build_model_data(prepared: PreparedData, cfg: TrainConfig) -> ModelData:
    """Catalogue, users and positives from the prepared splits."""
    return ModelData(
        catalog=build_catalog(prepared.items, prepared.vocab, cfg.max_title_tokens),
        users=build_users(prepared.users, prepared.vocab),
        pairs={s: positive_pairs(df, cfg.positive_events) for s, df in prepared.splits.items()},
        history_len=cfg.history_len,
        vocab=prepared.vocab,
    )


@dataclass(frozen=True)
class History:
    """What is known about each user at prediction time."""

    matrix: sp.csr_matrix  # [n_users, n_items] 1 where the user chose the item
    recent: np.ndarray  # [n_users, history_len] item vocabulary ids for the user tower
    splits: tuple[str, ...]

    def has(self, rows: np.ndarray) -> np.ndarray:
        """Whether each user in `rows` has any history."""
        return np.asarray(self.matrix[rows].sum(axis=1)).ravel() > 0


def build_history(data: ModelData, splits: list[str]) -> History:
    """Who chose what within `splits`, and each user's recent items."""
    pairs = data.pairs_of(splits)
    u = data.users.positions(pairs["user_id"])
    i = data.catalog.positions(pairs["item_id"])
    keep = (u >= 0) & (i >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (u[keep], i[keep])),
        shape=(len(data.users), len(data.catalog)),
    )
    matrix.data[:] = 1.0  # duplicates collapse to 1
    return History(matrix, data.history(splits), tuple(splits))
