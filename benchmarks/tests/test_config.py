"""BenchConfig: the benchmark's typed settings, parsed from and written back to a command line."""

import dataclasses
import typing

import pytest

from pml_relaxed_bench.config import DATASET_NAMES, BenchConfig, get_args_parser, held_out_args
from pml_relaxed_bench.registry import DATASETS


def _changed(spec, hint):
    """A value of the field's type other than its default."""
    base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = base[0]
    if spec.metadata.get("choices"):
        choices = [c for c in spec.metadata["choices"] if c != spec.default]
        return choices if typing.get_origin(kind) is list else choices[0]
    if typing.get_origin(kind) is list:
        return [typing.get_args(kind)[0](7), typing.get_args(kind)[0](8)]
    return {bool: not spec.default, int: 7, float: 0.25, str: "x/y z"}[kind]


def test_every_field_survives_to_argv_and_back():
    hints = typing.get_type_hints(BenchConfig)
    changed = {spec.name: _changed(spec, hints[spec.name]) for spec in dataclasses.fields(BenchConfig)}
    config = BenchConfig(**changed)
    assert BenchConfig.from_args(config.to_argv()) == config
    assert BenchConfig().to_argv() == [], "defaults need no option"
    assert BenchConfig.from_args([]) == BenchConfig()


def test_the_command_line_options_keep_their_spelling():
    config = BenchConfig.from_args(
        [
            "--quick",
            "--no-progress",
            "--no-report",
            "--no-throughput",
            "--text-mlp",
            "--no-eval-normalize",
            "--settings",
            "a",
            "b",
            "--m",
            "4",
            "--teacher-lr",
            "1e-3",
        ]
    )
    assert (config.quick, config.progress, config.report, config.throughput) == (True, False, False, False)
    assert config.text_mlp == [] and config.eval_normalize is False
    assert config.settings == ["a", "b"] and config.m == 4 and config.teacher_lr == 1e-3
    assert BenchConfig.from_args(["--text-mlp", "128", "64"]).text_mlp == [128, 64]


@pytest.mark.parametrize("argv", [["--nope"], ["--seeds", "two"], ["--backbone", "vgg"], ["--settings"]])
def test_bad_command_lines_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        BenchConfig.from_args(argv)
    assert "pml-relaxed bench: error" in capsys.readouterr().err


def test_parser_has_one_option_per_field_with_its_help():
    text = " ".join(get_args_parser().format_help().split())
    for spec in dataclasses.fields(BenchConfig):
        flag = "--" + spec.name.replace("_", "-")
        assert f"{flag} " in text, flag
        assert " ".join(spec.metadata["help"].split())[:40] in text, flag


def test_the_dataset_help_names_every_registered_dataset():
    assert sorted(DATASET_NAMES) == sorted(DATASETS)


def test_held_out_args_picks_alphabets_or_classes():
    assert held_out_args(30, 0) == ["--val-classes", "30"]
    assert held_out_args(30, 1) == ["--val-alphabets", "1"]
