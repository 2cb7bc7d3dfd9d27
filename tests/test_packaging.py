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


def _geoembed_imports() -> dict[str, set[str]]:
    """Module (``io/labels``) -> the geoembed modules and third-party roots it imports."""
    graph = {}
    for path in (ROOT / "geoembed").rglob("*.py"):
        name = str(path.relative_to(ROOT / "geoembed").with_suffix(""))
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.add(node.module)
        graph[name] = targets
    return graph


# package -> geoembed packages it must not import (the data flows one way; ARCHITECTURE.md)
FORBIDDEN = {
    "io": ["samplers", "datasets", "transforms", "models", "losses", "trainers", "inference",
           "analysis", "evaluation", "metrics", "demo", "cli"],
    "samplers": ["datasets", "transforms", "models", "losses", "trainers", "inference",
                 "analysis", "evaluation", "demo", "cli"],
    "models": ["trainers", "inference", "analysis", "evaluation", "demo", "cli"],
    "datasets": ["trainers", "inference", "analysis", "evaluation", "demo", "cli"],
    "trainers": ["inference", "analysis", "evaluation", "demo", "cli"],
    "inference": ["trainers", "analysis", "evaluation", "demo", "cli"],
    "metrics": ["io", "samplers", "models", "trainers", "inference", "evaluation", "cli"],
    "analysis": ["trainers", "inference", "evaluation", "demo", "cli"],
    "evaluation": ["trainers", "demo", "cli"],
}


def test_imports_follow_the_data_flow():
    bad = []
    for module, targets in _geoembed_imports().items():
        package = module.split("/")[0]
        for target in targets:
            parts = target.split(".")
            if parts[0] != "geoembed" or len(parts) < 2:
                continue
            if parts[1] in FORBIDDEN.get(package, []) or (parts[1] == "cli"):
                bad.append(f"geoembed/{module}.py imports {target}")
    assert bad == []


def test_io_and_samplers_never_import_torch():
    bad = [f"geoembed/{m}.py imports {t}" for m, targets in _geoembed_imports().items()
           for t in targets
           if m.split("/")[0] in ("io", "samplers") and m != "io/checkpoint"
           and t.split(".")[0] in ("torch", "segmentation_models_pytorch")]
    assert bad == []
