"""A non-editable ``pip install .`` works on its own: the package, its data, the digits example, Banking77.

The install goes into a fresh folder with ``--no-deps --no-index --no-build-isolation`` (offline, seconds: the
interpreter's torch, PML and setuptools are reused, nothing is downloaded), from a copy of the sources, and
everything then runs from outside the checkout, so only the installed copy can be imported.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.banking77_fixture import make_banking77

ROOT = Path(__file__).resolve().parents[1]
DATA_VARIABLES = ("PML_RELAXED_DATA", "PML_RELAXED_BANKING77", "PML_RELAXED_OMNIGLOT", "XDG_CACHE_HOME")

CHECK = """
import importlib.util, json, sys
import pml_relaxed
from pml_relaxed.datasets import Banking77
print(pml_relaxed.__file__)
train = Banking77(root=sys.argv[1], split="train")
print(len(train), train.num_classes, len(Banking77(root=sys.argv[1], split="test")))
try:
    Banking77()
except FileNotFoundError as err:
    print(err)
spec = importlib.util.spec_from_file_location("digits_transfer", sys.argv[2])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
results = example.main(example.get_args_parser().parse_args(["--teacher-epochs", "1", "--student-epochs", "1"]))
print(json.dumps({name: scores["R@1"] for name, scores in results.items()}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed (not editable) into a folder of its own; returns that folder."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pml_relaxed", source / "pml_relaxed", ignore=shutil.ignore_patterns("__pycache__"))
    target = work / "site"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--target",
        str(target),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _env(target: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DATA_VARIABLES}
    env.update(PYTHONPATH=str(target), HOME=str(home), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return env


def test_the_wheel_holds_the_package_its_marker_and_its_command(installed):
    package = installed / "pml_relaxed"
    assert (package / "py.typed").is_file(), "the typing marker is package data"
    assert (package / "datasets" / "data_root.py").is_file()
    assert not (package / "bench").exists() and not (installed / "pml_relaxed_bench").exists()  # the wing stays out
    assert not (installed / "tests").exists() and not (installed / "benchmarks").exists()
    assert (installed / "bin" / "pml-relaxed").is_file()


def test_installed_package_runs_the_digits_example_and_reads_banking77(installed, tmp_path):
    root = make_banking77(tmp_path)
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(root), str(ROOT / "examples" / "digits_transfer.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=_env(installed, home),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert Path(lines[0]).resolve() == (installed / "pml_relaxed" / "__init__.py").resolve()
    assert lines[1] == "24 39 12"  # the fixture: 6 texts for 4 of the 39 training intents, 12 test texts
    cache = home / ".cache" / "pml_relaxed" / "banking77"
    assert lines[2].startswith(f"Banking77 root {str(cache)!r} (from the user cache folder"), lines[2]
    assert "site-packages" not in lines[2] and str(installed) not in lines[2], "no default inside the installation"
    scores = json.loads(lines[-1])  # teacher, transferred student, student from scratch
    assert len(scores) == 3 and all(0.0 <= r1 <= 1.0 for r1 in scores.values())


def test_installed_command_starts(installed, tmp_path):
    result = subprocess.run(
        [str(installed / "bin" / "pml-relaxed"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_env(installed, tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pml-relaxed bench")


def test_without_the_benchmark_wing_the_command_says_how_to_get_it(installed, tmp_path):
    hide_the_wing = "import sys; sys.modules['pml_relaxed_bench'] = None; from pml_relaxed import cli; "
    for argv in (["bench", "--dataset", "digits", "--quick"], ["bench", "--task", "ssl", "--quick"]):
        result = subprocess.run(
            [sys.executable, "-c", hide_the_wing + f"sys.exit(cli.main({argv!r}))"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_env(installed, tmp_path),
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "pml-relaxed bench needs the benchmark, which lives in the repository's benchmarks/ folder, not in the "
            "library: from a clone, pip install -e ./benchmarks"
        ]
