"""Imports point one way: format <- warehouse <- pipeline <- devtools <- cli.

Every ``import nem12...`` counts, including those inside functions and under
``TYPE_CHECKING``: a deferred import is still a dependency. DAG files and the
plugin call the pipeline layer only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "include" / "nem12"
#: Bottom to top; a module may import its own layer and those below it.
LAYERS = ("format", "warehouse", "pipeline", "devtools", "cli")


def layer_of(module: str) -> str:
    """``nem12.warehouse.merge`` -> ``warehouse``; the package root counts as ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "cli"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(p for p in relative.parts if p != "__init__")


def nem12_imports(path: Path) -> set[str]:
    """The nem12 modules ``path`` imports, by full name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "nem12"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "nem12":
                continue
            if node.module == "nem12":  # from nem12 import format -> nem12.format
                found |= {f"nem12.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    """Modules sit in a layer's folder, or beside them (the command and the package root)."""
    outside = [
        module_name(p)
        for p in MODULES
        if p.parent != PACKAGE and p.relative_to(PACKAGE).parts[0] not in LAYERS
    ]
    assert outside == []
    assert {layer_of(module_name(p)) for p in MODULES} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_only_downward(path):
    importer = layer_of(module_name(path))
    upward = [
        target
        for target in sorted(nem12_imports(path))
        if LAYERS.index(layer_of(target)) > LAYERS.index(importer)
    ]
    assert upward == [], f"{module_name(path)} ({importer}) imports a higher layer"


@pytest.mark.parametrize(
    "path", [*sorted((ROOT / "dags").glob("*.py")), *sorted((ROOT / "plugins").glob("*.py"))],
    ids=lambda p: p.name,
)  # fmt: skip
def test_dags_and_the_plugin_call_the_pipeline_layer_only(path):
    layers = {layer_of(target) for target in nem12_imports(path)}
    assert layers <= {"pipeline"}, f"{path.name} imports {sorted(layers)}"


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nem12.pipeline.steps import merge\n")
    assert nem12_imports(bad) == {"nem12.pipeline.steps"}
    assert LAYERS.index(layer_of("nem12.pipeline.steps")) > LAYERS.index("warehouse")
