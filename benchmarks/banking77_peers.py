"""Banking77 in one process on one thread: the tuned text students beside the peers a user would pick instead.

Peers (no training on Banking77; see ``pml_relaxed_bench.text_peers``): Model2Vec distilled from the
same packaged all-MiniLM-L6-v2 at ``--model2vec-dims`` (``pip install "model2vec[distill]"``), and
the teacher's embeddings reduced by a PCA fitted on the training-intent texts at ``--pca-dims``.
Students: each method of ``--methods`` at the point the tuned benchmark chose on validation intents
(``TUNED``, see docs/text_distillation.md), ``--settings`` x ``--seeds``, trained with the bench's
trainer. Everything is scored by the bench on the 38 unseen test intents (R@1 / MAP@R) and timed on
the first 1,024 test texts, raw strings in, batches of 256, one torch thread and tokenizers'
parallelism off; the final speed table times every model again in interleaved rounds (best of
``--speed-repeats``; the teacher-cost rows, teacher and PCA, once), so load changes hit all alike.

    python benchmarks/banking77_peers.py --output-dir results/b77_peers

``--family NAME=OPTIONS`` (repeatable) adds the text-student families of docs/text_students.md: each trains
``--family-method`` with ``--text-student NAME`` at the point its OPTIONS give (chosen on validation
intents), at every setting and seed, in rows named ``METHOD@NAME``, timed like the others.

Writes ``runs.jsonl`` (resumable), the bench report (``results.{json,csv,md}``, plots) and
``peers.md`` / ``peers.json`` (one table: quality and speed of every row of this run, its Pareto front
marked) and ``pareto.png`` (R@1 and MAP@R against sentences/s, log scale).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from pml_relaxed.datasets import Banking77
from pml_relaxed.models import SentenceTransformerTeacher
from pml_relaxed.models.sentence_transformer_teacher import default_model_path
from pml_relaxed_bench import (
    METHODS,
    TEXT_STUDENT_FAMILIES,
    BenchConfig,
    aggregate,
    banking77_data,
    distilled_model2vec,
    get_teacher,
    load_done,
    machine,
    metric_mean,
    model2vec_peers,
    pca_peers,
    peer_records,
    peer_setting,
    peer_speed,
    plot_pareto,
    run_student,
    speed_front,
    static_student_data,
    versions,
    write_results,
)

#: bench options of each method's point chosen on validation intents (docs/text_distillation.md, third round)
TUNED: Dict[str, List[str]] = {
    "relaxed_contrastive+proxy_anchor": ["--delta", "3", "--lr", "1e-2", "--epochs", "10", "--text-mlp"],
    "fitnet": ["--lr", "3e-3", "--epochs", "20", "--text-init-std", "0.03"],
}
TUNED_KIND = {method: METHODS[method].kind for method in TUNED}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(TUNED), help=f"students, some of {list(TUNED)}")
    parser.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help=(
            "a text-student family trained with --family-method at its point: NAME one of "
            f"{list(TEXT_STUDENT_FAMILIES)}, OPTIONS the bench options of the point chosen on validation intents "
            "(e.g. 'conv=--text-kernel-size 5 --epochs 20 --lr 3e-3'), applied after the method's tuned ones; "
            "its rows are named METHOD@NAME; repeat for each family"
        ),
    )
    parser.add_argument(
        "--family-method", default="relaxed_contrastive+proxy_anchor", help="the method every --family trains with"
    )
    parser.add_argument("--settings", nargs="+", default=["dim16", "dim32", "dim64"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model2vec-dims", type=int, nargs="*", default=[32, 64, 256])
    parser.add_argument("--pca-dims", type=int, nargs="*", default=[16, 32, 64])
    parser.add_argument(
        "--static-methods",
        nargs="*",
        default=["relaxed_contrastive+proxy_anchor"],
        help="methods that refine a StaticEmbedder initialised from Model2Vec",
    )
    parser.add_argument("--static-dims", type=int, nargs="*", default=[32, 64])
    parser.add_argument(
        "--static-lrs",
        type=float,
        nargs="+",
        default=[1e-3, 1e-2],
        help="learning rates tried on 8 validation intents (32-d, seed 0); the best is tested",
    )
    parser.add_argument("--model2vec-cache", default="results/model2vec", help="where distilled models are kept")
    parser.add_argument(
        "--model2vec-dtype",
        default="float32",
        choices=["float32", "float16"],
        help="Model2Vec peers' vectors (float16 is model2vec's default, slower on a CPU)",
    )
    parser.add_argument("--speed-repeats", type=int, default=5)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--output-dir", default="results/b77_peers")
    return parser


def family_points(args: argparse.Namespace) -> Dict[str, List[str]]:
    """``--family NAME=OPTIONS``: each family's bench options (``--text-student NAME`` and its point's options).

    Raises:
        ValueError: an entry without ``=``, an unknown family, one given twice, or options the bench refuses.
    """
    points: Dict[str, List[str]] = {}
    for entry in args.family:
        name, sep, options = entry.partition("=")
        if not sep or name not in TEXT_STUDENT_FAMILIES or name in points:
            raise ValueError(
                f"--family must be NAME=OPTIONS with NAME one of {list(TEXT_STUDENT_FAMILIES)}, each family once; "
                f"got {entry!r}"
            )
        points[name] = ["--text-student", name, *shlex.split(options)]
        try:
            BenchConfig.from_args(["--dataset", "banking77", *points[name]])
        except SystemExit as err:  # argparse printed which option
            raise ValueError(f"--family {name}: the bench refuses its options {options!r}") from err
    return points


def uncached(student) -> Callable:
    """``student.encode`` with its hashing caches emptied first: the speed of hashing new texts."""

    def encode(texts: List[str]):
        student.hasher.clear_cache()
        return student.encode(texts)

    return encode


def bench_args(args: argparse.Namespace, method: str, family_options: Sequence[str] = ()) -> BenchConfig:
    argv = [
        "--dataset",
        "banking77",
        "--output-dir",
        args.output_dir,
        "--no-progress",
        "--seeds",
        str(args.seeds),
        "--settings",
        *args.settings,
        "--methods",
        method,
        *TUNED.get(method, []),
        *family_options,
    ]
    if args.data_root:
        argv += ["--data-root", args.data_root]
    return BenchConfig.from_args(argv)


def _key(record: dict) -> tuple:
    return record["setting"], record["method"], record["kind"], record["student_dim"], record["seed"]


def one_pass(encode: Callable, texts: List[str], batch_size: int = 256) -> float:
    """Seconds for one pass of ``encode`` over ``texts`` in batches, without gradients."""
    with torch.no_grad():
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            encode(texts[i : i + batch_size])
        return time.perf_counter() - start


def best_of(encoders: Dict[str, Callable], texts: List[str], repeats: Dict[str, int]) -> Dict[str, float]:
    """Sentences/s per encoder in interleaved rounds; an encoder with fewer ``repeats`` sits out later rounds."""
    for encode in encoders.values():
        encode(texts[:256])
    best = {name: float("inf") for name in encoders}
    for round_index in range(max(repeats.values())):
        for name, encode in encoders.items():
            if round_index < repeats[name]:
                best[name] = min(best[name], one_pass(encode, texts))
    return {name: len(texts) / seconds for name, seconds in best.items()}


def _cell(row: dict, metric: str) -> str:
    stats = row["metrics"].get(metric)
    if stats is None:
        return "–"
    return f"{100 * stats['mean']:.1f}" + (f" ± {100 * stats['std']:.1f}" if stats["n"] > 1 else "")


def peers_table(records: List[dict], speeds: Dict[str, float]) -> List[str]:
    """One Markdown table over every row of the run, by dimension then R@1; "front" marks the Pareto front."""
    rows = aggregate(records)
    rows.sort(key=lambda r: (r["kind"] != "teacher", r["student_dim"], -(metric_mean(r, "recall_at_1") or 0)))
    on_front = set(speed_front(rows, speeds))
    lines = [
        "| model | kind | dim | R@1 | MAP@R | seeds | sentences/s (timed together) | sentences/s (after run) | front |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        name = f"{r['method']} ({r['student_dim']}-d)"
        timed = speeds.get(name)
        lines.append(
            f"| {r['method']} | {r['kind']} | {r['student_dim']} | {_cell(r, 'recall_at_1')} | "
            f"{_cell(r, 'mean_average_precision_at_r')} | {r['n_seeds']} | "
            f"{'–' if timed is None else format(timed, ',.0f')} | "
            f"{'–' if r['throughput_mean'] is None else format(r['throughput_mean'], ',.0f')} | "
            f"{'yes' if name in on_front else ''} |"
        )
    return lines


def _score(record: dict) -> float:
    return (record["metrics"]["recall_at_1"] + record["metrics"]["mean_average_precision_at_r"]) / 2


def static_students(args, method: str, data, train_texts, test_texts, done, keep) -> Dict[str, Callable]:
    """Model2Vec-initialised static students refined with ``method``: lr chosen on validation, then tested.

    Returns the raw-string encoders of the tested students (for the speed table).
    """
    teacher_path = default_model_path()
    by_dim = {dim: distilled_model2vec(teacher_path, dim, Path(args.model2vec_cache)) for dim in args.static_dims}
    name = f"model2vec+{method}"
    # Validation: 8 of the 39 training intents held out (split seed 0), 32-d (or the first dim), seed 0.
    val_args = BenchConfig.from_args(
        [
            "--dataset",
            "banking77",
            "--output-dir",
            str(Path(args.output_dir) / "static_val"),
            "--no-progress",
            "--val-classes",
            "8",
            "--methods",
            method,
            *TUNED.get(method, []),
        ]
        + (["--data-root", args.data_root] if args.data_root else [])
    )
    roots = (args.data_root,) if args.data_root else ()
    val_train = list(Banking77(*roots, split="train", num_val_classes=8, seed=0).texts)
    val_eval = list(Banking77(*roots, split="val", num_val_classes=8, seed=0).texts)
    val_dim = 32 if 32 in by_dim else next(iter(by_dim))
    val_path = Path(args.output_dir) / "static_val.jsonl"
    val_records = load_done(val_path)
    val_data = None
    for lr in args.static_lrs:
        if any(r["hparams"]["lr"] == lr and r["method"] == name for r in val_records):
            continue
        if val_data is None:
            val_data = static_student_data(banking77_data(val_args), {val_dim: by_dim[val_dim]}, val_train, val_eval)
        lr_args = dataclasses.replace(val_args, lr=lr)
        record = run_student(val_data, lr_args, f"static{val_dim}", method, 0, val_data.teacher)
        record["method"] = name
        val_records.append(record)
        with val_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({"validation": name, "lr": lr, "score": _score(record)}), flush=True)
    chosen = max((r for r in val_records if r["method"] == name and r["hparams"]["lr"] in args.static_lrs), key=_score)[
        "hparams"
    ]["lr"]
    # Test: the chosen lr, every dim, every seed, in the table of the hashed students of that dim.
    test_args = dataclasses.replace(bench_args(args, method), lr=chosen)
    test_data = static_student_data(data, by_dim, train_texts, test_texts)
    for seed in range(args.seeds):
        for dim in sorted(by_dim):
            setting = peer_setting(data, test_args, dim)
            if (setting, name, TUNED_KIND.get(method), dim, seed) in done:
                continue
            record = run_student(test_data, test_args, f"static{dim}", method, seed, test_data.teacher)
            record.update(method=name, setting=setting)
            keep([record])
            print(
                json.dumps({k: record[k] for k in ("setting", "method", "seed", "train_seconds", "throughput")}),
                flush=True,
            )
    return {f"{name} ({dim}-d)": test_data.make_model("static", dim).model.eval().encode for dim in sorted(by_dim)}


def main(args: argparse.Namespace, argv: List[str]) -> dict:
    # One thread everywhere: torch, and the Rust tokenizers (before their thread pool starts).
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    unknown = [m for m in args.methods + [args.family_method] if m not in TUNED]
    if unknown:
        raise ValueError(f"--methods and --family-method must be some of {list(TUNED)}; got {unknown}")
    points = family_points(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.jsonl"
    records = load_done(runs_path)
    done = {_key(r) for r in records}

    def keep(new: List[dict]) -> None:
        with runs_path.open("a") as f:
            for record in new:
                if _key(record) not in done:
                    f.write(json.dumps(record) + "\n")
                    records.append(record)
                    done.add(_key(record))

    base_args = bench_args(args, args.methods[0] if args.methods else "fitnet")
    data = banking77_data(base_args)
    new: List[dict] = []
    get_teacher(data, base_args, new)  # the teacher's row, timed like the students (best of 3)
    keep(new)

    roots = (base_args.data_root,) if base_args.data_root else ()
    train_texts = list(Banking77(*roots, split="train").texts)  # the order of the bench's teacher table
    test_texts = list(Banking77(*roots, split="test").texts)
    timed_texts = test_texts[:1024]  # the texts the bench times the students on
    teacher = SentenceTransformerTeacher()
    peers = model2vec_peers(
        args.model2vec_dims, train_texts + test_texts, Path(args.model2vec_cache), args.model2vec_dtype
    )
    peers += pca_peers(args.pca_dims, data.teacher.embeddings, len(train_texts), teacher)

    todo = [p for p in peers if (peer_setting(data, base_args, p.dim), p.method, "peer", p.dim, 0) not in done]
    keep(peer_records(data, base_args, todo, lambda peer: peer_speed(peer, timed_texts)))

    students: Dict[str, Callable] = {}
    # (row name, method, bench options): the tuned methods on the bench's student, then each --family.
    runs = [(method, method, []) for method in args.methods]
    runs += [(f"{args.family_method}@{name}", args.family_method, options) for name, options in points.items()]
    for name, method, options in runs:
        method_args = bench_args(args, method, options)
        method_data = banking77_data(method_args)
        for seed in range(args.seeds):
            for setting in args.settings:
                dim = method_data.settings[setting][1]
                if (setting, name, TUNED_KIND.get(method), dim, seed) not in done:
                    record = run_student(method_data, method_args, setting, method, seed, method_data.teacher)
                    record["method"] = name
                    keep([record])
                    print(
                        json.dumps(
                            {k: record[k] for k in ("setting", "method", "seed", "train_seconds", "throughput")}
                        ),
                        flush=True,
                    )
        for setting in args.settings:
            student = method_data.make_model(*method_data.settings[setting]).model.eval()
            students[f"{name} ({student.embedding_dim}-d)"] = uncached(student)

    for method in args.static_methods:
        students.update(static_students(args, method, data, train_texts, test_texts, done, keep))

    # Every model of this run timed again on the same texts, interleaved (weights do not change a student's speed).
    encoders: Dict[str, Callable] = {f"teacher:all-MiniLM-L6-v2 ({teacher.embedding_dim}-d)": teacher}
    encoders.update({f"{p.method} ({p.dim}-d)": p.encode for p in peers})
    encoders.update(students)
    repeats = {name: 1 if name.startswith(("teacher:", "peer:pca")) else args.speed_repeats for name in encoders}
    speeds = best_of(encoders, timed_texts, repeats)

    metadata = {
        "command": "python benchmarks/banking77_peers.py " + shlex.join(argv),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "threads": "1 torch thread, TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1",
        "speeds": speeds,
    }
    write_results(records, out, metadata)
    plot_pareto(aggregate(records), speeds, out / "pareto.png", min_speed=30_000)
    lines = [f"- **{k}:** {v}" for k, v in metadata.items() if k != "speeds"] + [""] + peers_table(records, speeds)
    (out / "peers.md").write_text("\n".join(lines) + "\n")
    (out / "peers.json").write_text(
        json.dumps({"metadata": metadata, "summary": aggregate(records)}, indent=1, default=str)
    )
    print("\n".join(lines))
    return {"records": records, "speeds": speeds}


if __name__ == "__main__":
    main(get_args_parser().parse_args(), sys.argv[1:])
