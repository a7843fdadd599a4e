"""mkdocs hook: serve the notebooks of examples/notebooks/ with the site, for the Notebooks page's links.

Each ``NAME.ipynb`` (with its committed outputs) and its paired ``NAME.py`` is added to the site as
``notebooks/NAME.ipynb`` and ``notebooks/NAME.py``, copied from the checkout at build time (no copy in docs/).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "examples" / "notebooks"


def on_files(files, config):
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        for source in (path, path.with_suffix(".py")):
            if source.is_file():
                files.append(File.generated(config, f"notebooks/{source.name}", abs_src_path=str(source)))
    return files
