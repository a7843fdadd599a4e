"""What importing the library pulls in: the core stays free of the benchmark's and the text teacher's dependencies."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the library (the benchmark wing, pml_relaxed_bench, lives in benchmarks/, outside it)
CORE = [
    "pml_relaxed",
    "pml_relaxed.functional",
    "pml_relaxed.losses",
    "pml_relaxed.miners",
    "pml_relaxed.similarities",
    "pml_relaxed.trainers",
    "pml_relaxed.evaluation",
    "pml_relaxed.models",
    "pml_relaxed.datasets",
    "pml_relaxed.distributed",
    "pml_relaxed.samplers",
]
#: optional dependencies: plots and images (the bench extra), the text teacher (the text extra)
HEAVY = ["matplotlib", "PIL", "sentence_transformers", "transformers"]


def _python(code: str) -> str:
    """Runs ``code`` in a fresh interpreter from the checkout's root (so this checkout's pml_relaxed is imported)."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_core_loads_none_of_the_optional_dependencies():
    code = (
        "import importlib, json, sys\n"
        f"modules = [importlib.import_module(name) for name in {CORE!r}]\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'file': modules[0].__file__, 'heavy': heavy}))\n"
    )
    report = json.loads(_python(code))
    assert Path(report["file"]).resolve() == ROOT / "pml_relaxed" / "__init__.py"
    assert report["heavy"] == [], f"importing the core loaded {report['heavy']}"


def test_datasets_without_pillow_read_what_needs_no_image():
    # None in sys.modules makes `import PIL` fail as it does when pillow is not installed
    code = (
        "import sys\n"
        "sys.modules['PIL'] = None\n"
        "from pml_relaxed.datasets import Digits, Omniglot\n"
        "print(len(Digits('train')))\n"
        "omniglot = Omniglot.__new__(Omniglot)\n"
        "omniglot.image_size = 28\n"
        "try:\n"
        "    omniglot._decode(b'')\n"
        "except ImportError as err:\n"
        "    print(err)\n"
        "try:\n"
        "    from pml_relaxed.datasets import CUB200\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    lines = _python(code).splitlines()
    assert lines[0] == "901"
    assert lines[1] == (
        "Omniglot reads images with Pillow, which is not installed: pip install pillow "
        "(pml-relaxed[vision] and pml-relaxed[bench] include it)"
    )
    assert lines[2] == (
        "CUB200 extends PML's dataset reader, which needs Pillow, not installed: pip install pillow "
        "(pml-relaxed[vision] and pml-relaxed[bench] include it)"
    )


@pytest.mark.parametrize("module", ["pml_relaxed.models.sentence_transformer_teacher"])
def test_the_text_teacher_imports_sentence_transformers_only_when_built(module):
    code = f"import importlib, sys; importlib.import_module({module!r}); print('sentence_transformers' in sys.modules)"
    assert _python(code).strip() == "False"


# ----------------------------------------------------------------------------- the import graph

PACKAGE = ROOT / "pml_relaxed"
WING = ROOT / "benchmarks" / "pml_relaxed_bench"


def _module_names() -> dict:
    """Module name -> (path, is_package) for every module of the library and of the benchmark wing."""
    modules = {}
    for package in (PACKAGE, WING):
        for path in sorted(package.rglob("*.py")):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join(parts)] = (path, is_package)
    return modules


def _imported(module: str, path: Path, is_package: bool, modules: dict) -> set:
    """The package's modules that ``module`` imports anywhere in its code (top level or inside functions)."""

    def known(name: str) -> str:
        while name and name not in modules:  # `from pkg.mod import name`: the module pkg.mod
            name = name.rpartition(".")[0]
        return name

    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {known(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from . import losses` imports the module pml_relaxed.losses
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else known(source))
    return {t for t in targets if t and t != module}


def _graph() -> dict:
    modules = _module_names()
    return {name: _imported(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def _reachable(graph: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    graph = _graph()
    assert {"pml_relaxed.losses", "pml_relaxed.similarities", "pml_relaxed.functional"} <= graph["pml_relaxed"]
    assert "pml_relaxed._validation" in graph["pml_relaxed.losses.pkt_loss"]  # from .. import _validation as v
    assert "pml_relaxed.trainers" in graph["pml_relaxed_bench.runner"]  # the wing's absolute imports
    assert "pml_relaxed_bench.runner" in graph["pml_relaxed_bench.tasks.common"]  # from ..runner import ...


def test_no_import_cycle():
    graph = _graph()
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    "core",
    [
        "pml_relaxed.functional",
        "pml_relaxed.similarities",
        "pml_relaxed.losses",
        "pml_relaxed.miners",
        "pml_relaxed.distributed",
    ],
)
def test_core_never_reaches_trainers_datasets_or_the_benchmark(core):
    graph = _graph()
    reached = {core} | _reachable(graph, core)
    reached |= {t for name in list(reached) if name.startswith(core + ".") for t in _reachable(graph, name)}
    reached |= {name for name in graph if name.startswith(core + ".")}
    for forbidden in ("pml_relaxed.trainers", "pml_relaxed.datasets", "pml_relaxed_bench"):
        bad = sorted(name for name in reached if name == forbidden or name.startswith(forbidden + "."))
        assert not bad, f"{core} reaches {bad}"


#: the shared plumbing, one place each: index tuples and self pairs, the teacher route, input checks, the engine
PLUMBING = ["pml_relaxed._pairs", "pml_relaxed._teacher", "pml_relaxed._validation", "pml_relaxed._relaxed_engine"]


def test_the_plumbing_imports_only_itself():
    graph = _graph()
    assert set(PLUMBING) <= set(graph)
    for module in PLUMBING:
        assert graph[module] <= set(PLUMBING), f"{module} imports {sorted(graph[module] - set(PLUMBING))}"


def test_the_library_never_imports_the_benchmark_wing():
    graph = _graph()
    importers = sorted(
        name
        for name, targets in graph.items()
        if name.startswith("pml_relaxed.") or name == "pml_relaxed"
        if any(t == "pml_relaxed_bench" or t.startswith("pml_relaxed_bench.") for t in targets)
    )
    assert importers == []
    mentions = sorted(p.name for p in PACKAGE.rglob("*.py") if "pml_relaxed_bench" in p.read_text())
    assert mentions == ["cli.py"]  # the command finds the wing by name, at run time (importlib)
    assert not (PACKAGE / "bench").exists()


def test_bench_names_the_extra_when_matplotlib_is_missing():
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"  # as if matplotlib were not installed
        "from pml_relaxed.cli import main\n"
        "sys.exit(main(['bench', '--dataset', 'digits']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pml-relaxed bench needs 'matplotlib', which is not installed: pip install -e '.[bench]' from a clone"
    )
