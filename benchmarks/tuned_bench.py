"""Each method tuned on validation classes, then tested: the fair form of ``pml-relaxed bench``.

1. Validation: every method trains at every training budget of ``--budgets`` (epochs:lr), and the
   methods of ``--delta-methods`` also at every ``--deltas`` value, relaxed_contrastive+labels at
   every ``--label-weights`` value, and the methods of ``--sigma-methods`` at every ``--sigmas``
   relaxed-label bandwidth, crossed with delta 1 and every ``--deltas`` value, and rkd at every
   ``--rkd-angle-weights`` value (each at every ``--delta-budget``), on the training classes minus
   ``--val-classes`` held-out ones (Omniglot: or ``--val-alphabets`` whole alphabets), scored on
   those (never on test classes). A point counts only for the methods it was made for.
2. Selection: per method, the point with the best mean of R@1 and MAP@R over ``--val-settings`` and
   ``--val-seeds`` (only points whose runs all finished). With ``--refine NAME=OPTIONS``, a second
   stage then tries each refinement's bench options on top of each method's chosen point (e.g.
   ``"h128=--text-hidden-dim 128"``) and chooses again among every point and every refinement trained
   so far (those of an earlier call's choices too, so a grid that grows never lowers the chosen score).
3. Test: every method at its chosen point, ``--settings`` x ``--seeds``, into one ``runs.jsonl``;
   then the usual report (results.md, plots). ``runs.jsonl`` records each run's epochs, lr, sigma, delta and weights.
   Test runs left from an earlier call at another point (a grid that grew changed a choice) are
   moved to ``runs.stale.jsonl`` and trained again at the new point.

With ``--per-setting``, each of ``--settings`` gets its own choice, made on validation at that setting
alone (a 64-d student's point chosen on 64-d validation students): steps 1-3 run once per setting in
``OUTPUT_DIR/SETTING/``, and ``OUTPUT_DIR/test/`` gets one report over all of them.

Every step is a ``pml-relaxed bench`` call with ``--workers`` processes, so it resumes where it
stopped (a step whose runs have all finished is not called again). Options after ``--`` go to every
bench call (e.g. ``-- --device cuda --data-root DIR``).

    python benchmarks/tuned_bench.py --dataset omniglot --workers 12 --output-dir results/omniglot_tuned \\
        -- --device cuda

Writes ``selection.md`` / ``selection.json`` (every validation point, the chosen one per method)
beside ``val/`` (one bench folder per point) and ``test/`` (the report).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from pml_relaxed_bench import (
    DEFAULT_METHODS,
    TEXT_STUDENT_DEFAULTS,
    BenchConfig,
    add_held_out_options,
    held_out_args,
    load_done,
    text_student_options,
)
from pml_relaxed_bench import main as bench_main

#: a validation point: (name, bench arguments, methods it applies to)
Point = Tuple[str, List[str], List[str]]
#: the methods whose relaxed labels mix in same-class labels (``--label-weight``)
LABEL_WEIGHT_METHODS = ("relaxed_contrastive+labels",)
#: the settings a point is scored on when --val-settings is not given
DEFAULT_VAL_SETTINGS = ("dim_reduction", "compression")
#: the methods whose relaxed labels come from the teacher's Gaussian kernel (``--sigma``)
SIGMA_METHODS = ("relaxed_contrastive", "relaxed_contrastive+labels", "relaxed_contrastive+proxy_anchor", "relaxed_ms")
#: the tuned hyper-parameters a test run records (``runs.jsonl`` "hparams")
HPARAMS = ("epochs", "lr", "sigma", "delta", "label_weight", "rkd_angle_weight", "text_ngram_dropout")
#: the methods with an RKD angle-wise weight (``--rkd-angle-weight``)
RKD_METHODS = ("rkd",)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    add_held_out_options(parser)
    parser.add_argument(
        "--val-settings",
        nargs="+",
        default=None,
        help="the settings a point is scored on (default: dim_reduction compression)",
    )
    parser.add_argument("--val-seeds", type=int, default=2)
    parser.add_argument(
        "--budgets",
        nargs="+",
        default=["10:1e-3", "20:1e-3", "20:3e-3"],
        help="training budgets epochs:lr tried for every method",
    )
    parser.add_argument(
        "--deltas",
        nargs="*",
        default=["0.5", "2", "3"],
        help="extra delta values tried for --delta-methods (delta 1 is in every budget)",
    )
    parser.add_argument("--delta-methods", nargs="*", default=["relaxed_contrastive", "relaxed_contrastive+labels"])
    parser.add_argument(
        "--delta-budget",
        nargs="+",
        default=["20:3e-3"],
        help="the budget(s) of the extra delta and label-weight points",
    )
    parser.add_argument(
        "--sigmas",
        nargs="*",
        default=[],
        help="extra relaxed-label bandwidths tried for --sigma-methods, each with delta 1 and with "
        "every --deltas value (sigma 1 is in every budget)",
    )
    parser.add_argument("--sigma-methods", nargs="*", default=list(SIGMA_METHODS))
    parser.add_argument(
        "--label-weights",
        nargs="*",
        default=[],
        help="extra label_weight values tried for relaxed_contrastive+labels (0.5 is in every budget)",
    )
    parser.add_argument(
        "--rkd-angle-weights",
        nargs="*",
        default=[],
        help="extra angle-wise weights tried for rkd at every --delta-budget (2, the paper's, is in every budget)",
    )
    parser.add_argument(
        "--refine",
        nargs="*",
        default=[],
        metavar="NAME=OPTIONS",
        help="second stage: bench options tried on top of each method's chosen point, "
        "e.g. 'h128=--text-hidden-dim 128' 'std0.3=--text-init-std 0.3'",
    )
    parser.add_argument("--settings", nargs="+", default=None, help="test settings (default: the dataset's all)")
    parser.add_argument(
        "--per-setting",
        action="store_true",
        help="choose each of --settings' points on validation at that setting alone",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output-dir", default="results/tuned")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: options for every bench call")
    return parser


def parse_budget(text: str) -> Tuple[int, str]:
    """``"20:3e-3"`` -> ``(20, "3e-3")``; raises ValueError on anything else."""
    epochs, sep, lr = text.partition(":")
    try:
        if not sep or int(epochs) < 1 or float(lr) <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"a budget must look like epochs:lr with epochs >= 1 and lr > 0 (e.g. 20:3e-3); got {text!r}"
        ) from None
    return int(epochs), lr


def validation_points(args: argparse.Namespace) -> List[Point]:
    points: List[Point] = []
    for budget in args.budgets:
        epochs, lr = parse_budget(budget)
        points.append((f"e{epochs}_lr{lr}", ["--epochs", str(epochs), "--lr", lr], list(args.methods)))
    delta_methods = [m for m in args.delta_methods if m in args.methods]
    weight_methods = [m for m in LABEL_WEIGHT_METHODS if m in args.methods]
    rkd_methods = [m for m in RKD_METHODS if m in args.methods]
    for budget in args.delta_budget:
        epochs, lr = parse_budget(budget)
        for flag, tag, values, methods in [
            ("--delta", "delta", args.deltas, delta_methods),
            ("--label-weight", "lw", args.label_weights, weight_methods),
            ("--rkd-angle-weight", "angle", args.rkd_angle_weights, rkd_methods),
        ]:
            if methods:
                points.extend(
                    (f"e{epochs}_lr{lr}_{tag}{value}", ["--epochs", str(epochs), "--lr", lr, flag, value], methods)
                    for value in values
                )
        points.extend(_sigma_points(args, epochs, lr, delta_methods))
    return points


def _sigma_points(args: argparse.Namespace, epochs: int, lr: str, delta_methods: List[str]) -> List[Point]:
    """Every ``--sigmas`` value at one budget: with delta 1 for ``--sigma-methods``, and with every ``--deltas``
    value for those of them that are also ``--delta-methods``."""
    methods = [m for m in args.sigma_methods if m in args.methods]
    both = [m for m in methods if m in delta_methods]
    budget = ["--epochs", str(epochs), "--lr", lr]
    points: List[Point] = []
    for sigma in args.sigmas if methods else []:
        points.append((f"e{epochs}_lr{lr}_sigma{sigma}", [*budget, "--sigma", sigma], methods))
        if both:
            points.extend(
                (f"e{epochs}_lr{lr}_sigma{sigma}_delta{delta}", [*budget, "--sigma", sigma, "--delta", delta], both)
                for delta in args.deltas
            )
    return points


def parse_refinement(text: str) -> Tuple[str, List[str]]:
    """``"h128=--text-hidden-dim 128"`` -> ``("h128", ["--text-hidden-dim", "128"])``; raises ValueError otherwise."""
    name, sep, options = text.partition("=")
    argv = shlex.split(options)
    if not sep or not re.fullmatch(r"[\w.+-]+", name) or not argv or not argv[0].startswith("--"):
        raise ValueError(
            f"a refinement must look like NAME=--option value (e.g. 'h128=--text-hidden-dim 128'); got {text!r}"
        )
    return name, argv


def refinement_points(chosen: Dict[str, dict], refinements: Sequence[Tuple[str, List[str]]]) -> List[Point]:
    """Second stage: every refinement on top of every chosen point, for the methods that chose it."""
    by_point: Dict[str, Tuple[List[str], List[str]]] = {}
    for method, row in chosen.items():
        by_point.setdefault(row["point"], (row["args"], []))[1].append(method)
    return [
        (f"{point}_{name}", [*point_args, *options], methods)
        for point, (point_args, methods) in by_point.items()
        for name, options in refinements
    ]


def every_refinement(points: Sequence[Point], refinements: Sequence[Tuple[str, List[str]]]) -> List[Point]:
    """Every refinement of every point, for that point's methods: the second stage's candidates.

    They include the refinements of the current choices (``refinement_points``) and those an earlier
    call trained on its own choices, so a grid that grows never lowers the chosen validation score.
    ``select`` counts only points with finished runs.
    """
    return [
        (f"{name}_{ref}", [*point_args, *options], methods)
        for name, point_args, methods in points
        for ref, options in refinements
    ]


def drop_stale(runs_path: Path, chosen: Dict[str, dict], dataset: str, extra: Sequence[str]) -> int:
    """Moves the test runs of a method trained at another point than its chosen one to ``runs.stale.jsonl``.

    A test folder from an earlier call (before the grid grew) may hold a method's runs at its old
    point; the bench resumes by (setting, method, seed) only, so those must go before it runs again.
    A run recorded before an option existed counts as trained at that option's default.
    Returns how many runs were moved.
    """
    if not runs_path.exists():
        return 0
    defaults = BenchConfig()
    wanted = {
        method: BenchConfig.from_args(["--dataset", dataset, *extra, *row["args"]]) for method, row in chosen.items()
    }
    keep, stale = [], []
    for line in runs_path.read_text().splitlines():
        record = json.loads(line)
        point = wanted.get(record["method"])
        same = point is None or (
            all(_same(record["hparams"].get(name, getattr(defaults, name)), getattr(point, name)) for name in HPARAMS)
            and _same_student(record["hparams"], dataset, point)
        )
        (keep if same else stale).append(line + "\n")
    if stale:
        with runs_path.with_name("runs.stale.jsonl").open("a") as f:
            f.writelines(stale)
        runs_path.write_text("".join(keep))
    return len(stale)


def _same(recorded, wanted) -> bool:
    """A recorded hyper-parameter matches the wanted one (None wanted: any value matches)."""
    return wanted is None or (recorded is not None and math.isclose(recorded, wanted))


def _same_student(hparams: dict, dataset: str, wanted: BenchConfig) -> bool:
    """The run's student was built with the wanted ``--text-*`` options (runs before they were recorded: defaults)."""
    if dataset != "banking77":
        return True
    return hparams.get("student_options", TEXT_STUDENT_DEFAULTS) == text_student_options(wanted)


def finished(runs_path: Path, methods: Sequence[str], settings: Sequence[str], seeds: Sequence[int]) -> bool:
    """Every (setting, method, seed) has a run in ``runs_path``: a bench call would only load the data."""
    done = {(r["setting"], r["method"], r["seed"]) for r in load_done(runs_path)}
    return all((setting, method, seed) in done for setting in settings for method in methods for seed in seeds)


def _bench(argv: Sequence[str]) -> None:
    bench_main(BenchConfig.from_args(list(argv)), list(argv))


def select(
    val_dir: Path, points: Sequence[Point], settings: Sequence[str], num_seeds: int
) -> Tuple[List[dict], Dict[str, dict]]:
    """Scores every (method, point) on validation; returns the table and the chosen point per method.

    Only the runs of the point's methods, of ``settings`` and of seeds ``0 .. num_seeds - 1`` count (a
    folder may hold more, e.g. the teacher or runs of an earlier sweep).
    """
    num_runs = len(settings) * num_seeds
    table, chosen = [], {}
    for name, point_args, point_methods in points:
        path = val_dir / name / "runs.jsonl"
        runs = defaultdict(list)
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record["method"] in point_methods and record["setting"] in settings and record["seed"] < num_seeds:
                    runs[record["method"]].append(record["metrics"])
        for method, metrics in sorted(runs.items()):
            r1 = sum(m["recall_at_1"] for m in metrics) / len(metrics)
            mapr = sum(m["mean_average_precision_at_r"] for m in metrics) / len(metrics)
            row = {
                "method": method,
                "point": name,
                "runs": len(metrics),
                "R@1": r1,
                "MAP@R": mapr,
                "score": (r1 + mapr) / 2,
                "args": list(point_args),
            }
            table.append(row)
            complete = len(metrics) == num_runs
            if complete and (method not in chosen or row["score"] > chosen[method]["score"]):
                chosen[method] = row
    return table, chosen


def write_selection(out: Path, table: List[dict], chosen: Dict[str, dict], command: str) -> None:
    lines = [
        f"Validation points (mean over settings and seeds; the chosen point has the best mean of R@1 and "
        f"MAP@R). Command: `{command}`",
        "",
        "| method | point | R@1 | MAP@R | mean | runs | chosen |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in sorted(table, key=lambda r: (r["method"], -r["score"])):
        mark = "**yes**" if chosen.get(row["method"]) is row else ""
        lines.append(
            f"| {row['method']} | {row['point']} | {100 * row['R@1']:.1f} | {100 * row['MAP@R']:.1f} | "
            f"{100 * row['score']:.1f} | {row['runs']} | {mark} |"
        )
    (out / "selection.md").write_text("\n".join(lines) + "\n")
    (out / "selection.json").write_text(json.dumps({"table": table, "chosen": chosen}, indent=1))


def main(args: argparse.Namespace) -> Dict[str, dict]:
    """Tunes and tests; returns the chosen validation row per method (``--per-setting``: per "setting/method")."""
    if not args.per_setting:
        args.val_settings = args.val_settings or list(DEFAULT_VAL_SETTINGS)
        return tune(args)
    if not args.settings or args.val_settings:
        raise ValueError(
            f"--per-setting validates each of --settings on itself: it needs --settings and no "
            f"--val-settings; got --settings {args.settings} and --val-settings {args.val_settings}"
        )
    out, command = Path(args.output_dir), command_line(args)
    chosen = {}
    for setting in args.settings:
        one = argparse.Namespace(
            **{
                **vars(args),
                "per_setting": False,
                "val_settings": [setting],
                "settings": [setting],
                "output_dir": str(out / setting),
            }
        )
        chosen.update({f"{setting}/{method}": row for method, row in tune(one).items()})
    merge_per_setting(out, args, command)
    return chosen


def merge_per_setting(out: Path, args: argparse.Namespace, command: str) -> None:
    """One report over ``OUTPUT_DIR/SETTING/test`` for every setting (the teacher's run once), in
    ``OUTPUT_DIR/test``."""
    test_dir = out / "test"
    test_dir.mkdir(parents=True, exist_ok=True)
    lines, teacher_seen, selections = [], False, []
    for setting in args.settings:
        for line in (out / setting / "test" / "runs.jsonl").read_text().splitlines():
            is_teacher = json.loads(line)["kind"] == "teacher"
            if not (is_teacher and teacher_seen):
                lines.append(line + "\n")
            teacher_seen |= is_teacher
        selections.append(f"## {setting}\n\n" + (out / setting / "selection.md").read_text())
    (test_dir / "runs.jsonl").write_text("".join(lines))
    (out / "selection.md").write_text("\n".join(selections))
    _bench(
        [
            "--dataset",
            args.dataset,
            *bench_extra(args),
            "--settings",
            *args.settings,
            "--seeds",
            str(args.seeds),
            "--output-dir",
            str(test_dir),
            "--report-only",
        ]
    )
    _add_tuned_by(test_dir / "results.md", command, out / "selection.md")


def _add_tuned_by(report: Path, command: str, selection: Path) -> None:
    tuned = f"- **Tuned by:** `{command}` (each method's point: {selection})\n"
    report.write_text(report.read_text().replace("- **Machine:**", tuned + "- **Machine:**", 1))


def tune(args: argparse.Namespace) -> Dict[str, dict]:
    """Validation, selection and test for ``args.val_settings`` and ``args.settings`` (steps 1-3)."""
    extra, command = bench_extra(args), command_line(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = validation_points(args)
    refinements = [parse_refinement(text) for text in args.refine]
    val_dir = out / "val"
    common = ["--dataset", args.dataset, "--workers", str(args.workers), *extra]
    first_seed = BenchConfig.from_args(["--dataset", args.dataset, *extra]).seed
    held_out = held_out_args(args.val_classes, args.val_alphabets)
    val_seeds, test_seeds = (range(first_seed, first_seed + n) for n in (args.val_seeds, args.seeds))

    def validate(stage: List[Point], candidates: List[Point]) -> Dict[str, dict]:
        """Trains the points of ``stage``, then chooses each method's point among ``candidates``."""
        for name, point_args, methods in stage:
            if finished(val_dir / name / "runs.jsonl", methods, args.val_settings, val_seeds):
                continue
            _bench(
                common
                + point_args
                + [
                    *held_out,
                    "--settings",
                    *args.val_settings,
                    "--methods",
                    *methods,
                    "--seeds",
                    str(args.val_seeds),
                    "--teacher-dir",
                    str(val_dir / "teachers"),
                    "--output-dir",
                    str(val_dir / name),
                    "--no-report",
                    "--no-throughput",
                ]
            )
        table, chosen = select(val_dir, candidates, args.val_settings, args.val_seeds)
        write_selection(out, table, chosen, command)
        missing = [m for m in args.methods if m not in chosen]
        if missing:
            raise RuntimeError(f"no complete validation point for {missing}; see {out / 'selection.md'}")
        return chosen

    chosen = validate(points, points)
    if refinements:
        second = refinement_points(chosen, refinements)
        chosen = validate(second, points + every_refinement(points, refinements))
    test_dir = out / "test"
    moved = drop_stale(test_dir / "runs.jsonl", chosen, args.dataset, extra)
    if moved:
        print(f"moved {moved} test runs at earlier points to {test_dir / 'runs.stale.jsonl'}")
    settings = ["--settings", *args.settings] if args.settings else []
    by_point = defaultdict(list)
    for method in args.methods:
        by_point[chosen[method]["point"]].append(method)
    for methods in by_point.values():
        if args.settings and finished(test_dir / "runs.jsonl", methods, args.settings, test_seeds):
            continue
        _bench(
            common
            + chosen[methods[0]]["args"]
            + settings
            + ["--methods", *methods, "--seeds", str(args.seeds), "--output-dir", str(test_dir), "--no-report"]
        )
    _bench(
        [
            "--dataset",
            args.dataset,
            *extra,
            *settings,
            "--seeds",
            str(args.seeds),
            "--output-dir",
            str(test_dir),
            "--report-only",
        ]
    )
    _add_tuned_by(test_dir / "results.md", command, out / "selection.md")
    print((out / "selection.md").read_text())
    return chosen


def command_line(args: argparse.Namespace) -> str:
    parts = [
        "python benchmarks/tuned_bench.py",
        "--dataset",
        args.dataset,
        "--methods",
        *args.methods,
        *held_out_args(args.val_classes, args.val_alphabets),
        *(["--val-settings", *args.val_settings] if args.val_settings else []),
        "--val-seeds",
        str(args.val_seeds),
        "--budgets",
        *args.budgets,
        "--deltas",
        *args.deltas,
        "--delta-methods",
        *args.delta_methods,
        "--delta-budget",
        *args.delta_budget,
        *(["--sigmas", *args.sigmas, "--sigma-methods", *args.sigma_methods] if args.sigmas else []),
        *(["--label-weights", *args.label_weights] if args.label_weights else []),
        *(["--rkd-angle-weights", *args.rkd_angle_weights] if args.rkd_angle_weights else []),
        *(["--refine", *map(shlex.quote, args.refine)] if args.refine else []),
        *(["--settings", *args.settings] if args.settings else []),
        *(["--per-setting"] if args.per_setting else []),
        "--seeds",
        str(args.seeds),
        "--workers",
        str(args.workers),
        "--output-dir",
        args.output_dir,
    ]
    extra = bench_extra(args)
    return " ".join(parts + (["--", *extra] if extra else []))


def bench_extra(args: argparse.Namespace) -> List[str]:
    """The options given after ``--``, for every bench call."""
    return [a for a in args.bench_args if a != "--"]


if __name__ == "__main__":
    main(get_args_parser().parse_args())
