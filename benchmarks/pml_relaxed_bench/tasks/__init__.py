"""Tasks beyond labelled metric learning: ``pml-relaxed bench --task ssl|classification|self-taught``.

API: ``run_task(TaskConfig(task="ssl", split="val", ...))`` trains, appends to ``<output_dir>/runs.jsonl``
and writes ``results.csv`` / ``results.md``; the CLI parses the same options (``pml-relaxed bench --task ssl
--help``). The default ``--task metric`` is the metric-learning benchmark (``pml-relaxed bench``).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
from pathlib import Path
from typing import List, Optional

from . import classification, self_taught, ssl
from .common import DATASETS, RunLog, TaskConfig, check_dataset, dataset_tag, quick_config, write_results

RUNNERS = {"ssl": ssl.run, "classification": classification.run, "self-taught": self_taught.run}
METRICS = {
    "ssl": ("recall_at_1", "mean_average_precision_at_r", "knn5_accuracy"),
    "self-taught": ("recall_at_1", "mean_average_precision_at_r", "knn5_accuracy"),
    "classification": ("top1_accuracy",),
}
TASKS = ("metric",) + tuple(RUNNERS)


def get_task_parser() -> argparse.ArgumentParser:
    defaults = TaskConfig(task="ssl")
    p = argparse.ArgumentParser(prog="pml-relaxed bench --task", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=list(RUNNERS))
    p.add_argument(
        "--dataset",
        default=defaults.dataset,
        choices=list(DATASETS),
        help="digits (scikit-learn, no download) or omniglot (the zips under $PML_RELAXED_DATA/omniglot)",
    )
    p.add_argument(
        "--split",
        default=defaults.split,
        choices=["val", "test"],
        help="val: held-out training classes (ssl, self-taught) or items (classification), for model "
        "selection; test: the unseen test classes / items",
    )
    p.add_argument("--seeds", type=int, default=defaults.seeds)
    p.add_argument("--seed", type=int, default=defaults.seed, help="first student seed")
    p.add_argument("--teacher-seed", type=int, default=defaults.teacher_seed)
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=defaults.teacher_epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per batch (before views)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=defaults.temperatures,
        help="NTXent temperatures of the baselines (and of the ssl teacher by default): a grid",
    )
    p.add_argument(
        "--teacher-temperatures",
        type=float,
        nargs="+",
        default=None,
        help="ssl: NTXent temperatures of the teachers (default: --temperatures)",
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=defaults.sigmas, help="relaxed-label bandwidths")
    p.add_argument("--delta", type=float, default=defaults.delta)
    p.add_argument("--ks", type=int, nargs="+", default=defaults.ks, help="self-taught: ContextualSimilarity k")
    p.add_argument(
        "--ema-momenta", type=float, nargs="+", default=defaults.ema_momenta, help="self-taught: EMA teacher momenta"
    )
    p.add_argument(
        "--stml-kl-weights",
        type=float,
        nargs="+",
        default=defaults.stml_kl_weights,
        help="self-taught: weights of STML's self-distillation term (a second head g; 0, the default: off)",
    )
    p.add_argument(
        "--stml-neighbours",
        type=int,
        nargs="+",
        default=defaults.stml_neighbours,
        help="self-taught: STML's batches, batch-size / N random queries each with its N - 1 nearest neighbours "
        "in the student's embedding, refreshed every epoch (N divides --batch-size; 0, the default: random batches)",
    )
    p.add_argument(
        "--stml-centers",
        type=int,
        nargs="+",
        choices=[0, 1],
        default=defaults.stml_centers,
        help="self-taught: 1 centres the teacher embeddings on the batch mean before the relaxed labels "
        "(ContextualSimilarity(center=True), not in STML); 0, the default: STML's uncentred labels",
    )
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=defaults.weights,
        help="classification: weights of the transfer loss next to cross-entropy",
    )
    p.add_argument(
        "--kd-temperatures",
        type=float,
        nargs="+",
        default=defaults.kd_temperatures,
        help="classification: Hinton KD temperatures",
    )
    p.add_argument("--methods", nargs="+", default=None, help="default: all of the task's methods")
    p.add_argument("--settings", nargs="+", default=None, help="ssl: student settings (default: all)")
    p.add_argument("--output-dir", default=None, help="default: results/task_<task> (digits), else _<dataset> added")
    p.add_argument("--device", default=defaults.device)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a minute or two: 1 seed, 2 epochs, the first value of every grid; default output "
        "folder with _quick added",
    )
    return p


def run_task(cfg: TaskConfig, command: Optional[str] = None) -> List[Path]:
    """Runs ``cfg`` (skipping the runs already in runs.jsonl) and writes the results; returns the files."""
    from ..cli import machine, versions

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
        f.write(f"{now}  {command or repr(cfg)}\n")
    records = RUNNERS[cfg.task](cfg, log)
    calls = (out / "commands.txt").read_text().strip().splitlines()
    header = (
        f"# {cfg.task}{dataset_tag(cfg.dataset, ' ({})')}\n\nCommands (commands.txt):\n\n"
        + "\n".join(f"    {c}" for c in calls)
        + f"\n\nMachine: {machine()}  \nVersions: {versions()}  \nWritten: {now}"
    )
    return write_results(records, out, header, METRICS[cfg.task])


def main(argv: List[str]) -> List[Path]:
    """``pml-relaxed bench --task ...`` (argv: the arguments after ``bench``)."""
    args = get_task_parser().parse_args(argv)
    cfg = TaskConfig(**{k: v for k, v in vars(args).items()})
    paths = run_task(cfg, "pml-relaxed bench " + " ".join(shlex.quote(a) for a in argv))
    print(Path(paths[-1]).read_text())
    return paths


__all__ = ["TASKS", "TaskConfig", "get_task_parser", "main", "run_task"]
