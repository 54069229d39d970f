"""Imports run down the layers of DESIGN.md ("Layers (imports run downward only)").

A plain `ast` scan of src/recfusion: every `recfusion.*` import (at the top of a module or
inside a function) must name a unit on a lower layer than the importing module's unit, or the
importing module's own unit. Units on one layer are siblings and never import each other
(fusion and search above all: what both need moves down, into models/). Nothing below
orchestration imports Prefect.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "recfusion"

# unit (a top-level module or package of recfusion) -> layer; a unit imports lower layers only
LAYERS = {
    "__init__": 0,  # the package itself: its version
    "config_parse": 0,  # YAML -> typed dataclasses, for any schema
    "paths": 0,  # where the stages read and write
    "logs": 0,  # logging set-up
    "privacy": 0,  # pseudonyms of user ids in what people read
    "config": 1,  # params.yaml -> the typed configuration
    "metrics": 2,  # leaf metrics (top-k, ranking and classification metrics): pure NumPy
    "engine": 2,  # where data-parallel work runs: this process or a Dask cluster
    "data": 3,  # canonical schema, sources, io
    "validation": 4,  # GX suites, quarantine
    "preparation": 4,  # cleaning, splits, vocabularies
    "models": 5,  # TFRS sub-models, model inputs, exports and their loaders
    "fusion": 6,  # candidate sources and fusion methods
    "search": 6,  # hybrid product search
    "evaluation": 7,  # slices, beyond-accuracy, search quality, the HTML report
    "registry": 8,  # the gate's pure decision, alias moves, tracking
    "serving": 9,  # the packaged recommender and its scoring
    "stages": 10,  # one module per dvc.yaml stage
    "orchestration": 11,  # what the Prefect flows use (no Prefect import itself)
    "cli": 12,  # the `recfusion` command
}
PREFECT_FROM = LAYERS["orchestration"]  # the lowest layer that may import prefect


def unit_of(module: str) -> str:
    """The unit of a dotted module name inside recfusion ("recfusion.fusion.period" -> fusion)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, relative ones resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from recfusion import data` imports the unit data
            if name == "recfusion":
                out += [(node.lineno, f"recfusion.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
    return out


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in `source` (module `module`) that breaks the layer rules."""
    unit = unit_of(module)
    if unit not in LAYERS:
        return [f"{module}: unit '{unit}' has no layer in LAYERS; place it"]
    found = []
    for line, name in imported_modules(source, module, is_package):
        top = name.split(".")[0]
        if top == "prefect" and LAYERS[unit] < PREFECT_FROM:
            found.append(f"{module}:{line} imports {name} (Prefect below orchestration)")
        if top != "recfusion":
            continue
        target = unit_of(name)
        if target == unit:
            continue  # sideways within one unit
        if target not in LAYERS:
            found.append(f"{module}:{line} imports {name}, a unit without a layer")
        elif LAYERS[target] >= LAYERS[unit]:
            way = "sideways to a sibling" if LAYERS[target] == LAYERS[unit] else "up"
            found.append(f"{module}:{line} imports {name}: {way} ({unit} {LAYERS[unit]} -> "
                         f"{target} {LAYERS[target]})")  # fmt: skip
    return found


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_import_runs_down_the_layers() -> None:
    found = []
    for path in source_files():
        found += violations(path.read_text(encoding="utf-8"), module_name(path),
                            path.name == "__init__.py")  # fmt: skip
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_fusion_and_search_never_import_each_other() -> None:
    for unit, other in (("fusion", "search"), ("search", "fusion")):
        for path in sorted((PACKAGE / unit).rglob("*.py")):
            names = [n for _, n in imported_modules(path.read_text(encoding="utf-8"),
                                                    module_name(path), path.name == "__init__.py")]  # fmt: skip
            assert not [n for n in names if unit_of(n) == other and n.startswith("recfusion.")], (
                f"{path.relative_to(REPO)} imports recfusion.{other}"
            )


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_file() and p.suffix == ".py" and p.name != "__init__.py")
             or (p.is_dir() and (p / "__init__.py").is_file())}  # fmt: skip
    assert units <= set(LAYERS), f"units without a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_the_scan_sees_real_imports() -> None:
    """The scan is not vacuous: known imports of the tree are found, resolved and allowed."""
    path = PACKAGE / "stages" / "prepare.py"
    names = {n for _, n in imported_modules(path.read_text(encoding="utf-8"),
                                            "recfusion.stages.prepare", False)}  # fmt: skip
    assert {"recfusion.config", "recfusion.preparation.clean"} <= names


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        # an evaluation module scoring a served model (serving is above evaluation)
        ("recfusion.evaluation.x", "from recfusion.serving.recommender import Recommender", True),
        # siblings: search must not borrow from fusion, nor fusion from search
        ("recfusion.search.x", "from recfusion.fusion.candidates import CandidateSet", True),
        ("recfusion.fusion.x", "import recfusion.search.searcher", True),
        # a model importing the registry, inside a function
        ("recfusion.models.x", "def f():\n    from recfusion.registry import moves\n", True),
        # a relative import resolved to its absolute name (models.x -> recfusion.evaluation.html)
        ("recfusion.models.x", "from ..evaluation import html", True),
        ("recfusion.stages.x", "import prefect", True),
        ("recfusion.orchestration.x", "import prefect", False),
        ("recfusion.fusion.x", "from recfusion.models.dataset import History", False),
        ("recfusion.fusion.x", "from recfusion.fusion.candidates import CandidateSet", False),
        ("recfusion.cli", "from recfusion.orchestration.dvc_stage import pipeline_stages", False),
    ],
)
def test_the_rules_flag_bad_imports(module: str, source: str, bad: bool) -> None:
    assert bool(violations(source, module)) == bad
