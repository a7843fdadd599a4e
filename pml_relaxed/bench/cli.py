"""``pml-relaxed bench``: settings x methods x seeds -> runs.jsonl, results.{json,csv,md} and plots."""
from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import torch

from .data import IMAGE_DATASETS
from .paper_data import PAPER_DATASETS, paper_data
from .text_data import banking77_data

DATASETS = {
    **IMAGE_DATASETS,
    "banking77": banking77_data,
    **{name: functools.partial(paper_data, name) for name in PAPER_DATASETS},
}
from .methods import DEFAULT_METHODS, METHODS, QUICK_METHODS

QUICK = {"epochs_scale": 0.5, "seeds": 2}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pml-relaxed bench",
        description="Embedding transfer against PML's label losses and other transfer methods, on unseen classes.",
        add_help=add_help,
    )
    parser.add_argument("--dataset", default="digits", help=f"one of {sorted(DATASETS)}")
    parser.add_argument("--data-root", default=None,
                        help="folder holding the dataset (default: the dataset's own variable, e.g. "
                             "$PML_RELAXED_OMNIGLOT, else $PML_RELAXED_DATA/<dataset>, else "
                             "~/.cache/pml_relaxed/<dataset>)")
    parser.add_argument("--quick", action="store_true", help="a few-minute run: fewer methods, 2 seeds, half the epochs")
    parser.add_argument("--settings", nargs="+", default=None, help="self_transfer, dim_reduction, compression (default: all)")
    parser.add_argument("--methods", nargs="+", default=None, help=f"default: all of {list(DEFAULT_METHODS)}")
    parser.add_argument("--seeds", type=int, default=3, help="number of student seeds")
    parser.add_argument("--seed", type=int, default=0, help="first student seed")
    parser.add_argument("--teacher-loss", default="ProxyAnchorLoss", help="PML loss class that trains the teacher")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default: per dataset)")
    parser.add_argument("--teacher-lr", type=float, default=None,
                        help="teacher learning rate (default: per dataset; --lr sets the students' only)")
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--teacher-dir", default=None, help="where trained teachers are cached (default: --output-dir)")
    parser.add_argument("--teacher-checkpoint", default=None,
                        help="load the teacher's state_dict from this file instead of training one")
    parser.add_argument("--epochs", type=int, default=None, help="student epochs (default: per dataset)")
    parser.add_argument("--batch-size", type=int, default=None, help="items per batch before views")
    parser.add_argument("--m", type=int, default=None, help="items per class in a batch (MPerClassSampler)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--views", type=int, default=2, help="augmented views of each item in a batch")
    parser.add_argument("--sigma", type=float, default=1.0, help="relaxed-label bandwidth")
    parser.add_argument("--delta", type=float, default=1.0, help="relaxed-contrastive margin")
    parser.add_argument("--normalize-student", action=argparse.BooleanOptionalAction, default=False,
                        help="relaxed losses measure the student's distances on L2-normalised embeddings")
    parser.add_argument("--label-weight", type=float, default=0.5,
                        help="relaxed_contrastive+labels: weight of same-class labels in the relaxed labels")
    parser.add_argument("--rkd-angle-weight", type=float, default=2.0,
                        help="rkd: weight of the angle-wise term (distance-wise weight 1; Park et al.: 2)")
    parser.add_argument("--pos-topk", type=int, default=1, help="TeacherSimilarityMiner positives per anchor")
    parser.add_argument("--val-classes", type=int, default=0,
                        help="hold out this many training classes and evaluate on them (model selection)")
    parser.add_argument("--val-alphabets", type=int, default=0,
                        help="omniglot: hold out this many whole training alphabets instead (split 'val-alphabets')")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation-class draw")
    parser.add_argument("--eval-normalize", action=argparse.BooleanOptionalAction, default=True,
                        help="L2-normalise embeddings before retrieval")
    parser.add_argument("--text-hidden-dim", type=int, default=None,
                        help="banking77 student: width of the hashed n-gram embeddings (default 64)")
    parser.add_argument("--text-mlp", type=int, nargs="*", default=None,
                        help="banking77 student: hidden widths of the MLP head (default 256; none: linear head)")
    parser.add_argument("--text-init-std", type=float, default=None,
                        help="banking77 student: std of the n-gram embeddings' initialisation (default 0.1)")
    parser.add_argument("--text-ngram-dropout", type=float, default=0.0,
                        help="banking77: drop each hashed n-gram id of a training view with this probability, so "
                             "a text's two views differ (NgramDropout; the cached teacher sees the whole text)")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "conv4"],
                        help="cub/cars/sop: torchvision ImageNet ResNets (paper) or a from-scratch Conv-4")
    parser.add_argument("--image-size", type=int, default=224, help="cub/cars/sop input size")
    parser.add_argument("--download", action="store_true", help="cub/cars/sop: let PML download the data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", default=None, help="default: results/<dataset>[_val]")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument("--workers", type=int, default=1,
                        help="train the (setting, method) jobs in this many parallel processes (a GPU or many cores)")
    parser.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True,
                        help="measure single-thread inference items/s of the teacher and the students; "
                             "--no-throughput records none (model selection: a sentence-transformers "
                             "teacher's measurement alone takes over a minute on a CPU)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the report of the runs already in --output-dir/runs.jsonl")
    parser.add_argument("--no-report", action="store_true",
                        help="only train and append to runs.jsonl (the report is written by a later call)")
    return parser


def _check_args(args: argparse.Namespace, settings: List[str]) -> None:
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods has unknown name(s) {unknown}; expected some of {list(METHODS)}")
    unknown = [s for s in args.settings if s not in settings]
    if unknown:
        raise ValueError(f"--settings has unknown name(s) {unknown}; expected some of {settings}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}")
    if args.views < 1:
        raise ValueError(f"--views must be >= 1; got {args.views}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if args.report_only and args.no_report:
        raise ValueError("--report-only and --no-report exclude each other; got both")


def held_out_args(args: argparse.Namespace) -> List[str]:
    """The bench options that pick the validation classes (for scripts that call the bench): whole
    alphabets if ``args.val_alphabets`` is set, else ``args.val_classes`` classes."""
    if args.val_alphabets:
        return ["--val-alphabets", str(args.val_alphabets)]
    return ["--val-classes", str(args.val_classes)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {gpu}, {platform.platform()}"


def versions() -> dict:
    import faiss
    import pytorch_metric_learning

    from .. import __version__

    return {"pml_relaxed": __version__, "torch": torch.__version__, "pytorch_metric_learning":
            pytorch_metric_learning.__version__, "faiss": faiss.__version__, "python": platform.python_version()}


def main(args: argparse.Namespace, argv: Optional[List[str]] = None) -> List[Path]:
    """Runs the benchmark and writes its outputs; returns the written paths (none with ``--no-report``)."""
    from .report import write_results
    from .runner import load_done, run_all

    if args.dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {sorted(DATASETS)}; got {args.dataset!r}")
    if args.val_alphabets and args.val_classes:
        raise ValueError(f"--val-alphabets and --val-classes exclude each other; got {args.val_alphabets} "
                         f"and {args.val_classes}")
    if args.val_alphabets and args.dataset != "omniglot":
        raise ValueError(f"--val-alphabets needs classes grouped in alphabets (--dataset omniglot); "
                         f"got --dataset {args.dataset}")
    text_options = [flag for flag, value in (("--text-hidden-dim", args.text_hidden_dim), ("--text-mlp", args.text_mlp),
                                             ("--text-init-std", args.text_init_std)) if value is not None]
    if args.text_ngram_dropout != 0:
        text_options.append("--text-ngram-dropout")
    if text_options and args.dataset != "banking77":
        raise ValueError(f"{', '.join(text_options)} shape the text student (--dataset banking77); "
                         f"got --dataset {args.dataset}")
    data = DATASETS[args.dataset](args)
    if args.quick:
        args.methods = args.methods or list(QUICK_METHODS)
        args.seeds = min(args.seeds, QUICK["seeds"])
        args.epochs = args.epochs or max(1, round(data.defaults["epochs"] * QUICK["epochs_scale"]))
        args.teacher_epochs = args.teacher_epochs or max(1, round(data.defaults["teacher_epochs"] * QUICK["epochs_scale"]))
    args.methods = args.methods or list(DEFAULT_METHODS)
    args.settings = args.settings or list(data.settings)
    _check_args(args, list(data.settings))
    held_out = args.val_classes or args.val_alphabets
    args.output_dir = args.output_dir or str(Path("results") / f"{args.dataset}{'_val' if held_out else ''}")
    if args.report_only:
        records = load_done(Path(args.output_dir) / "runs.jsonl")
        if not records:
            raise FileNotFoundError(f"--report-only needs the runs of an earlier call; found none in "
                                    f"{Path(args.output_dir) / 'runs.jsonl'}")
    else:
        records = run_all(data, args)
    if args.no_report:
        return []
    command = "pml-relaxed bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:]))
    metadata = {
        "command": command,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "eval_split": data.eval_split,
        "train_items": len(data.train),
        "eval_items": len(data.evaluation),
        # the FAISS backend ("gpu" / "cpu") of the recorded runs' evaluation ("unrecorded": older runs)
        "faiss_backend": ", ".join(sorted({r.get("hparams", {}).get("faiss_backend", "unrecorded") for r in records})),
    }
    paths = write_results(records, Path(args.output_dir), metadata)
    print(Path(args.output_dir, "results.md").read_text())
    return paths
