"""Layering and size budgets of DESIGN.md, enforced by reading the source."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lowcomm"

BASE = {"core"}
ALLOWED = {
    "core": set(),
    "compress": BASE,
    "privacy": BASE,
    "cost": BASE,
    "data": BASE,
    "models": BASE,
    "algorithms": BASE | {"compress", "privacy", "models", "data"},
    "analytics": BASE | {"privacy", "cost"},
    "runtime": BASE | {"algorithms", "compress", "privacy", "models", "data", "cost"},
    "report": BASE | {"cost"},
    "cli": None,  # the edge may import anything
}


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


def _layer(path: Path) -> str | None:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else None


def _imported_layers(path: Path, *, source: str | None = None) -> set[str]:
    found = set()
    package = ["lowcomm", *path.relative_to(SRC).parts[:-1]]
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: resolve it
            base = package[: len(package) - node.level + 1]
            names = [".".join([*base, node.module] if node.module else base)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lowcomm" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layer_direction(path):
    layer = _layer(path)
    if layer is None or ALLOWED.get(layer, set()) is None:
        return
    assert layer in ALLOWED, f"new subpackage {layer!r}: add it to the layer map"
    illegal = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not illegal, f"{path.relative_to(SRC)} ({layer}) imports {sorted(illegal)}"


def test_the_layer_check_can_fail():
    source = "from lowcomm.runtime import simulate\nimport lowcomm.cli.main\nfrom ..data import x\n"
    found = _imported_layers(SRC / "cost" / "probe.py", source=source)
    assert found == {"runtime", "cli", "data"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_size_budgets(path):
    lines = len(path.read_text().splitlines())
    budget = 250 if _layer(path) == "algorithms" and path.stem not in ("__init__",) else 400
    assert lines <= budget, f"{path.relative_to(SRC)} has {lines} lines; the budget is {budget}"


def _imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement of `path`."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in top))
    return found


RAY_MODULE = "runtime/ray_pool.py"  # the one module that talks to Ray (an optional extra)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_ray_module_imports_ray_and_only_lazily(path):
    """So `lowcomm.runtime` may export `ray_actors`: Ray loads only when an executor is built."""
    rel = str(path.relative_to(SRC))
    for name, module_level in _imports_of(path):
        if name == "ray" or name.startswith("ray."):
            assert rel == RAY_MODULE, f"{rel} imports {name}; only {RAY_MODULE} may"
            assert not module_level, f"{rel} imports ray at module level; import it lazily"


def test_the_core_imports_without_ray():
    """Importing the library and its CLI loads no Ray module (Ray is an optional extra)."""
    code = ("import sys, lowcomm, lowcomm.runtime, lowcomm.cli.main, lowcomm.cli.run\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    assert out.strip() == "[]"
