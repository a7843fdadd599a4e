"""Validation sweep of the relaxed contrastive loss's sigma (and delta) with ``pml-relaxed bench``.

Chooses settings on classes held out of the training classes (``--val-classes``), never on the test
classes. One teacher (cached in ``--output-dir/teachers``) serves every point of the sweep.

    python benchmarks/sigma_sweep.py --dataset omniglot --val-classes 30 --sigmas 0.25 0.5 1 2

Prints one line per point (R@1 and MAP@R on the validation classes) and writes a sweep.md table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pml_relaxed.bench import get_args_parser as bench_parser
from pml_relaxed.bench.cli import DATASETS
from pml_relaxed.bench.runner import run_all


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--val-classes", type=int, default=30)
    parser.add_argument("--setting", default="dim_reduction")
    parser.add_argument("--method", default="relaxed_contrastive")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--deltas", type=float, nargs="+", default=[1.0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="student epochs (default: the dataset's)")
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--output-dir", default="results/sweep")
    return parser


def main(args: argparse.Namespace) -> list:
    out = Path(args.output_dir)
    rows, data = [], None
    for sigma in args.sigmas:
        for delta in args.deltas:
            bench_args = bench_parser().parse_args([
                "--dataset", args.dataset, "--val-classes", str(args.val_classes), "--settings", args.setting,
                "--methods", args.method, "--seeds", str(args.seeds), "--sigma", str(sigma), "--delta", str(delta),
                "--output-dir", str(out / f"sigma{sigma}_delta{delta}"), "--teacher-dir", str(out / "teachers"),
                "--no-progress",
            ] + [f"--{k}={v}" for k, v in (("epochs", args.epochs), ("teacher-epochs", args.teacher_epochs)) if v])
            bench_args.settings, bench_args.methods = [args.setting], [args.method]
            data = data or DATASETS[args.dataset](bench_args)
            students = [r for r in run_all(data, bench_args) if r["kind"] != "teacher"]
            r1 = sum(r["metrics"]["recall_at_1"] for r in students) / len(students)
            mapr = sum(r["metrics"]["mean_average_precision_at_r"] for r in students) / len(students)
            rows.append({"sigma": sigma, "delta": delta, "R@1": r1, "MAP@R": mapr, "seeds": len(students)})
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| sigma | delta | R@1 | MAP@R | seeds |", "|---|---|---|---|---|"]
    lines += [f"| {r['sigma']} | {r['delta']} | {100 * r['R@1']:.1f} | {100 * r['MAP@R']:.1f} | {r['seeds']} |" for r in rows]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
