"""The fitted state the packaged recommender ships besides the trained sub-models: the catalogue,
the vocabularies, item counts and ages, the usual hour, and EASE's item-to-item weights, all
fitted on the splits the model was evaluated on (train + validation).

Nothing in it is a row about a user: no event, no demographic, no user id. The user-id
vocabulary (which row of the id embeddings belongs to whom) is kept as keyed pseudonyms
(recfusion.privacy), and the online store (serving/store.py) holds each user's pseudonym
beside their state, so the model finds a user's embedding row through the store and nobody
holding only the model can tell whose rows they are. Loading reads arrays; it fits nothing, so
it takes as long for a log of 10 million events as for one of 100 thousand.

`models/package/`:
    meta.json        format, splits fitted on, usual hour, history length, key check
    items.parquet    the catalogue's item ids and titles (for answers and reasons)
    catalog.npz      the catalogue's model inputs (ItemTable arrays)
    vocab/*.txt      vocabularies; user_id.txt holds pseudonyms
    fitted.npz       positives per item and days since each item was last chosen
    ease.npy         EASE's [items, items] weights (when `ease` is a fusion source), or
    ease.npz         its sparse neighbours (CSR) above fusion.ease_dense_max_items items
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recfusion.config import Config
from recfusion.data.io import read_table, write_json
from recfusion.fusion.period import item_days_since_last
from recfusion.fusion.sources import ItemWeights, ease_fit
from recfusion.models.dataset import ModelData, build_history
from recfusion.models.inputs import ItemTable, UserTable, Vocab, Vocabularies
from recfusion.models.ranking_data import usual_hour
from recfusion.paths import MODELS_DIR
from recfusion.privacy import key_check, key_pseudonym

PACKAGE_DIR = MODELS_DIR / "package"
FORMAT = 1
FITTED_SPLITS = ("train", "val")  # what the evaluate stage's test period knows, as served


class PackageError(ValueError):
    """The package folder is missing, incomplete, or of another format."""


@dataclass(frozen=True)
class Package:
    catalog: ItemTable
    vocab: Vocabularies  # user_id values are pseudonyms
    counts: np.ndarray  # [n_items] positives per item in `splits`
    item_age_days: np.ndarray  # [n_items] days since each item was last chosen
    hour: int  # the ranking model's context hour when a request carries none
    ease: ItemWeights | None  # [n_items, n_items] EASE weights (dense, or sparse neighbours above
    # fusion.ease_dense_max_items); None when EASE is not a source
    splits: tuple[str, ...]  # the splits everything above was fitted on
    key_check: str  # `key_check` of the pseudonym key the user vocabulary was made with

    def model_data(self, history_len: int) -> ModelData:
        """The catalogue and vocabularies as the models' `ModelData`, with no user and no
        events (a request adds its own users from the online store)."""
        return ModelData(self.catalog, no_users(), {}, history_len, self.vocab)


def no_users() -> UserTable:
    empty = np.zeros(0, dtype=np.int32)
    return UserTable(np.zeros(0, dtype=object), empty, empty, empty, np.zeros(0, np.float32))


def build_package(cfg: Config, data: ModelData, key: bytes,
                  splits: Sequence[str] = FITTED_SPLITS) -> Package:  # fmt: skip
    """The fitted state of `data` on `splits`, its user vocabulary pseudonymised with `key`."""
    history = build_history(data, list(splits))
    counts = np.asarray(history.matrix.sum(axis=0)).ravel()
    ease = ease_fit(cfg.fusion)(history.matrix) if "ease" in cfg.fusion.sources else None
    users = Vocab(tuple(key_pseudonym(u, key) for u in data.vocab.user_id.values))
    if len(set(users.values)) != len(users.values):  # 128 bits: never seen, but never silent
        raise ValueError("two users share a pseudonym; use another pseudonym key")
    vocab = Vocabularies(**{**{n: getattr(data.vocab, n) for n in Vocabularies.__dataclass_fields__},
                            "user_id": users})  # fmt: skip
    return Package(data.catalog, vocab, counts.astype(np.float32),
                   item_days_since_last(data, splits), usual_hour(data, splits), ease,
                   tuple(splits), key_check(key))  # fmt: skip


def save_package(package: Package, out: Path) -> None:
    """Writes `out` (emptied first) as the module docstring lays it out."""
    if out.exists():
        shutil.rmtree(out)
    (out / "vocab").mkdir(parents=True)
    c = package.catalog
    pd.DataFrame({"item_id": c.item_ids.astype(str), "title": c.titles.astype(str)}).to_parquet(
        out / "items.parquet", index=False
    )
    np.savez(out / "catalog.npz", id_idx=c.id_idx, category=c.category, brand=c.brand,
             price_bucket=c.price_bucket, tokens=c.tokens, in_stock=c.in_stock)  # fmt: skip
    for name in Vocabularies.__dataclass_fields__:
        values = getattr(package.vocab, name).values
        (out / "vocab" / f"{name}.txt").write_text("".join(f"{v}\n" for v in values),
                                                   encoding="utf-8")  # fmt: skip
    np.savez(out / "fitted.npz", counts=package.counts, item_age_days=package.item_age_days)
    if package.ease is not None and sp.issparse(package.ease):
        sp.save_npz(out / "ease.npz", sp.csr_matrix(package.ease), compressed=False)
    elif package.ease is not None:
        np.save(out / "ease.npy", package.ease)
    write_json({"format": FORMAT, "splits": list(package.splits), "hour": package.hour,
                "key_check": package.key_check, "items": len(c)}, out / "meta.json")  # fmt: skip


def load_package(folder: Path) -> Package:
    """The package saved in `folder` (arrays read as saved: nothing is fitted).

    Raises:
        PackageError: the folder or one of its files is missing, or of another format.
    """
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise PackageError(f"{folder} holds no packaged model state (meta.json); run dvc repro "
                           "(the package stage)")  # fmt: skip
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise PackageError(f"{folder}: package format {meta.get('format')!r}, this recfusion "
                           f"reads {FORMAT}; run dvc repro (the package stage)")  # fmt: skip
    try:
        items = read_table(folder / "items.parquet")
        arrays = np.load(folder / "catalog.npz", allow_pickle=False)
        fitted = np.load(folder / "fitted.npz", allow_pickle=False)
        vocab = Vocabularies.read(folder / "vocab")
        ease: ItemWeights | None = None
        # read whole (items x items, not the log): memory-mapped, the first requests after a
        # cold start paid for reading it from disk
        if (folder / "ease.npy").is_file():
            ease = np.load(folder / "ease.npy", allow_pickle=False)
        elif (folder / "ease.npz").is_file():
            ease = sp.load_npz(folder / "ease.npz").tocsr()
    except (OSError, ValueError, KeyError) as e:
        raise PackageError(f"{folder}: {e}; run dvc repro (the package stage)") from e
    catalog = ItemTable(
        item_ids=items["item_id"].astype(str).to_numpy(),
        id_idx=arrays["id_idx"],
        category=arrays["category"],
        brand=arrays["brand"],
        price_bucket=arrays["price_bucket"],
        tokens=arrays["tokens"],
        in_stock=arrays["in_stock"],
        titles=items["title"].astype(str).to_numpy(),
    )
    return Package(catalog, vocab, fitted["counts"], fitted["item_age_days"], int(meta["hour"]),
                   ease, tuple(meta["splits"]), str(meta["key_check"]))  # fmt: skip
