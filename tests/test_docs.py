"""Every ```python block in README.md and docs/*.md runs (each page's blocks in order, one namespace)."""

import doctest
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("**/*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
DOCSTRING = re.compile(r'"""(.*?)"""', re.S)
SPHINX_ROLE = re.compile(r":[a-z:]+:`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_has_python_examples():
    assert len(BLOCK.findall((ROOT / "README.md").read_text())) >= 2


def load_sphinx_roles_extension():
    spec = importlib.util.spec_from_file_location("sphinx_roles", ROOT / "docs" / "extensions" / "sphinx_roles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_renders_every_sphinx_role_of_the_docstrings():
    """mkdocs.yml loads docs/extensions/sphinx_roles.py; no docstring of the package keeps a role it misses."""
    extension = load_sphinx_roles_extension()
    assert doctest.testmod(extension).failed == 0
    assert (
        extension.markdown_roles(":func:`pml_relaxed.functional.pair_mask` rows")
        == "`pml_relaxed.functional.pair_mask` rows"
    )
    assert extension.markdown_roles("a ratio: 3::4 stays") == "a ratio: 3::4 stays"
    assert "docs/extensions/sphinx_roles.py:SphinxRoles" in (ROOT / "mkdocs.yml").read_text()
    rewritten = 0
    for path in sorted((ROOT / "pml_relaxed").rglob("*.py")):
        text = path.read_text()
        for docstring in DOCSTRING.findall(text):
            rendered = extension.markdown_roles(docstring)
            rewritten += rendered != docstring
            assert not SPHINX_ROLE.search(rendered), f"{path.relative_to(ROOT)}: {SPHINX_ROLE.search(rendered)[0]}"
    assert rewritten > 50  # the roles are used throughout the package
