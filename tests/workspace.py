"""Temporary copies of the repository for the slow tests (e2e and flows).

The pipeline runs once a session at the tiny size, up to (not including) `register`; each test
module that needs a trained workspace gets its own copy of that snapshot, so the DVC tests, the
server tests and the Prefect flows share one training run instead of training three times.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recfusion.orchestration.dvc_stage import pipeline_stages

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
# everything but these two runs in the shared snapshot; they write to the MLflow store, whose
# artifact locations are absolute paths, so each copy registers its own versions
REGISTRY_STAGES = ("register", "gate")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    """Runs `cmd`; fails the test with its output unless it exits 0."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def dvc(*args: str) -> list[str]:
    return [str(BIN / "dvc"), *args]


def stage_names(dest: Path) -> list[str]:
    """The stages of the copy's dvc.yaml, in order."""
    return pipeline_stages(dest / "dvc.yaml")


def tool_env() -> dict[str, str]:
    """This venv's tools first on PATH, and a git identity for `git commit` and `dvc exp save`."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **GIT_IDENTITY}
    for var, value in GIT_IDENTITY.items():
        os.environ.setdefault(var, value)  # `dvc exp save` commits from this process's children
    return env


def copy_repo(dest: Path) -> tuple[Path, dict[str, str]]:
    """A git-initialised copy of the repository's files (no pipeline outputs) at the tiny size,
    and the environment to run its tools in."""
    if not (REPO / ".git").exists():
        pytest.skip("needs the git checkout of recfusion")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not name.startswith(("data/raw", "data/prepared", "reports/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["ingest"]["synthetic"]["size"] = "tiny"
    # fewer epochs than the default run: these workspaces check the pipeline's wiring, outputs
    # and serving (tests/model checks what the models learn), and every stage of the shared
    # trained workspace is on the critical path of both test workers
    for model, epochs in (("retrieval", 4), ("ranking", 3), ("tags", 15), ("search", 6)):
        params["train"][model]["epochs"] = epochs
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = tool_env()
    sh(["git", "init", "-q"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "copy"], dest, env)
    return dest, env


def trained_snapshot(dest: Path) -> tuple[Path, dict[str, str], str]:
    """A copy of the repository with every stage but register and gate run by `dvc repro`,
    and that run's output."""
    dest, env = copy_repo(dest)
    targets = [s for s in stage_names(dest) if s not in REGISTRY_STAGES]
    return dest, env, sh(dvc("repro", *targets), dest, env)


def copy_workspace(snapshot: Path, dest: Path) -> Path:
    """An independent copy of a workspace: files, git history, DVC cache and outputs."""
    shutil.copytree(snapshot, dest, symlinks=True, dirs_exist_ok=True)
    return dest
