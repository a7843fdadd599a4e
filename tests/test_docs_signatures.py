"""The signatures the docs pages show in ```text blocks (``RelaxedContrastiveLoss(sigma=1.0, ...)``) are the
real ones: the same parameters, in the same order and kinds, with the same defaults, as ``inspect.signature``.

A line of a ```text block that starts with ``name(`` is a signature (continued on the next lines until its
parentheses close; what follows ``)``, e.g. ``-> (n, m)``, is the return and not checked). ``name`` is a public
object of a pml_relaxed module (``Omniglot.list_classes`` an attribute of one), or an instance's call
(``loss_fn(...)``, ``miner(...)``): the ``forward`` of the class shown before it in the block, else of the
page's base class (``INSTANCE_DEFAULTS``).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
TEXT_BLOCK = re.compile(r"```text\n(.*?)```", re.S)
START = re.compile(r"^([A-Za-z_][\w.]*)\(")
MODULES = [
    "pml_relaxed.losses",
    "pml_relaxed.miners",
    "pml_relaxed.similarities",
    "pml_relaxed.datasets",
    "pml_relaxed.models",
    "pml_relaxed.evaluation",
    "pml_relaxed.functional",
    "pml_relaxed.trainers",
    "pml_relaxed.distributed",
    "pml_relaxed.samplers",
]
# calls of an instance (lower-case names) in a block that shows no class: the class whose forward they are
INSTANCE_DEFAULTS = {
    "losses.md": "pml_relaxed.losses.BaseTransferLoss",
    "similarities.md": "pml_relaxed.similarities.BaseSimilarity",
}


def closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``text[start]``."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced parentheses in {text!r}")


def signatures(block: str):
    """(name, parameter text) of each signature in a ```text block."""
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        match = START.match(lines[i])
        if not match:
            i += 1
            continue
        text = lines[i]
        while text.count("(") > text.count(")") and i + 1 < len(lines):
            i += 1
            text += " " + lines[i].strip()
        start = len(match.group(1))
        yield match.group(1), text[start + 1 : closing(text, start)]
        i += 1


def documented():
    """(page, name, parameter text, the object it documents) for every signature of every page."""
    found = []
    for page in PAGES:
        for block in TEXT_BLOCK.findall(page.read_text()):
            owner = INSTANCE_DEFAULTS.get(page.name)
            for name, params in signatures(block):
                obj = resolve(name, page.name)
                head, *rest = name.split(".")
                if obj is None and head.islower() and owner is not None:  # miner(...), trainer.train(...)
                    obj = resolve(owner)
                    for attribute in rest or ["forward"]:
                        obj = getattr(obj, attribute)
                if inspect.isclass(obj):
                    owner = f"{obj.__module__}.{obj.__qualname__}"
                found.append((page.name, name, params, obj))
    return found


def resolve(name: str, page: str = ""):
    if name.startswith("pml_relaxed."):
        module, _, attribute = name.rpartition(".")
        return getattr(importlib.import_module(module), attribute, None)
    head, *rest = name.split(".")
    own = f"pml_relaxed.{Path(page).stem}"  # functional.md's names first in pml_relaxed.functional
    for module in sorted(MODULES, key=lambda m: m != own):
        obj = getattr(importlib.import_module(module), head, None)
        if obj is not None and not inspect.ismodule(obj):  # similarities.gaussian_kernel is a submodule
            for attribute in rest:
                obj = getattr(obj, attribute)
            return obj
    return None


def real_parameters(obj):
    if inspect.isclass(obj) and obj.__init__ is torch.nn.Module.__init__:
        return []  # no constructor of its own: nn.Module's (*args, **kwargs) takes nothing
    parameters = list(inspect.signature(obj).parameters.values())
    return [p for p in parameters if p.name not in ("self", "cls")]


def doc_parameters(params: str, obj):
    """The documented parameters as (name, kind, default or inspect.Parameter.empty)."""
    arguments = ast.parse(f"def f({params}): pass").body[0].args
    namespace = {**vars(builtins), **vars(importlib.import_module(obj.__module__))}

    def value(node):
        return eval(compile(ast.Expression(node), "<docs>", "eval"), namespace)

    positional = arguments.posonlyargs + arguments.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(arguments.defaults)) + [
        value(d) for d in arguments.defaults
    ]
    out = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for a, d in zip(positional, defaults)]
    if arguments.vararg:
        out.append((arguments.vararg.arg, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
    for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults):
        out.append((a.arg, inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.empty if d is None else value(d)))
    if arguments.kwarg:
        out.append((arguments.kwarg.arg, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    return out


def inherited_parameter(obj, name: str):
    """The parameter ``name`` that ``obj``'s ``*args`` / ``**kwargs`` pass on to a base class's ``__init__``."""
    if not inspect.isclass(obj):
        return None
    for base in obj.__mro__[1:]:
        parameter = inspect.signature(base.__init__).parameters.get(name)
        if parameter is not None and parameter.kind is not inspect.Parameter.VAR_KEYWORD:
            return parameter
    return None


DOCUMENTED = documented()
# Shown as required keywords: None is their default only so that the call can raise a message naming them.
REQUIRED_AT_RUN_TIME = {"teacher_emb", "teacher_ref_emb"}


def test_the_pages_show_signatures():
    pages = {page for page, *_ in DOCUMENTED}
    assert len(DOCUMENTED) >= 50 and len(pages) >= 8, (len(DOCUMENTED), sorted(pages))


@pytest.mark.parametrize("page, name, params, obj", DOCUMENTED, ids=[f"{page}:{name}" for page, name, *_ in DOCUMENTED])
def test_documented_signature_is_the_real_one(page, name, params, obj):
    """Same names, order, kinds and defaults; a parameter the real signature takes through ``**kwargs`` must be
    one a base class's ``__init__`` takes (PML's), with the shown default."""
    assert obj is not None, f"docs/{page} shows {name}(...), which is no public object of pml_relaxed"
    where = f"docs/{page}: {name}({params})"
    real = {p.name: p for p in real_parameters(obj)}
    shown = doc_parameters(params, obj)
    named = [n for n, p in real.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert [n for n, _, _ in shown if n in named] == named, f"{where}: the real parameters are {list(real)}"
    for n, kind, default in shown:
        parameter = real.get(n) or inherited_parameter(obj, n)
        assert parameter is not None, f"{where}: {n} is no parameter of {name}"
        real_kind = parameter.kind
        if real_kind is inspect.Parameter.POSITIONAL_ONLY or n not in real:
            real_kind = kind if n not in real else inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert kind == real_kind, f"{where}: {n} is {real_kind}"
        if default is inspect.Parameter.empty and n in REQUIRED_AT_RUN_TIME and parameter.default is None:
            continue
        assert default == parameter.default, f"{where}: {n}={default!r}, really {parameter.default!r}"
