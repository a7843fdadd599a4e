"""A Griffe extension for the documentation site: the docstrings' Sphinx roles as Markdown.

The docstrings cross-reference with Sphinx roles (``:class:`~pml_relaxed.losses.BaseRelaxedLoss```), which
mkdocstrings' Google-style parser would print as written. This extension rewrites each role as inline code of
the name it shows (the last component with ``~``, else the whole target) and a reST literal-block marker
(a line ending in ``::``) as a plain colon, before mkdocstrings renders the docstring. Loaded from mkdocs.yml
(``extensions:`` of the python handler); the package itself is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.M)


def markdown_roles(text: str) -> str:
    """``text`` with its Sphinx roles as inline code and its ``::`` literal-block markers as ``:``.

    Example:
        >>> markdown_roles("see :class:`~pml_relaxed.losses.BaseRelaxedLoss` and :meth:`from_args`::")
        'see `BaseRelaxedLoss` and `from_args`:'
    """

    def code(match: re.Match) -> str:
        short, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if short else target}`"

    return LITERAL_BLOCK.sub(":", ROLE.sub(code, text))


class SphinxRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`markdown_roles`."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_roles(obj.docstring.value)
