"""Packaging: every subpackage ships in the wheel, every import is a declared dependency."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DIST = {"sklearn": "scikit-learn", "segmentation_models_pytorch": "segmentation-models-pytorch"}


def test_every_subpackage_is_listed_for_the_wheel():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "geoembed").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"geoembed.cli"}
    assert (ROOT / "cli" / "__init__.py").exists()


def _top_level_imports(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_declared():
    sources = [*(ROOT / "geoembed").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]
    third_party = _top_level_imports(sources) - set(sys.stdlib_module_names) - {"geoembed"}
    declared = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for dep in PYPROJECT["project"]["dependencies"]}
    missing = {DIST.get(n, n).lower() for n in third_party} - declared
    assert missing == set(), f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_minimum_constraints_pin_every_declared_floor():
    pins = {}
    for line in (ROOT / "constraints" / "minimum.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    for dep in PYPROJECT["project"]["dependencies"]:
        name, _, floor = dep.partition(">=")
        if name.strip() == "torch":
            continue  # torch comes from the machine's disk; its floor is not pinned here
        assert name.strip().lower() in pins, f"{name} has no pin in constraints/minimum.txt"
        pinned = tuple(int(x) for x in pins[name.strip().lower()].split("."))
        wanted = tuple(int(x) for x in floor.split("."))
        assert pinned[:len(wanted)] == wanted, f"{name}: pin {pinned} is not the floor {floor}"


def test_every_public_name_resolves():
    import geoembed

    for name in set(geoembed.__all__) - {"__version__"}:
        assert getattr(geoembed, name).__module__.startswith("geoembed."), name
    assert geoembed.__version__ == PYPROJECT["project"]["version"]
