"""Validation sweep of ``pml-relaxed bench`` settings: choose hyper-parameters without the test classes.

Every point of a grid of bench options (``--grid delta=0.5,1,2 lr=1e-3,3e-3``) is run with
``--val-classes``: the students train on the training classes minus the held-out ones and are scored
on those held-out classes, never on the test classes. One teacher (cached under
``--output-dir/teachers``) serves every point; each point has its own resumable output folder.

    python benchmarks/val_sweep.py --dataset banking77 --val-classes 8 --settings dim16 dim32 \\
        --methods relaxed_contrastive relaxed_ms --grid delta=0.5,1,1.5,2 --seeds 2

Prints one line per (point, setting, method) and writes ``sweep.md`` / ``sweep.json`` (R@1 and MAP@R
averaged over the seeds).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from pml_relaxed_bench import DATASETS, BenchConfig, add_held_out_options, held_out_args, run_all

BOOLEAN_OPTIONS = {"eval-normalize", "normalize-student"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="omniglot")
    add_held_out_options(parser)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=["dim_reduction"])
    parser.add_argument("--methods", nargs="+", default=["relaxed_contrastive"])
    parser.add_argument(
        "--grid",
        nargs="+",
        default=["sigma=0.25,0.5,1,2"],
        help="bench options and their values, e.g. delta=0.5,1,2 lr=1e-3,3e-3 eval-normalize=true,false",
    )
    parser.add_argument("--fixed", nargs="*", default=[], help="bench options for every point, e.g. epochs=20")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--output-dir", default="results/sweep")
    return parser


def parse_grid(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """``["delta=0.5,1"]`` -> ``[("delta", ["0.5", "1"])]``; raises ValueError on a malformed item."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"a grid item must look like option=v1,v2 (e.g. delta=0.5,1); got {item!r}")
        grid.append((key.lstrip("-"), values.split(",")))
    return grid


def option_args(point: Dict[str, str]) -> List[str]:
    """Bench command-line arguments for one point: ``{"delta": "2"}`` -> ``["--delta", "2"]``."""
    args: List[str] = []
    for key, value in point.items():
        if key in BOOLEAN_OPTIONS:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{key} takes true or false; got {value!r}")
            args.append(f"--{key}" if value.lower() == "true" else f"--no-{key}")
        else:
            args += [f"--{key}", value]
    return args


def point_name(point: Dict[str, str]) -> str:
    return "_".join(f"{k}{v}" for k, v in point.items()) or "defaults"


def main(args: argparse.Namespace) -> List[dict]:
    out = Path(args.output_dir)
    grid = parse_grid(args.grid)
    fixed = {key: ",".join(values) for key, values in parse_grid(args.fixed)}
    rows = []
    held_out = held_out_args(args.val_classes, args.val_alphabets)
    for values in itertools.product(*(vals for _, vals in grid)):
        point = dict(zip((key for key, _ in grid), values))
        bench_args = BenchConfig.from_args(
            [
                "--dataset",
                args.dataset,
                *held_out,
                "--split-seed",
                str(args.split_seed),
                "--settings",
                *args.settings,
                "--methods",
                *args.methods,
                "--seeds",
                str(args.seeds),
                "--output-dir",
                str(out / point_name(point)),
                "--teacher-dir",
                str(out / "teachers"),
                "--no-progress",
            ]
            + option_args({**fixed, **point})
        )
        data = DATASETS[args.dataset](bench_args)  # per point: an option may shape the data or its models
        records = [r for r in run_all(data, bench_args) if r["kind"] != "teacher"]
        for setting in args.settings:
            for method in args.methods:
                runs = [r for r in records if r["setting"] == setting and r["method"] == method]
                if not runs:
                    continue
                row = {
                    **point,
                    "setting": setting,
                    "method": method,
                    "seeds": len(runs),
                    "R@1": sum(r["metrics"]["recall_at_1"] for r in runs) / len(runs),
                    "MAP@R": sum(r["metrics"]["mean_average_precision_at_r"] for r in runs) / len(runs),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    keys = [key for key, _ in grid]
    lines = [
        "| " + " | ".join(keys + ["setting", "method", "R@1", "MAP@R", "seeds"]) + " |",
        "|" + "---|" * (len(keys) + 5),
    ]
    lines += [
        "| "
        + " | ".join(
            [r[k] for k in keys]
            + [r["setting"], r["method"], f"{100 * r['R@1']:.1f}", f"{100 * r['MAP@R']:.1f}", str(r["seeds"])]
        )
        + " |"
        for r in rows
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
