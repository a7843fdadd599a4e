"""Validation grid, choice, one test run: the protocol of ``pml-relaxed bench --task ssl|self-taught|classification``.

For one task and dataset this script runs the validation grid (``--val-seeds`` student seeds, 1 by default), keeps
per (setting, method) the options with the best validation selection metric (``choose_on_validation``: MAP@R
for ssl and self-taught, top-1 accuracy for classification; the first in grid order on equal values), then runs
the test split once with the chosen options (``--test-seeds`` seeds, 3 by default). Every step is a
``pml-relaxed bench --task ...`` command, recorded in ``commands.txt`` of its folder:

    <output-root>/<task>_<dataset>/val/    runs.jsonl, results.{json,csv,md}, commands.txt
    <output-root>/<task>_<dataset>/test/   the same, for the test split
    <output-root>/<task>_<dataset>/choices.json   the chosen options, their validation values, the test commands

ssl chooses in two stages: the NTXent temperature of both student settings first; the teacher's temperature is
the one chosen for ``self_transfer`` (the teacher's network); then the relaxed-contrastive sigma from that
teacher. Runs already in a folder's runs.jsonl are skipped, so a stopped pipeline resumes where it stopped.

    python benchmarks/tasks_pipeline.py --task self-taught --dataset omniglot --epochs 10
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from pml_relaxed_bench import TASK_DATASETS as DATASETS
from pml_relaxed_bench import RunLog, TaskConfig, choose_on_validation, get_task_parser, option_string, run_task

SELECTION_METRIC = {
    "ssl": "mean_average_precision_at_r",
    "self-taught": "mean_average_precision_at_r",
    "classification": "top1_accuracy",
}
SSL_SETTINGS = ("self_transfer", "compression")
DEFAULT_SIGMAS = {"ssl": [0.5, 1.0, 2.0], "self-taught": [1.0], "classification": [1.0]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=list(SELECTION_METRIC))
    p.add_argument("--dataset", default="digits", choices=list(DATASETS))
    p.add_argument("--output-root", default="docs/results", help="results go to <output-root>/<task>_<dataset>/")
    p.add_argument("--epochs", type=int, default=30, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--val-seeds", type=int, default=1, help="student seeds of the validation grid")
    p.add_argument("--test-seeds", type=int, default=3, help="student seeds of the test runs")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.5], help="ssl, self-taught: NTXent")
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=None,
        help="relaxed-label sigmas: ssl's grid (default 0.5 1 2), self-taught's stml and classification's RC "
        "(default 1)",
    )
    p.add_argument("--ks", type=int, nargs="+", default=[4, 8], help="self-taught: ContextualSimilarity k")
    p.add_argument("--ema-momenta", type=float, nargs="+", default=[0.9, 0.99], help="self-taught: EMA momenta")
    task_options = {action.option_strings[0]: action for action in get_task_parser()._actions}
    for flag in ("--stml-kl-weights", "--stml-neighbours", "--stml-centers"):  # as the task parser has them
        task = task_options[flag]
        note = " (pipeline: for N > 0 the k is STML's 2 N, --ks is not used)" if flag == "--stml-neighbours" else ""
        p.add_argument(
            flag, type=task.type, nargs=task.nargs, choices=task.choices, default=task.default, help=task.help + note
        )
    p.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="classification")
    p.add_argument("--kd-temperatures", type=float, nargs="+", default=[4.0], help="classification: Hinton KD")
    return p


def _values(values: Sequence) -> List[str]:
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in values]


class Pipeline:
    """The folders, the shared options and the ``pml-relaxed bench`` calls of one (task, dataset)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sigmas = _values(args.sigmas or DEFAULT_SIGMAS[args.task])
        self.root = Path(args.output_root) / f"{args.task.replace('-', '_')}_{args.dataset}"
        self.metric = SELECTION_METRIC[args.task]
        self.test_commands: List[str] = []

    def bench(self, split: str, options: List[str]) -> List[dict]:
        """Runs ``pml-relaxed bench --task ... --split split <options>``; returns the folder's records."""
        a = self.args
        argv = ["--task", a.task, "--dataset", a.dataset, "--split", split]
        argv += ["--seeds", str(a.val_seeds if split == "val" else a.test_seeds)]
        argv += ["--epochs", str(a.epochs), "--teacher-epochs", str(a.teacher_epochs or a.epochs)]
        argv += ["--batch-size", str(a.batch_size), *options, "--output-dir", str(self.root / split)]
        command = "pml-relaxed bench " + shlex.join(argv)
        if split == "test":
            self.test_commands.append(command)
        print(command, flush=True)
        run_task(TaskConfig(**vars(get_task_parser().parse_args(argv))), command)
        return RunLog(self.root / split).records

    def choose(self, records: List[dict]) -> Dict[Tuple[str, str], dict]:
        return choose_on_validation(records, self.metric, seeds=self.args.val_seeds)

    def validation_value(self, records: List[dict], setting: str, method: str, options: dict) -> float:
        values = [
            r["metrics"][self.metric]
            for r in records
            if r["split"] == "val"
            and (r["setting"], r["method"]) == (setting, method)
            and option_string(r["options"]) == option_string(options)
        ]
        return sum(values) / len(values)


def run_ssl(p: Pipeline) -> Dict[Tuple[str, str], dict]:
    a = p.args
    val = p.bench("val", ["--methods", "ntxent", "--temperatures", *_values(a.temperatures)])
    teacher_t = p.choose(val)[("self_transfer", "ntxent")]["temperature"]
    rc = ["--methods", "relaxed_contrastive", "--teacher-temperatures", f"{teacher_t:g}"]
    val = p.bench("val", rc + ["--sigmas", *p.sigmas])
    chosen = {key: options for key, options in p.choose(val).items() if key[0] in SSL_SETTINGS}
    for setting in SSL_SETTINGS:
        t = chosen[(setting, "ntxent")]["temperature"]
        p.bench("test", ["--settings", setting, "--methods", "ntxent", "--temperatures", f"{t:g}"])
        sigma = chosen[(setting, "relaxed_contrastive")]["sigma"]
        p.bench("test", ["--settings", setting, *rc, "--sigmas", f"{sigma:g}"])
    return chosen


def run_self_taught(p: Pipeline) -> Dict[Tuple[str, str], dict]:
    a = p.args
    grid = ["--temperatures", *_values(a.temperatures), "--ema-momenta", *_values(a.ema_momenta)]
    grid += ["--sigmas", *p.sigmas, "--stml-kl-weights", *_values(a.stml_kl_weights)]
    grid += ["--stml-centers", *_values(a.stml_centers)]
    for neighbours in a.stml_neighbours:  # one call per group size: k is tied to it (STML: k = 2 x group size)
        ks = _values(a.ks) if neighbours == 0 else [str(2 * neighbours)]
        val = p.bench("val", grid + ["--ks", *ks, "--stml-neighbours", str(neighbours)])
    chosen = p.choose(val)
    for (_, method), o in chosen.items():
        if method == "ntxent":
            p.bench("test", ["--methods", "ntxent", "--temperatures", f"{o['temperature']:g}"])
        else:
            stml = ["--ks", str(o["k"]), "--ema-momenta", f"{o['ema_momentum']:g}", "--sigmas", f"{o['sigma']:g}"]
            stml += [
                "--stml-kl-weights",
                f"{o.get('kl_weight', 0.0):g}",
                "--stml-neighbours",
                str(o.get("neighbours", 0)),
                "--stml-centers",
                str(o.get("center", 0)),
            ]
            p.bench("test", ["--methods", "stml", *stml])
    return chosen


def run_classification(p: Pipeline) -> Dict[Tuple[str, str], dict]:
    a = p.args
    grid = ["--weights", *_values(a.weights), "--kd-temperatures", *_values(a.kd_temperatures)]
    chosen = p.choose(p.bench("val", grid + ["--sigmas", *p.sigmas]))
    chosen = {key: options for key, options in chosen.items() if key[0] != "teacher"}
    for (_, method), o in chosen.items():
        options = ["--methods", method]
        options += ["--weights", f"{o['weight']:g}"] if "weight" in o else []
        options += ["--sigmas", f"{o['sigma']:g}"] if "sigma" in o else []
        options += ["--kd-temperatures", f"{o['kd_temperature']:g}"] if "kd_temperature" in o else []
        p.bench("test", options)
    return chosen


RUNNERS = {"ssl": run_ssl, "self-taught": run_self_taught, "classification": run_classification}


def main(args: argparse.Namespace) -> dict:
    """Runs the validation grid, the choice and the test runs; writes and returns ``choices.json``'s content."""
    p = Pipeline(args)
    chosen = RUNNERS[args.task](p)
    val = RunLog(p.root / "val").records
    summary = {
        "task": args.task,
        "dataset": args.dataset,
        "selection_metric": p.metric,
        "val_seeds": args.val_seeds,
        "choices": [
            {
                "setting": setting,
                "method": method,
                "options": options,
                "validation_value": p.validation_value(val, setting, method, options),
            }
            for (setting, method), options in chosen.items()
        ],
        "test_commands": p.test_commands,
    }
    (p.root / "choices.json").write_text(json.dumps(summary, indent=2) + "\n")
    for c in summary["choices"]:
        value = f"{p.metric} {c['validation_value']:.4f}"
        print(f"chosen {c['setting']} {c['method']}: {option_string(c['options'])} ({value})")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
