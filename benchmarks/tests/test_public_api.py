"""The scripts in benchmarks/ use the wing's public API (``from pml_relaxed_bench import ...``) and the library's
public modules only; the wing's package never imports a private library module."""

import ast
from pathlib import Path
from typing import List

import pytest

import pml_relaxed_bench

BENCHMARKS = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
WING_MODULES = sorted((BENCHMARKS / "pml_relaxed_bench").rglob("*.py"))


def _private(module: str) -> bool:
    """``pml_relaxed._x`` or ``pml_relaxed.y._z`` (a dunder such as ``__version__`` is public)."""
    parts = module.split(".")
    return parts[0] == "pml_relaxed" and any(p.startswith("_") and not p.endswith("__") for p in parts[1:])


def forbidden_imports(source: str) -> List[str]:
    """The imports of ``source`` (anywhere, function-level included) that reach past the public APIs: a
    ``pml_relaxed_bench.<submodule>``, or a private ``pml_relaxed`` module (a ``_`` part)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("pml_relaxed_bench.") or _private(a.name)]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.startswith("pml_relaxed_bench.") or _private(node.module):
                found.append(node.module)
            else:  # `from pml_relaxed import _validation`
                found += [f"{node.module}.{a.name}" for a in node.names if _private(f"{node.module}.{a.name}")]
    return found


def test_the_check_catches_submodules_and_private_modules():
    assert forbidden_imports("from pml_relaxed_bench.runner import load_done") == ["pml_relaxed_bench.runner"]
    assert forbidden_imports("def f():\n    import pml_relaxed_bench.cli") == ["pml_relaxed_bench.cli"]
    assert forbidden_imports("from pml_relaxed import _validation as v") == ["pml_relaxed._validation"]
    assert forbidden_imports("from pml_relaxed.models._batch_hashing import x") == ["pml_relaxed.models._batch_hashing"]
    assert forbidden_imports("from pml_relaxed_bench import load_done\nfrom pml_relaxed.models import MLP") == []


@pytest.mark.parametrize(
    "script",
    SCRIPTS,
    ids=[path.name for path in SCRIPTS],
)
def test_scripts_import_only_the_public_api_of_the_wing_and_the_library(script):
    assert forbidden_imports(script.read_text()) == [], f"{script.name}: import these from pml_relaxed_bench"


def test_scripts_import_only_names_the_wing_exports():
    exported = set(pml_relaxed_bench.__all__)
    for script in SCRIPTS:
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pml_relaxed_bench":
                missing = {alias.name for alias in node.names} - exported
                assert not missing, f"{script.name} imports {sorted(missing)}, not in pml_relaxed_bench.__all__"


def test_every_exported_name_exists():
    assert [name for name in pml_relaxed_bench.__all__ if not hasattr(pml_relaxed_bench, name)] == []


@pytest.mark.parametrize("module", WING_MODULES, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_the_wing_imports_no_private_library_module(module):
    private = [m for m in forbidden_imports(module.read_text()) if _private(m)]
    assert private == [], f"{module.name} imports private library modules; use the public API or local checks"
