"""The command lines of the ```bash blocks of README.md and docs/*.md are valid: each ``pml-relaxed bench ...``,
``python benchmarks/<script>.py ...``, ``python examples/<script>.py ...`` and ``torchrun ... examples/...``
line parses with the real parser (options, types, choices; the dataset and method names against the registries).
The runs themselves take minutes to hours and are not made here; ``pml-relaxed bench --help`` and
``pml-relaxed bench --task ssl --help`` are.

A block's shell variables (``COMMON="..."``) are expanded, backslash continuations joined and comments dropped.
A line whose arguments hold a placeholder in capitals (``--teacher-temperatures T_CHOSEN``: the value chosen
on validation) is checked with the placeholder replaced by ``1``.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from pml_relaxed import cli
from pml_relaxed_bench import METHODS, TaskConfig, parse_command
from pml_relaxed_bench.config import DATASET_NAMES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
ASSIGNMENT = re.compile(r"^([A-Z_]+)=(.*)$")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]{2,}$")


def command_lines(block: str):
    """The commands of a bash block as argument lists, variables expanded and comments dropped."""
    variables = {}
    for line in block.replace("\\\n", " ").splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            variables[match.group(1)] = " ".join(shlex.split(match.group(2)))
            continue
        line = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), line)
        args = shlex.split(line, comments=True)
        if args:
            yield args


def documented_commands():
    found = []
    for page in PAGES:
        for block in BASH_BLOCK.findall(page.read_text()):
            for args in command_lines(block):
                if args[0] == "torchrun":
                    args = ["python"] + [a for a in args[1:] if not a.startswith("--nproc")]
                if args[:2] == ["pml-relaxed", "bench"] or (
                    args[0] == "python" and len(args) > 1 and args[1].startswith(("benchmarks/", "examples/"))
                ):
                    found.append((page.name, args))
    return found


COMMANDS = documented_commands()


def load_script(relative: str):
    name = "docs_command_" + Path(relative).stem
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_pages_show_commands():
    kinds = {args[1] if args[0] == "python" else "pml-relaxed bench" for _, args in COMMANDS}
    assert len(COMMANDS) >= 30 and "pml-relaxed bench" in kinds and "examples/ddp_transfer.py" in kinds, kinds


@pytest.mark.parametrize("page, args", COMMANDS, ids=[f"{page}:{' '.join(args)[:60]}" for page, args in COMMANDS])
def test_documented_command_parses(page, args):
    options = ["1" if PLACEHOLDER.match(a) else a for a in args[2:]]
    where = f"docs/{page}: {shlex.join(args)}"
    if args[0] == "pml-relaxed":
        config = parse_command(options)
        if isinstance(config, TaskConfig):
            return
        assert config.dataset in DATASET_NAMES, where
        assert all(m in METHODS for m in config.methods or []), where
        return
    module = load_script(args[1])
    module.get_args_parser().parse_args(options)


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "--task", "ssl", "--help"]])
def test_help_of_the_documented_commands(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--seeds" in out and "--output-dir" in out
    assert ("--sigmas" in out) == ("--task" in argv)  # the tasks' own options
