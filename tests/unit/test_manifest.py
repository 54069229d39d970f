"""The packaged workspace's manifest: written at snapshot, checked before a model is assembled.

The manifest's own tests use tiny folders in tmp_path and no TensorFlow; the ones marked as
loading the pyfunc wrapper (`pyfunc` fixture) import serving/pyfunc.py, which imports the
recommender and with it TensorFlow (about 15 s, once per session).
"""

from __future__ import annotations

import importlib
import json
import pickle
from pathlib import Path
from types import ModuleType, SimpleNamespace

import mlflow
import pytest

from recfusion.data.io import DataFileError
from recfusion.registry import tracking
from recfusion.serving.loading import load_model
from recfusion.serving.manifest import (
    MANIFEST,
    SHOWN_PROBLEMS,
    WorkspaceMismatch,
    verify_manifest,
    write_manifest,
)
from recfusion.stages.entry import guarded
from tests.conftest import PARAMS

LABEL = "models:/recfusion/3"
# sha256 of b"abc" (FIPS 180-2's first example) and of b"" (the empty message)
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def make_workspace(folder: Path) -> Path:
    """A tiny workspace: a top file, a nested file, an empty file, a binary file."""
    files = {
        "params.yaml": b"abc",
        "models/fusion/stacker.txt": b"tree=0\nleaf=1\n",
        "models/fusion/empty.json": b"",
        "data/prepared/items.parquet": bytes(range(256)),
    }
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    return folder


def test_manifest_lists_every_file_sorted_with_size_and_digest(tmp_path: Path) -> None:
    path = write_manifest(make_workspace(tmp_path))
    assert path == tmp_path / MANIFEST
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
    # sorted relative POSIX paths, the manifest itself left out
    assert list(files) == [
        "data/prepared/items.parquet",
        "models/fusion/empty.json",
        "models/fusion/stacker.txt",
        "params.yaml",
    ]
    assert files["params.yaml"] == {"size": 3, "sha256": ABC_SHA256}
    assert files["models/fusion/empty.json"] == {"size": 0, "sha256": EMPTY_SHA256}
    assert files["data/prepared/items.parquet"]["size"] == 256
    verify_manifest(tmp_path, LABEL)  # the round trip: an untouched workspace passes


def test_rewriting_replaces_the_manifest_without_listing_it(tmp_path: Path) -> None:
    write_manifest(make_workspace(tmp_path))
    (tmp_path / "models/fusion/stacker.txt").unlink()
    files = json.loads(write_manifest(tmp_path).read_text(encoding="utf-8"))["files"]
    assert MANIFEST not in files and "models/fusion/stacker.txt" not in files
    verify_manifest(tmp_path, LABEL)


def delete(path: Path) -> None:
    path.unlink()


def alter_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01  # same size: only the digest can tell
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (delete, "models/fusion/stacker.txt is missing"),
        (alter_one_byte, "models/fusion/stacker.txt was altered (SHA-256 differs)"),
        (truncate, "models/fusion/stacker.txt has 5 bytes, not 14"),  # "tree=0\nleaf=1\n": 14
    ],
)
def test_a_damaged_file_is_named_with_the_label(tmp_path: Path, damage, problem: str) -> None:
    write_manifest(make_workspace(tmp_path))
    damage(tmp_path / "models/fusion/stacker.txt")
    with pytest.raises(WorkspaceMismatch) as caught:
        verify_manifest(tmp_path, LABEL)
    assert caught.value.problems == (problem,)
    assert str(caught.value).startswith(f"{LABEL}: the packaged workspace does not match")
    assert problem in str(caught.value)


def test_every_damaged_file_is_named_and_a_long_list_is_counted(tmp_path: Path) -> None:
    write_manifest(make_workspace(tmp_path))
    (tmp_path / "params.yaml").unlink()
    truncate(tmp_path / "data/prepared/items.parquet")
    with pytest.raises(WorkspaceMismatch) as caught:
        verify_manifest(tmp_path, LABEL)
    assert caught.value.problems == (
        "data/prepared/items.parquet has 5 bytes, not 256",
        "params.yaml is missing",
    )
    # a whole folder gone: the first SHOWN_PROBLEMS files named, the rest counted
    many = tmp_path / "many"
    for i in range(SHOWN_PROBLEMS + 3):
        (many / "models").mkdir(parents=True, exist_ok=True)
        (many / "models" / f"f{i:02d}.bin").write_bytes(b"x")
    write_manifest(many)
    for f in (many / "models").iterdir():
        f.unlink()
    with pytest.raises(WorkspaceMismatch, match=r"models/f09.bin is missing; and 3 more\)"):
        verify_manifest(many, LABEL)


def test_a_workspace_without_a_manifest_is_not_checked(tmp_path: Path) -> None:
    # a version registered before manifests, or the working copy `recfusion recommend` reads
    verify_manifest(make_workspace(tmp_path), LABEL)
    verify_manifest(tmp_path / "empty", LABEL)


def test_files_the_manifest_does_not_list_are_ignored(tmp_path: Path) -> None:
    write_manifest(make_workspace(tmp_path))
    (tmp_path / "models/fusion/.DS_Store").write_bytes(b"stray")
    verify_manifest(tmp_path, LABEL)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "MANIFEST.json is unreadable"),
        ('{"files": {}}', "MANIFEST.json is unreadable"),
        ('{"format": 2, "files": {}}', "MANIFEST.json is not format 1"),
        ('{"format": 1, "files": {"../outside": {"size": 1, "sha256": "x"}}}', "../outside"),
        ('{"format": 1, "files": {"params.yaml": {"size": 3}}}', "malformed entries: params.yaml"),
    ],
)
def test_a_malformed_manifest_is_an_error(tmp_path: Path, text: str, problem: str) -> None:
    make_workspace(tmp_path)
    (tmp_path / MANIFEST).write_text(text, encoding="utf-8")
    with pytest.raises(WorkspaceMismatch, match=LABEL) as caught:
        verify_manifest(tmp_path, LABEL)
    assert problem in str(caught.value)


def test_the_error_is_a_clear_message_not_a_traceback(tmp_path: Path, caplog) -> None:
    """A DataFileError (a ValueError): the CLI's `guarded` logs one line and exits 2."""
    write_manifest(make_workspace(tmp_path))
    (tmp_path / "params.yaml").unlink()

    def check() -> int:
        verify_manifest(tmp_path, LABEL)
        return 0

    assert issubclass(WorkspaceMismatch, DataFileError)
    assert guarded(check) == 2
    assert f"{LABEL}: the packaged workspace does not match" in caplog.text
    assert "params.yaml is missing" in caplog.text


def test_the_error_survives_pickling() -> None:
    error = WorkspaceMismatch(LABEL, ["params.yaml is missing"])
    again = pickle.loads(pickle.dumps(error))
    assert (again.label, again.problems, str(again)) == (LABEL, error.problems, str(error))


def test_recommend_names_the_model_uri_it_was_given(monkeypatch) -> None:
    """`recfusion recommend --model URI`: the pyfunc's own check names the logged model by its
    id; load_model says the URI the user typed."""

    def damaged(model_uri: str) -> None:
        raise WorkspaceMismatch("models:/m-0123", ["params.yaml is missing"])

    monkeypatch.setattr(tracking, "connect", lambda uri: None)
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: None)
    monkeypatch.setattr(mlflow, "set_registry_uri", lambda uri: None)
    # the module itself: `mlflow.pyfunc` is a lazy loader that passes attribute reads on to it
    monkeypatch.setattr(importlib.import_module("mlflow.pyfunc"), "load_model", damaged)
    with pytest.raises(WorkspaceMismatch, match=rf"^{LABEL}: .*params.yaml is missing"):
        load_model(LABEL, PARAMS)


# the pyfunc wrapper (imports TensorFlow through serving/recommender.py)


@pytest.fixture(scope="module")
def pyfunc() -> ModuleType:
    from recfusion.serving import pyfunc

    return pyfunc


def make_project(root: Path, parts: tuple[str, ...]) -> Path:
    """A fake project root holding each workspace part (a file or a folder with a file)."""
    for part in parts:
        path = root / part
        if path.suffix:  # params.yaml
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("seed: 1\n", encoding="utf-8")
        else:
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "model.bin").write_bytes(part.encode())
    (root / "models" / "unpackaged.txt").write_text("not a workspace part", encoding="utf-8")
    return root


def test_snapshot_writes_a_manifest_that_verifies(tmp_path: Path, pyfunc: ModuleType) -> None:
    root = make_project(tmp_path / "project", pyfunc.WORKSPACE_PARTS)
    dest = pyfunc.snapshot_workspace(root, tmp_path / "workspace")
    files = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert "params.yaml" in files and "models/fusion/sub/model.bin" in files
    assert "models/unpackaged.txt" not in files  # only the parts are copied and listed
    verify_manifest(dest, LABEL)
    (dest / "models/fusion/sub/model.bin").unlink()
    with pytest.raises(WorkspaceMismatch, match="models/fusion/sub/model.bin is missing"):
        verify_manifest(dest, LABEL)


def logged_model(folder: Path, model_id: str) -> Path:
    """A logged model's layout: MLmodel beside artifacts/workspace; returns the workspace."""
    (folder / "artifacts").mkdir(parents=True)
    (folder / "MLmodel").write_text(f"model_id: {model_id}\nflavors: {{}}\n", encoding="utf-8")
    workspace = make_workspace(folder / "artifacts" / "workspace")
    write_manifest(workspace)
    return workspace


def test_load_context_checks_before_assembling(
    tmp_path: Path, pyfunc: ModuleType, monkeypatch
) -> None:
    workspace = logged_model(tmp_path / "model", "m-0123")
    loaded: list[Path] = []
    monkeypatch.setattr(pyfunc.Recommender, "load", lambda root: loaded.append(root) or "ok")
    context = SimpleNamespace(artifacts={pyfunc.ARTIFACT: str(workspace)})
    model = pyfunc.RecfusionModel()
    model.load_context(context)
    assert loaded == [workspace] and model.recommender == "ok"
    (workspace / "models/fusion/stacker.txt").unlink()
    with pytest.raises(WorkspaceMismatch, match=r"^models:/m-0123: .*stacker.txt is missing"):
        model.load_context(context)
    assert loaded == [workspace]  # the damaged workspace was never assembled


def test_local_workspace_checks_with_the_uri(
    tmp_path: Path, pyfunc: ModuleType, monkeypatch
) -> None:
    workspace = logged_model(tmp_path / "model", "m-0123")
    monkeypatch.setattr(
        pyfunc.mlflow.artifacts,
        "download_artifacts",
        lambda artifact_uri, dst_path: str(tmp_path / "model"),
    )
    assert pyfunc.local_workspace(LABEL, tmp_path / "dl") == workspace
    (workspace / "params.yaml").write_bytes(b"ab")
    with pytest.raises(WorkspaceMismatch, match=rf"^{LABEL}: .*params.yaml has 2 bytes, not 3"):
        pyfunc.local_workspace(LABEL, tmp_path / "dl")
