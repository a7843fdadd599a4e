"""``pml-relaxed bench``: settings x methods x seeds -> runs.jsonl, results.{json,csv,md} and plots.

:func:`run_command` is what ``pml-relaxed bench ARGS`` runs: :func:`parse_command` turns the arguments into
their mode's config (a :class:`~pml_relaxed_bench.tasks.TaskConfig` with ``--task ssl|classification|self-taught``,
else a :class:`~pml_relaxed_bench.config.BenchConfig`: the metric benchmark, also ``--task metric``), then
:func:`main` or :func:`~pml_relaxed_bench.tasks.run_task` runs it.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from . import tasks
from .config import (
    PRETRAINED_TEACHER_DATASETS,
    BenchConfig,
    CommonConfig,
    check_teacher_checkpoint,
    get_args_parser,
    held_out_args,
)
from .methods import DEFAULT_METHODS, METHODS, QUICK_METHODS
from .registry import DATASETS
from .report import machine, provenance, versions, write_results
from .runner import append_records, load_done, run_all
from .teachers import check_teacher_option, teacher_metadata, with_image_teacher
from .text_peers import check_peer_options, run_peers

__all__ = [
    "BenchConfig",
    "get_args_parser",
    "held_out_args",
    "main",
    "parse_command",
    "resolve",
    "run_command",
    "machine",
    "versions",
    "DATASETS",
]

QUICK = {"epochs_scale": 0.5, "seeds": 2}


def _check_config(config: BenchConfig, settings: List[str]) -> None:
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods has unknown name(s) {unknown}; expected some of {list(METHODS)}")
    unknown = [s for s in config.settings if s not in settings]
    if unknown:
        raise ValueError(f"--settings has unknown name(s) {unknown}; expected some of {settings}")
    if config.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {config.seeds}")
    if config.views < 1:
        raise ValueError(f"--views must be >= 1; got {config.views}")
    if config.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {config.workers}")
    if config.report_only and not config.report:
        raise ValueError("--report-only and --no-report exclude each other; got both")


def _check_dataset_options(config: BenchConfig) -> None:
    if config.dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {sorted(DATASETS)}; got {config.dataset!r}")
    check_teacher_checkpoint(config, config.dataset in PRETRAINED_TEACHER_DATASETS)  # before loading the teacher
    check_teacher_option(config)
    if config.val_alphabets and config.val_classes:
        raise ValueError(
            f"--val-alphabets and --val-classes exclude each other; got {config.val_alphabets} and {config.val_classes}"
        )
    if config.val_alphabets and config.dataset != "omniglot":
        raise ValueError(
            f"--val-alphabets needs classes grouped in alphabets (--dataset omniglot); got --dataset {config.dataset}"
        )
    text_options = [
        flag
        for flag, value in (
            ("--text-hidden-dim", config.text_hidden_dim),
            ("--text-mlp", config.text_mlp),
            ("--text-init-std", config.text_init_std),
            ("--text-kernel-size", config.text_kernel_size),
            ("--unlabelled-texts", config.unlabelled_texts),
        )
        if value is not None
    ]
    if config.text_ngram_dropout != 0:
        text_options.append("--text-ngram-dropout")
    if config.text_student != "hashed":
        text_options.append("--text-student")
    if text_options and config.dataset != "banking77":
        raise ValueError(
            f"{', '.join(text_options)} shape the text student (--dataset banking77); got --dataset {config.dataset}"
        )
    check_peer_options(config)


def resolve(config: BenchConfig, data_defaults: dict, settings: List[str]) -> BenchConfig:
    """``config`` with what it leaves to the dataset filled in: methods, settings, output folder, ``--quick``."""
    changes: dict = {}
    methods = config.methods
    if config.quick:
        methods = methods or list(QUICK_METHODS)
        changes["seeds"] = min(config.seeds, QUICK["seeds"])
        changes["epochs"] = config.epochs or max(1, round(data_defaults["epochs"] * QUICK["epochs_scale"]))
        changes["teacher_epochs"] = config.teacher_epochs or max(
            1, round(data_defaults["teacher_epochs"] * QUICK["epochs_scale"])
        )
    changes["methods"] = methods or list(DEFAULT_METHODS)
    changes["settings"] = config.settings or list(settings)
    held_out = config.val_classes or config.val_alphabets
    family = f"_{config.text_student}" if config.text_student != "hashed" else ""  # --text-student: its own folder
    changes["output_dir"] = config.output_dir or str(
        Path("results") / f"{config.dataset}{family}{'_val' if held_out else ''}"
    )
    return dataclasses.replace(config, **changes)


def main(config: BenchConfig, argv: Optional[List[str]] = None) -> List[Path]:
    """Runs the benchmark and writes its outputs; returns the written paths (none with ``--no-report``).

    ``argv`` is the command line recorded in the results (default: ``sys.argv[2:]``).
    """
    if not isinstance(config, BenchConfig):
        raise TypeError(f"config must be a BenchConfig (BenchConfig.from_args(argv)); got {type(config).__name__}")
    _check_dataset_options(config)
    data = with_image_teacher(DATASETS[config.dataset](config), config)
    config = resolve(config, data.defaults, list(data.settings))
    _check_config(config, list(data.settings))
    if config.report_only:
        records = load_done(Path(config.output_dir) / "runs.jsonl")
        if not records:
            raise FileNotFoundError(
                f"--report-only needs the runs of an earlier call; found none in "
                f"{Path(config.output_dir) / 'runs.jsonl'}"
            )
    else:
        records = run_all(data, config)
        if config.peers:  # after the students, on the same machine in the same process
            new = run_peers(data, config, records)
            append_records(Path(config.output_dir) / "runs.jsonl", new)
            records = records + new
    if not config.report:
        return []
    command = "pml-relaxed bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:]))
    metadata = {
        **provenance(command),
        "eval_split": data.eval_split,
        "teacher": teacher_metadata(data, config),
        "train_items": len(data.train),
        "eval_items": len(data.evaluation),
        # the FAISS backend ("gpu" / "cpu") of the recorded runs' evaluation ("unrecorded": older runs)
        "faiss_backend": ", ".join(sorted({r.get("hparams", {}).get("faiss_backend", "unrecorded") for r in records})),
    }
    paths = write_results(records, Path(config.output_dir), metadata)
    print(Path(config.output_dir, "results.md").read_text())
    return paths


def _task(argv: Sequence[str]) -> Optional[str]:
    """The value of ``--task`` (``--task X`` or ``--task=X``), or None."""
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    return None


def _without_task_metric(argv: Sequence[str]) -> List[str]:
    argv = list(argv)
    if "--task=metric" in argv:
        argv.remove("--task=metric")
    elif "--task" in argv:
        i = argv.index("--task")
        del argv[i : i + 2]
    return argv


def parse_command(argv: Sequence[str]) -> CommonConfig:
    """The config of a ``pml-relaxed bench`` command line (the arguments after ``bench``): a
    :class:`~pml_relaxed_bench.tasks.TaskConfig` with ``--task ssl|classification|self-taught``, else a
    :class:`BenchConfig` (the metric benchmark, the default mode, also named ``--task metric``).

    Examples:
        >>> type(parse_command(["--dataset", "digits", "--quick"])).__name__
        'BenchConfig'
        >>> parse_command(["--task", "metric", "--seeds", "1"]) == BenchConfig(seeds=1)
        True
        >>> parse_command(["--task", "ssl", "--quick"]).task
        'ssl'
    """
    task = _task(argv)
    if task not in (None, "metric"):
        return tasks.TaskConfig.from_args(argv)
    return BenchConfig.from_args(_without_task_metric(argv) if task == "metric" else argv)


def run_command(argv: Sequence[str]) -> List[Path]:
    """Runs a ``pml-relaxed bench`` command line (the arguments after ``bench``) in its mode, recording it in the
    results; returns the written paths."""
    config = parse_command(argv)
    if isinstance(config, tasks.TaskConfig):
        return tasks.main(list(argv))
    return main(config, _without_task_metric(argv) if _task(argv) == "metric" else list(argv))
