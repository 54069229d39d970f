"""Model inputs as integer arrays (pure NumPy, no TensorFlow).

Index 0 always means "padding or unknown": an id outside the train vocabulary (a cold-start
user or item), a missing brand, an empty history slot. Towers therefore work for cold start
from the other features, and id dropout in training teaches them to.

- `ItemTable`: one row per catalogue item (its position is the item's index everywhere in the
  models): id index, category levels, brand, price bucket, title tokens.
- `UserTable`: one row per user: id index, gender, region, normalised age.
- positives, histories and training examples built from the prepared event splits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.preparation.vocab import category_levels, item_text, tokenize

CATEGORY_LEVELS = 3


@dataclass(frozen=True)
class Vocab:
    """A value -> 1-based index map; 0 is unknown or padding."""

    values: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> Vocab:
        return cls(tuple(path.read_text(encoding="utf-8").splitlines()))

    @property
    def size(self) -> int:
        """Embedding rows needed: the values plus index 0."""
        return len(self.values) + 1

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.values)  # built once: a served request looks up a few values

    def lookup(self, values: Iterable[object]) -> np.ndarray:
        wanted = pd.Index([str(v) if v is not None else "" for v in values])
        return (self._index.get_indexer(wanted) + 1).astype(np.int32)  # -1 (unknown) -> 0


@dataclass(frozen=True)
class Vocabularies:
    user_id: Vocab
    item_id: Vocab
    category: Vocab
    brand: Vocab
    token: Vocab
    gender: Vocab
    region: Vocab

    @classmethod
    def read(cls, folder: Path) -> Vocabularies:
        return cls(
            **{name: Vocab.read(folder / f"{name}.txt") for name in cls.__dataclass_fields__}
        )

    @classmethod
    def from_lists(cls, lists: dict[str, list[str]]) -> Vocabularies:
        return cls(**{name: Vocab(tuple(lists[name])) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ItemTable:
    item_ids: np.ndarray  # [n] item_id strings; the position is the item index
    id_idx: np.ndarray  # [n] int32 item vocabulary index, 0 for items unseen in train
    category: np.ndarray  # [n, 3] int32 category vocabulary index per level
    brand: np.ndarray  # [n] int32
    price_bucket: np.ndarray  # [n] int32, bucket + 1
    tokens: np.ndarray  # [n, max_tokens] int32 title (and genre) tokens, 0-padded
    in_stock: np.ndarray  # [n] bool
    titles: np.ndarray  # [n] item titles, for explanations

    def __len__(self) -> int:
        return len(self.item_ids)

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.item_ids)  # built once: a served request looks up a few ids

    def positions(self, item_ids: Iterable[object]) -> np.ndarray:
        """Catalogue positions of `item_ids`; -1 for unknown ids."""
        return self._index.get_indexer(pd.Index(list(item_ids))).astype(np.int64)


@dataclass(frozen=True)
class UserTable:
    user_ids: np.ndarray  # [n] user_id strings
    id_idx: np.ndarray  # [n] int32 user vocabulary index, 0 for users unseen in train
    gender: np.ndarray  # [n] int32
    region: np.ndarray  # [n] int32
    age: np.ndarray  # [n] float32 normalised age

    def __len__(self) -> int:
        return len(self.user_ids)

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.user_ids)

    def positions(self, user_ids: Iterable[object]) -> np.ndarray:
        """Rows of `user_ids`; -1 for unknown ids."""
        return self._index.get_indexer(pd.Index(list(user_ids))).astype(np.int64)


def build_catalog(items: pd.DataFrame, vocab: Vocabularies, max_tokens: int) -> ItemTable:
    """The catalogue arrays from the prepared items table."""
    levels = [category_levels(c) for c in items["category"].astype(str)]
    padded = [(lv + [lv[-1]] * CATEGORY_LEVELS)[:CATEGORY_LEVELS] if lv else [""] * 3
              for lv in levels]  # fmt: skip
    category = vocab.category.lookup(v for row in padded for v in row).reshape(-1, 3)
    token_rows = [vocab.token.lookup(tokenize(t))[:max_tokens] for t in item_text(items)]
    tokens = np.zeros((len(items), max_tokens), dtype=np.int32)
    for r, row in enumerate(token_rows):
        row = row[row > 0]
        tokens[r, : len(row)] = row
    bucket = items["price_bucket"].to_numpy() if "price_bucket" in items else np.zeros(len(items))
    return ItemTable(
        item_ids=items["item_id"].astype(str).to_numpy(),
        id_idx=vocab.item_id.lookup(items["item_id"]),
        category=category.astype(np.int32),
        brand=vocab.brand.lookup(items["brand"].astype(str)),
        price_bucket=(np.asarray(bucket, dtype=np.int64) + 1).astype(np.int32),
        tokens=tokens,
        in_stock=items["in_stock"].to_numpy(dtype=bool),
        titles=items["title"].fillna("").astype(str).to_numpy(),
    )


def build_users(users: pd.DataFrame, vocab: Vocabularies) -> UserTable:
    """The user arrays from the prepared users table."""
    age = users["age_norm"] if "age_norm" in users else pd.Series(np.zeros(len(users)))
    return UserTable(
        user_ids=users["user_id"].astype(str).to_numpy(),
        id_idx=vocab.user_id.lookup(users["user_id"]),
        gender=vocab.gender.lookup(users["gender"].astype(str)),
        region=vocab.region.lookup(users["region"].astype(str)),
        age=age.fillna(0.0).to_numpy(dtype=np.float32),
    )


def positive_pairs(events: pd.DataFrame, positive_types: Sequence[str]) -> pd.DataFrame:
    """Distinct (user_id, item_id) pairs with a positive event, at their first time, in time
    order."""
    pos = events.loc[events["event_type"].isin(positive_types), ["user_id", "item_id", "timestamp"]]
    pos = pos.sort_values("timestamp", kind="stable")
    return pos.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True)


def last_items(pairs: pd.DataFrame, users: UserTable, catalog: ItemTable, n: int) -> np.ndarray:
    """[n_users, n] each user's last n item vocabulary indices in `pairs` (time order, oldest
    first, left-padded with 0). Items without an id index, or not in the catalogue, are
    skipped."""
    out = np.zeros((len(users), n), dtype=np.int32)
    if len(pairs) == 0 or n == 0:
        return out
    u = users.positions(pairs["user_id"])
    pos = catalog.positions(pairs["item_id"])
    item = np.where(pos >= 0, catalog.id_idx[np.maximum(pos, 0)], 0)
    keep = (u >= 0) & (item > 0)
    df = pd.DataFrame({"u": u[keep], "item": item[keep]})
    df["rank"] = df.groupby("u").cumcount(ascending=False)  # 0 = most recent
    df = df[df["rank"] < n]
    out[df["u"].to_numpy(), n - 1 - df["rank"].to_numpy()] = df["item"].to_numpy()
    return out


def history_without_target(history: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """Each row of `history` ([E, n+1], oldest first) without the row's target id, cut to the
    last n entries and left-padded with 0.

    The item being predicted must not be in its own history, or the model learns to point at
    the history (which evaluation then excludes).
    """
    h = np.where(history == target[:, None], 0, history)
    order = np.argsort(h != 0, axis=1, kind="stable")  # zeros first, order of the rest kept
    return np.take_along_axis(h, order, axis=1)[:, -n:].astype(np.int32)


@dataclass(frozen=True)
class Examples:
    """Training pairs: row i says user `user[i]` chose catalogue item `item[i]`."""

    user: np.ndarray  # [E] user rows
    item: np.ndarray  # [E] catalogue positions
    history: np.ndarray  # [E, n] item vocabulary indices, target removed

    def __len__(self) -> int:
        return len(self.user)


def training_examples(
    pairs: pd.DataFrame, users: UserTable, catalog: ItemTable, n_history: int
) -> Examples:
    """One example per positive pair whose user and item are known."""
    u = users.positions(pairs["user_id"])
    item = catalog.positions(pairs["item_id"])
    keep = (u >= 0) & (item >= 0)
    u, item = u[keep], item[keep]
    full = last_items(pairs, users, catalog, n_history + 1)[u]
    history = history_without_target(full, catalog.id_idx[item], n_history)
    return Examples(u, item, history)


def user_inputs(users: UserTable, rows: np.ndarray, history: np.ndarray) -> dict[str, np.ndarray]:
    """The user tower's inputs for user `rows` with the given [len(rows), n] histories."""
    return {
        "user_id": users.id_idx[rows],
        "gender": users.gender[rows],
        "region": users.region[rows],
        "age": users.age[rows],
        "history": history.astype(np.int32),
    }


def item_popularity(examples: Examples, n_items: int) -> np.ndarray:
    """[n_items] share of training examples per item (the in-batch sampling probability)."""
    counts = np.bincount(examples.item, minlength=n_items).astype(np.float64)
    return counts / max(counts.sum(), 1.0)
