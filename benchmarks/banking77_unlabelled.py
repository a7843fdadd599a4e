"""Validation only: does unlabelled in-domain text in the transfer term help a Banking77 student?

Banking77 has no separate unlabelled corpus, so this script makes a fair one from texts the student may
see: on the validation protocol (``--val-classes 8``, split seed 0: 31 training intents, 8 validation
intents), each training intent's ``train.csv`` texts are split at random (``--text-split-seed``) into a
labelled part (``--labelled-fraction``) and the rest, whose labels are dropped. Three students per seed:

- ``labelled``: the labelled part only;
- ``labelled+unlabelled``: the same labelled part, plus the rest as ``--unlabelled-texts`` (label-free, in the
  transfer loss only, ``--unlabelled-per-batch`` per batch);
- ``all labelled``: every training text with its label (the ceiling: what the dropped labels were worth).

No test intent (``test.csv``) and no validation-intent text is ever unlabelled data: the validation intents'
rows are copied whole into the derived ``train.csv`` (the bench evaluates on them), the derived
``test.csv`` holds no row. Each condition is one ``pml-relaxed bench`` call into its own folder, scored on the
8 validation intents.

    python benchmarks/banking77_unlabelled.py --output-dir results/b77_unlabelled_val

Writes ``data/`` (the derived Banking77 folder and ``unlabelled.txt``), one bench folder per condition and
``unlabelled.md`` / ``unlabelled.json`` (per-condition R@1 / MAP@R, mean ± sample std over seeds).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Dict, List

import torch

from pml_relaxed.datasets import Banking77
from pml_relaxed_bench import BenchConfig, aggregate, load_done, provenance
from pml_relaxed_bench import main as bench_main

#: the point relaxed contrastive + ProxyAnchor chose on validation intents (docs/text_distillation.md)
POINT = ["--delta", "3", "--lr", "1e-2", "--epochs", "10", "--text-mlp"]
CONDITIONS = ("labelled", "labelled+unlabelled", "all labelled")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--labelled-fraction", type=float, default=0.5, help="share of each intent's texts kept labelled"
    )
    parser.add_argument("--text-split-seed", type=int, default=0, help="seed of the labelled / unlabelled split")
    parser.add_argument("--unlabelled-per-batch", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=["relaxed_contrastive+proxy_anchor"])
    parser.add_argument("--settings", nargs="+", default=["dim32"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--text-student", default="hashed", help="the bench's --text-student")
    parser.add_argument("--data-root", default=None, help="the Banking77 folder (default: the dataset's own)")
    parser.add_argument("--output-dir", default="results/b77_unlabelled_val")
    return parser


def split_texts(root, fraction: float, seed: int, folder: Path) -> Dict[str, int]:
    """Writes ``folder/banking77`` (validation intents whole, each training intent's labelled part; no test row)
    and ``folder/unlabelled.txt`` (the rest of the training intents' texts, one a line).

    Raises:
        ValueError: ``fraction`` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"--labelled-fraction must be in (0, 1); got {fraction}")
    roots = () if root is None else (root,)
    train = Banking77(*roots, split="train", num_val_classes=8, seed=0)
    val = Banking77(*roots, split="val", num_val_classes=8, seed=0)
    source = train.root
    target = folder / "banking77"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "categories.json", target / "categories.json")
    with open(source / "train.csv", newline="", encoding="utf-8") as f:
        rows = [(row["text"], row["category"]) for row in csv.DictReader(f)]
    generator = torch.Generator().manual_seed(seed)
    kept = [row for row in rows if row[1] in set(val.intents)]
    unlabelled: List[str] = []
    for intent in train.intents:
        texts = [text for text, category in rows if category == intent]
        order = torch.randperm(len(texts), generator=generator).tolist()
        cut = max(1, round(fraction * len(texts)))
        kept += [(texts[i], intent) for i in sorted(order[:cut])]
        unlabelled += [" ".join(texts[i].split()) for i in sorted(order[cut:])]
    with open(target / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(kept)
    (target / "test.csv").write_text("text,category\n", encoding="utf-8")  # no test intent reaches this study
    (folder / "unlabelled.txt").write_text("\n".join(unlabelled) + "\n", encoding="utf-8")
    return {"labelled_train_texts": len(kept) - len(val.texts), "unlabelled_texts": len(unlabelled)}


def bench_argv(args: argparse.Namespace, condition: str, data_root: str, unlabelled: Path) -> List[str]:
    out = Path(args.output_dir)
    argv = [
        "--dataset",
        "banking77",
        "--val-classes",
        "8",
        "--data-root",
        data_root,
        "--methods",
        *args.methods,
        "--settings",
        *args.settings,
        "--seeds",
        str(args.seeds),
        "--text-student",
        args.text_student,
        "--no-throughput",
        "--no-progress",
        "--teacher-dir",
        str(out),
        "--output-dir",
        str(out / condition.replace(" ", "_").replace("+", "_plus_")),
        *POINT,
    ]
    if condition == "labelled+unlabelled":
        argv += ["--unlabelled-texts", str(unlabelled), "--unlabelled-per-batch", str(args.unlabelled_per_batch)]
    return argv


def _cell(row: dict, metric: str) -> str:
    stats = row["metrics"][metric]
    return f"{100 * stats['mean']:.1f}" + (f" ± {100 * stats['std']:.1f}" if stats["n"] > 1 else "")


def main(args: argparse.Namespace, argv: List[str]) -> dict:
    out = Path(args.output_dir)
    sizes = split_texts(args.data_root, args.labelled_fraction, args.text_split_seed, out / "data")
    rows = []
    for condition in args.conditions:
        derived = str(out / "data" / "banking77")
        original = args.data_root or str(Banking77(split="train").root)
        data_root = original if condition == "all labelled" else derived
        bench = bench_argv(args, condition, data_root, out / "data" / "unlabelled.txt")
        bench_main(BenchConfig.from_args(bench), bench)
        for row in aggregate(load_done(Path(bench[bench.index("--output-dir") + 1]) / "runs.jsonl")):
            if row["kind"] != "teacher":
                rows.append({"condition": condition, "bench": "pml-relaxed bench " + shlex.join(bench), **row})
    metadata = {
        **provenance("python benchmarks/banking77_unlabelled.py " + shlex.join(argv)),
        "split": "validation: 8 of the 39 training intents (split seed 0), students trained on the other 31",
        **sizes,
    }
    lines = [f"- **{k}:** {v}" for k, v in metadata.items()] + [
        "",
        "| condition | method | dim | R@1 (val) | MAP@R (val) | seeds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['condition']} | {r['method']} | {r['student_dim']} | {_cell(r, 'recall_at_1')} | "
        f"{_cell(r, 'mean_average_precision_at_r')} | {r['n_seeds']} |"
        for r in rows
    ]
    (out / "unlabelled.md").write_text("\n".join(lines) + "\n")
    (out / "unlabelled.json").write_text(json.dumps({"metadata": metadata, "rows": rows}, indent=1, default=str))
    print("\n".join(lines))
    return {"metadata": metadata, "rows": rows}


if __name__ == "__main__":
    main(get_args_parser().parse_args(), sys.argv[1:])
