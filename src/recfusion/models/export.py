"""Exports of the trained two-tower model: the user tower as a SavedModel, the item embeddings,
and a top-K index (TFRS BruteForce as a SavedModel for small catalogues, a faiss HNSW index for
large ones); and `load_retrieval`, which reads them back for the later stages and serving."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recfusion.data.io import write_json
from recfusion.models.dataset import ModelData
from recfusion.models.item_index import ItemIndex
from recfusion.models.tf_setup import tf, tfrs
from recfusion.models.towers import ItemTower, UserTower
from recfusion.paths import RETRIEVAL_DIR

log = logging.getLogger(__name__)


def user_signature(history_len: int) -> dict[str, tf.TensorSpec]:
    return {
        "user_id": tf.TensorSpec([None], tf.int32, name="user_id"),
        "gender": tf.TensorSpec([None], tf.int32, name="gender"),
        "region": tf.TensorSpec([None], tf.int32, name="region"),
        "age": tf.TensorSpec([None], tf.float32, name="age"),
        "history": tf.TensorSpec([None, history_len], tf.int32, name="history"),
    }


class _Serving(tf.Module):
    """A module whose `serve` signature takes the user tower's integer inputs."""

    def __init__(self, fn, history_len: int) -> None:
        super().__init__()
        self.fn = fn
        self.serve = tf.function(lambda inputs: self.fn(inputs),
                                 input_signature=[user_signature(history_len)])  # fmt: skip


def save_user_tower(user_tower: UserTower, history_len: int, path: Path) -> None:
    """SavedModel with signature `serving_default(user_id, gender, region, age, history)` ->
    [batch, dim] unit-length embeddings."""
    module = _Serving(lambda inputs: {"embedding": user_tower(inputs, training=False)},
                      history_len)  # fmt: skip
    module.tower = user_tower  # tracked, so the variables are saved
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def choose_index(kind: str, n_items: int, faiss_above: int) -> str:
    """ "brute_force" or "faiss" for `kind` ("auto" decides by catalogue size)."""
    if kind == "auto":
        return "faiss" if n_items > faiss_above else "brute_force"
    return kind


def save_brute_force(
    user_tower: UserTower, item_embeddings: np.ndarray, item_ids: np.ndarray, k: int,
    history_len: int, path: Path,
) -> None:  # fmt: skip
    """TFRS BruteForce over the catalogue as a SavedModel: user inputs -> (scores, item ids)."""
    index = tfrs.layers.factorized_top_k.BruteForce(user_tower, k=min(k, len(item_ids)))
    index.index(tf.constant(item_embeddings), tf.constant(item_ids.astype(str)))
    module = _Serving(lambda inputs: dict(zip(("scores", "item_ids"), index(inputs),
                                              strict=True)), history_len)  # fmt: skip
    module.index = index
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def build_faiss(item_embeddings: np.ndarray, hnsw_m: int = 32, ef_search: int = 128):
    """An HNSW inner-product index over the (unit-length) item embeddings."""
    import faiss

    index = faiss.IndexHNSWFlat(item_embeddings.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(np.ascontiguousarray(item_embeddings, dtype=np.float32))
    index.hnsw.efSearch = ef_search
    return index


def save_faiss(item_embeddings: np.ndarray, path: Path) -> None:
    import faiss

    faiss.write_index(build_faiss(item_embeddings), str(path))


def load_user_encoder(path: Path):
    """The exported user tower as a function of numpy inputs -> [batch, dim] numpy embeddings."""
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def encode(inputs: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
        n = len(inputs["user_id"])
        parts = []
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            out = signature(**{k: tf.constant(v[sl]) for k, v in inputs.items()})
            parts.append(out["embedding"].numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    return encode


def save_retrieval(user_tower: UserTower, item_tower: ItemTower, item_embeddings: np.ndarray,
                   item_ids: np.ndarray, meta: dict, out: Path) -> None:  # fmt: skip
    """`out` (emptied first): user_tower/ (SavedModel), item_embeddings.npy and item_ids.txt
    (catalogue order), weights/ (both towers, for transfer learning), the top-K index of kind
    meta["index"] (index/ or index.faiss) and meta.json (`meta`: sizes, history_len, index and
    settings, what rebuilding the towers needs)."""
    history_len = int(meta["history_len"])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_user_tower(user_tower, history_len, out / "user_tower")
    np.save(out / "item_embeddings.npy", item_embeddings)
    (out / "item_ids.txt").write_text("".join(f"{i}\n" for i in item_ids))
    tf.train.Checkpoint(user_tower=user_tower, item_tower=item_tower).write(
        str(out / "weights" / "towers")
    )
    if meta["index"] == "faiss":
        save_faiss(item_embeddings, out / "index.faiss")
    else:
        save_brute_force(user_tower, item_embeddings, item_ids, 100, history_len, out / "index")
    write_json(meta, out / "meta.json")


class Retrieval(NamedTuple):
    """The exported retrieval model as the later stages and serving use it."""

    encode: Callable[[dict], np.ndarray]  # user tower inputs -> [users, dim] embeddings
    items: np.ndarray  # [n_items, dim] item embeddings, catalogue order
    item_index: ItemIndex  # exact scan, or faiss above train.retrieval.faiss_above


def load_retrieval(data: ModelData, folder: Path = RETRIEVAL_DIR) -> Retrieval:
    """The exported user encoder, item embeddings and item index, checked against the catalogue.

    Raises:
        ValueError: the model was trained on another catalogue.
    """
    encode = load_user_encoder(folder / "user_tower")
    items = np.load(folder / "item_embeddings.npy")
    ids = (folder / "item_ids.txt").read_text().splitlines()
    if ids != list(data.catalog.item_ids):
        raise ValueError(f"{folder} was trained on another catalogue; run dvc repro")
    return Retrieval(encode, items, ItemIndex.load(folder, items))
