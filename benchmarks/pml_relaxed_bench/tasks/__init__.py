"""Tasks beyond labelled metric learning: ``pml-relaxed bench --task ssl|classification|self-taught``.

API: ``run_task(TaskConfig(task="ssl", split="val", ...))`` trains, appends to ``<output_dir>/runs.jsonl``
and writes ``results.json`` / ``results.csv`` / ``results.md``; the CLI parses the same options
(``pml-relaxed bench --task ssl --help``). The default ``--task metric`` is the metric-learning benchmark
(``pml-relaxed bench``).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
from pathlib import Path
from typing import List, Optional

from ..config import get_args_parser
from ..report import provenance, write_results
from . import classification, self_taught, ssl
from .common import TASK_NAMES, RunLog, TaskConfig, check_dataset, dataset_tag, quick_config

RUNNERS = {"ssl": ssl.run, "classification": classification.run, "self-taught": self_taught.run}
assert tuple(RUNNERS) == TASK_NAMES
#: each task's metric columns in results.csv / results.md (retrieval: the library's names)
METRICS = {
    "ssl": ("recall_at_1", "mean_average_precision_at_r", "knn5_accuracy"),
    "self-taught": ("recall_at_1", "mean_average_precision_at_r", "knn5_accuracy"),
    "classification": ("top1_accuracy",),
}
TASKS = ("metric",) + TASK_NAMES


def get_task_parser() -> argparse.ArgumentParser:
    """The ``pml-relaxed bench --task`` parser: :func:`~pml_relaxed_bench.config.get_args_parser` of
    :class:`TaskConfig` (the common options, then the tasks' own)."""
    return get_args_parser(config_class=TaskConfig)


def run_task(cfg: TaskConfig, command: Optional[str] = None) -> List[Path]:
    """Runs ``cfg`` (skipping the runs already in runs.jsonl) and writes the results with the benchmark's
    :func:`~pml_relaxed_bench.report.write_results`; returns the files (results.json, results.csv, results.md).

    Raises:
        TypeError: ``cfg`` is not a :class:`TaskConfig`.
        ValueError: an unknown task, method, setting or dataset; a bad grid value; an output folder holding
            another task's or dataset's runs.
    """
    if not isinstance(cfg, TaskConfig):
        raise TypeError(f"cfg must be a TaskConfig (TaskConfig.from_args(argv)); got {type(cfg).__name__}")
    if cfg.task not in RUNNERS:
        raise ValueError(f"task must be one of {list(RUNNERS)}; got {cfg.task!r}")
    known = {"ssl": ssl.METHODS, "classification": classification.METHODS, "self-taught": self_taught.METHODS}
    unknown = [m for m in cfg.methods or [] if m not in known[cfg.task]]
    if unknown:
        raise ValueError(
            f"methods has unknown name(s) {unknown} for task {cfg.task}; expected some of {list(known[cfg.task])}"
        )
    if cfg.settings is not None and (cfg.task != "ssl" or any(s not in ssl.SETTINGS for s in cfg.settings)):
        raise ValueError(
            f"settings must be some of {list(ssl.SETTINGS)} (task ssl only); got {cfg.settings} for task {cfg.task}"
        )
    check_dataset(cfg.dataset)
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {cfg.seeds}")
    bad = [n for n in cfg.stml_neighbours if n < 0 or (n > 0 and cfg.batch_size % n)]
    if bad:
        raise ValueError(
            f"stml_neighbours must be 0 (random batches) or divide batch_size ({cfg.batch_size}): each batch holds "
            f"whole groups of a query and its neighbours; got {bad}"
        )
    bad = [c for c in cfg.stml_centers if isinstance(c, bool) or c not in (0, 1)]
    if bad:
        raise ValueError(f"stml_centers must hold 0 (STML's labels) or 1 (centred labels); got {bad}")
    default_out = str(Path("results") / f"task_{cfg.task}{dataset_tag(cfg.dataset, '_{}')}")
    if cfg.quick:
        cfg = quick_config(cfg, default_out)
    out = Path(cfg.output_dir or default_out)
    log = RunLog(out)
    other = {(r["task"], r["config"].get("dataset", "digits")) for r in log.records} - {(cfg.task, cfg.dataset)}
    if other:  # runs.jsonl's resume key has no task or dataset: one folder per (task, dataset)
        raise ValueError(
            f"output_dir {str(out)!r} holds runs of (task, dataset) {sorted(other)}; expected only "
            f"{(cfg.task, cfg.dataset)}: use one output folder per task and dataset"
        )
    now = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    with (out / "commands.txt").open("a") as f:  # every call that wrote to runs.jsonl, in order
        f.write(f"{now}  {command or 'pml-relaxed bench ' + shlex.join(cfg.to_argv())}\n")
    records = RUNNERS[cfg.task](cfg, log)
    metadata = provenance((out / "commands.txt").read_text().strip().splitlines(), key="commands")
    metadata["title"] = f"{cfg.task}{dataset_tag(cfg.dataset, ' ({})')}"
    return write_results(records, out, metadata, task_metrics=METRICS[cfg.task])


def main(argv: List[str]) -> List[Path]:
    """``pml-relaxed bench --task ...`` (argv: the arguments after ``bench``)."""
    cfg = TaskConfig.from_args(argv)
    paths = run_task(cfg, "pml-relaxed bench " + " ".join(shlex.quote(a) for a in argv))
    print(Path(paths[2]).read_text())
    return paths


__all__ = ["TASKS", "TASK_NAMES", "METRICS", "TaskConfig", "get_task_parser", "main", "run_task"]
