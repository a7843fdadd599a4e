"""Builds each notebook from its paired plain-Python file (jupytext, percent format) and executes it in place.

The ``.py`` files are the sources: edit one, then run this script to rewrite its ``.ipynb`` with fresh outputs
(the full setting, as committed) and to rewrite the ``.py`` header jupytext keeps in sync. The tests
(``tests/examples/test_notebooks.py``) execute the notebooks the same way in the reduced setting
(``PML_RELAXED_NOTEBOOK_QUICK=1``) and check that each pair is in sync.

Run (from anywhere; each notebook runs with ``examples/notebooks/`` as its working directory):

    python examples/notebooks/execute.py                  # every notebook, full setting (several minutes)
    python examples/notebooks/execute.py quick_start      # one notebook
    python examples/notebooks/execute.py --quick scale    # the reduced setting, written nowhere (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
REPO_ROOT = NOTEBOOK_DIR.parents[1]
NOTEBOOKS = (
    "quick_start",
    "omniglot_dim_reduction",
    "pair_loss_transfer",
    "bring_your_own_teacher",
    "scale",
    "label_free",
)
PAIRING = "ipynb,py:percent"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def notebook_from_script(name: str) -> nbformat.NotebookNode:
    """The notebook of ``<name>.py`` (no outputs), paired with it and set to the ``python3`` kernel."""
    notebook = jupytext.read(NOTEBOOK_DIR / f"{name}.py", fmt="py:percent")
    notebook.metadata.setdefault("jupytext", {})["formats"] = PAIRING
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    return notebook


def execute(notebook: nbformat.NotebookNode, quick: bool, timeout: int = 900) -> nbformat.NotebookNode:
    """Runs every cell in a fresh ``python3`` kernel with ``examples/notebooks/`` as the working directory.

    The kernel imports this checkout's ``pml_relaxed`` (the repository root goes first on ``PYTHONPATH``) and
    sees ``PML_RELAXED_NOTEBOOK_QUICK=1`` when ``quick``. Raises nbclient's ``CellExecutionError`` on the first
    cell that raises.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PML_RELAXED_NOTEBOOK_QUICK"] = "1" if quick else "0"
    env.setdefault("HF_HUB_OFFLINE", "1")  # the packaged teacher loads offline; never reach for a hub
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=env)
    return notebook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"notebooks to run, among {', '.join(NOTEBOOKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="the reduced setting; writes nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; expected names among {list(NOTEBOOKS)}")
    for name in args.names or NOTEBOOKS:
        start = time.perf_counter()
        notebook = execute(notebook_from_script(name), quick=args.quick)
        if not args.quick:
            jupytext.write(notebook, NOTEBOOK_DIR / f"{name}.ipynb", fmt="ipynb")
            jupytext.write(notebook, NOTEBOOK_DIR / f"{name}.py", fmt="py:percent")
        print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
