"""The packaged model's fitted state (serving/package.py): saved and loaded as it was, no raw user
id in it, and a version packaged by an older recfusion refused with what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from recfusion.models.inputs import ItemTable, Vocab, Vocabularies
from recfusion.privacy import key_check, key_pseudonym
from recfusion.serving.package import Package, PackageError, load_package, save_package
from recfusion.serving.recommender import Recommender
from tests.conftest import REPO


def package() -> Package:
    n = 3
    catalog = ItemTable(np.array(["i1", "i2", "i3"], dtype=object), np.arange(1, 4, dtype=np.int32),
                        np.ones((n, 3), np.int32), np.zeros(n, np.int32), np.ones(n, np.int32),
                        np.zeros((n, 4), np.int32), np.array([True, False, True]),
                        np.array(["a", "", "c"], dtype=object))  # fmt: skip
    names = Vocabularies.__dataclass_fields__
    vocab = Vocabularies(**{name: Vocab((f"{name}-x",)) for name in names})
    vocab = Vocabularies(**{**vars(vocab), "user_id": Vocab((key_pseudonym("u1", b"k"),))})
    return Package(catalog, vocab, np.array([3.0, 0.0, 1.0], np.float32),
                   np.array([1.0, 9999.0, 2.0], np.float32), 14,
                   np.eye(n, dtype=np.float32), ("train", "val"), key_check(b"k"))  # fmt: skip


def test_a_package_loads_as_it_was_saved_and_names_no_user(tmp_path: Path) -> None:
    saved = package()
    save_package(saved, tmp_path / "package")
    got = load_package(tmp_path / "package")
    for field in ("item_ids", "id_idx", "category", "brand", "price_bucket", "tokens", "in_stock",
                  "titles"):  # fmt: skip
        np.testing.assert_array_equal(getattr(got.catalog, field), getattr(saved.catalog, field))
    np.testing.assert_array_equal(got.counts, saved.counts)
    np.testing.assert_array_equal(got.ease, saved.ease)
    assert (got.hour, got.splits, got.key_check) == (14, ("train", "val"), saved.key_check)
    assert got.vocab == saved.vocab
    text = b"".join(p.read_bytes() for p in (tmp_path / "package").rglob("*") if p.is_file())
    assert b"u1" not in text


def test_sparse_item_weights_are_saved_as_sparse(tmp_path: Path) -> None:
    """Above fusion.ease_dense_max_items the ease source's weights are sparse neighbours: saved
    as ease.npz (CSR), loaded back equal, never densified."""
    import dataclasses

    import scipy.sparse as sp

    weights = sp.csr_matrix(np.array([[0, 0.5, 0], [0, 0, -0.25], [1, 0, 0]], np.float32))
    save_package(dataclasses.replace(package(), ease=weights), tmp_path / "package")
    assert (tmp_path / "package/ease.npz").is_file()
    assert not (tmp_path / "package/ease.npy").exists()
    got = load_package(tmp_path / "package").ease
    assert sp.issparse(got) and (got != weights).nnz == 0


def test_a_missing_or_old_package_is_refused_with_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="run dvc repro"):
        load_package(tmp_path / "nothing")
    old = tmp_path / "old"
    (old / "data/prepared").mkdir(parents=True)
    shutil.copy2(REPO / "params.yaml", old / "params.yaml")
    with pytest.raises(PackageError, match="packaged by an older recfusion"):
        Recommender.load(old)
