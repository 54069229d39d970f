"""dvc.yaml lists exactly the code each stage runs: the import closure of its module.

A stage whose command is `python -m recfusion.stages.NAME` runs every recfusion module that
module imports, directly or through others (imports inside functions count: they run when
called). DVC reruns a stage only when a listed dependency changes, so a module missing from the
stage's deps is a change DVC would not rerun; a listed source folder none of whose files the stage
imports reruns it for nothing: a folder is listed only when the stage runs every module in it.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file of module `name` under src/, or None if `name` is not a recfusion module."""
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        or isinstance(node, ast.Assign | ast.AnnAssign)
        and all(isinstance(v, ast.Constant) for v in ast.walk(node.value) if v is not node)
        for node in body
    )


def is_module_name(value: ast.expr) -> bool:
    return (isinstance(value, ast.Constant) and isinstance(value.value, str)
            and value.value.startswith("recfusion.") and module_file(value.value) is not None)  # fmt: skip


@cache
def direct_imports(path: Path) -> frozenset[str]:
    """Every recfusion module that `path` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            # the house imports absolutely; a relative import would escape this scan
            raise AssertionError(f"{path}:{node.lineno}: relative import; import absolutely")
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from recfusion.x import y`: y is a submodule or a name defined in recfusion.x
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Assign) and is_module_name(node.value):
            # a module named in a constant (`MODEL_CODE = "recfusion.serving.pyfunc_model"`) is
            # run by path: MLflow executes the model-code file when it logs and loads the model
            names = [node.value.value]  # type: ignore[attr-defined]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "recfusion":
                continue
            parts = name.split(".")
            # importing a.b.c runs the packages a and a.b first
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(n for n in found if module_file(n) is not None)


def import_closure(module: str) -> set[Path]:
    """The files of every recfusion module `module` runs, packages holding only a docstring
    and constants left out (they change no stage's result)."""
    seen: set[str] = set()
    todo = [module, *(module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1))]
    while todo:
        name = todo.pop()
        if name in seen or (path := module_file(name)) is None:
            continue
        seen.add(name)
        todo.extend(direct_imports(path))
    files = {module_file(n) for n in seen}
    return {f for f in files if f is not None and not (f.name == "__init__.py"
                                                       and is_docstring_only(f))}  # fmt: skip


def stage_module(stage: dict) -> str | None:
    cmd = stage.get("cmd", "")
    prefix = "python -m "
    return cmd[len(prefix) :].split()[0] if cmd.startswith(prefix) else None


def code_deps(stage: dict) -> list[Path]:
    return [REPO / d for d in stage.get("deps", []) if d.startswith("src/")]


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_cover_its_import_closure(name: str) -> None:
    module = stage_module(STAGES[name])
    assert module and module.startswith("recfusion.stages."), f"{name}: cmd {STAGES[name]['cmd']}"
    deps = code_deps(STAGES[name])
    missing = sorted(
        str(f.relative_to(REPO))
        for f in import_closure(module)
        if not any(f == d or d in f.parents for d in deps)
    )
    assert not missing, f"dvc.yaml stage '{name}' does not list code it imports: {missing}"


def code_files(dep: Path) -> set[Path]:
    """The modules a code dependency stands for (a folder: every module in it that counts)."""
    if dep.is_file():
        return {dep}
    return {f for f in dep.rglob("*.py") if not (f.name == "__init__.py" and is_docstring_only(f))}


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_lists_no_code_it_does_not_run(name: str) -> None:
    closure = import_closure(stage_module(STAGES[name]) or "")
    unused = sorted(
        str(f.relative_to(REPO)) for d in code_deps(STAGES[name]) for f in code_files(d) - closure
    )
    assert not unused, f"dvc.yaml stage '{name}' lists code it never imports: {unused}"


def test_closure_follows_imports_inside_functions() -> None:
    """The scan itself: imports at the top and inside functions (serving/loading.py imports
    the recommender and the tracking helpers inside functions), but not packages that hold only
    a docstring."""
    closure = import_closure("recfusion.stages.prepare")
    assert SRC / "recfusion/config.py" in closure
    assert SRC / "recfusion/stages/prepare.py" in closure
    assert SRC / "recfusion/stages/__init__.py" not in closure  # a docstring only
    loading = SRC / "recfusion/serving/loading.py"
    tree = ast.parse(loading.read_text(encoding="utf-8"))
    functions = [fn for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)]
    nested = {n.module for fn in functions for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)}
    assert {"recfusion.serving.recommender", "recfusion.registry.tracking"} <= nested
    assert {"recfusion.serving.recommender", "recfusion.registry.tracking"} <= direct_imports(
        loading
    )
