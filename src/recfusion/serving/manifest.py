"""The packaged workspace's manifest: every file's size and SHA-256, written when the workspace is
snapshotted for registration and checked before a registered model is assembled.

A registered version missing one file (say models/fusion/stacker.txt) otherwise fails minutes
into loading with a library's traceback; checked against its manifest it fails in seconds with
the file's name. `MANIFEST.json` sits at the workspace's top:

    {"format": 1, "files": {"data/prepared/items.parquet": {"size": 1234, "sha256": "..."}, ...}}

with one entry per file under the folder (relative POSIX paths, sorted; the manifest itself left
out).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from recfusion.data.io import DataFileError

MANIFEST = "MANIFEST.json"
FORMAT = 1  # the manifest's layout; a reader refuses other values
SHOWN_PROBLEMS = 10  # files named in an error; the rest are counted


class WorkspaceMismatch(DataFileError):
    """A packaged workspace no longer matches its manifest: files were removed or changed after
    it was logged (or the manifest itself is unreadable)."""

    def __init__(self, label: str, problems: Sequence[str]) -> None:
        self.label = label
        self.problems = tuple(problems)
        shown = "; ".join(self.problems[:SHOWN_PROBLEMS])
        more = len(self.problems) - SHOWN_PROBLEMS
        if more > 0:
            shown += f"; and {more} more"
        super().__init__(f"{label}: the packaged workspace does not match its {MANIFEST} "
                         f"({shown}); the model is damaged: register it again")  # fmt: skip

    def __reduce__(self) -> tuple[type[WorkspaceMismatch], tuple[str, tuple[str, ...]]]:
        # the default would call the class with the message alone (e.g. in a subprocess's pickle)
        return type(self), (self.label, self.problems)


def file_entry(path: Path) -> dict[str, int | str]:
    """{"size": bytes, "sha256": hex digest} of one file, read in chunks (hashlib.file_digest)."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def list_files(folder: Path) -> list[str]:
    """Every file under `folder` but the manifest, as sorted relative POSIX paths."""
    paths = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in paths if p != MANIFEST)


def write_manifest(folder: Path) -> Path:
    """Writes `folder`/MANIFEST.json listing every file under `folder` (see the module docstring)
    and returns its path; an older manifest there is replaced."""
    files = {rel: file_entry(folder / rel) for rel in list_files(folder)}
    path = folder / MANIFEST
    path.write_text(json.dumps({"format": FORMAT, "files": files}, indent=1) + "\n",
                    encoding="utf-8")  # fmt: skip
    return path


def read_manifest(path: Path, label: str) -> dict[str, dict]:
    """The manifest's files (relative path -> {"size", "sha256"}).

    Raises:
        WorkspaceMismatch: the manifest is not JSON, has another format, or lists a path that is
            absolute or leaves the folder.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        ok = manifest["format"] == FORMAT and isinstance(files, dict)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise WorkspaceMismatch(label, [f"{MANIFEST} is unreadable: {e}"]) from e
    if not ok:
        raise WorkspaceMismatch(label, [f"{MANIFEST} is not format {FORMAT}"])
    bad = [rel for rel, entry in files.items()
           if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts
           or not isinstance(entry, dict) or not {"size", "sha256"} <= entry.keys()]  # fmt: skip
    if bad:
        raise WorkspaceMismatch(label, [f"{MANIFEST} has malformed entries: {', '.join(bad)}"])
    return files


def verify_manifest(folder: Path, label: str) -> None:
    """Checks `folder` against its MANIFEST.json: every listed file is there with the listed size
    and SHA-256 (sizes first, so a truncated file costs no hashing).

    Verification applies only when the manifest exists: a workspace without one (a version
    registered before manifests, or the project's own working copy that `recfusion recommend`
    uses) passes unchecked. Files the manifest does not list are ignored: the loaders read their
    files by name, and a folder gaining a stray file (e.g. an editor's or the OS's) is not
    damage.

    Args:
        folder: the workspace (params.yaml, data/prepared, models/).
        label: what the error calls the model, e.g. "models:/recfusion/3".

    Raises:
        WorkspaceMismatch: listed files are missing or altered, or the manifest is malformed;
            the message names `label` and every such file.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return
    problems = []
    for rel, expected in read_manifest(path, label).items():
        file = folder / rel
        if not file.is_file():
            problems.append(f"{rel} is missing")
        elif (size := file.stat().st_size) != expected["size"]:
            problems.append(f"{rel} has {size} bytes, not {expected['size']}")
        elif file_entry(file)["sha256"] != expected["sha256"]:
            problems.append(f"{rel} was altered (SHA-256 differs)")
    if problems:
        raise WorkspaceMismatch(label, problems)
