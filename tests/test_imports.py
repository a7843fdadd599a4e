"""What importing the library pulls in: the core stays free of the benchmark's and the text teacher's dependencies."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the library apart from the benchmark (pml_relaxed.bench, behind the `bench` extra)
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
