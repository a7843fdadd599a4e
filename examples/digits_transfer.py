"""Embedding transfer end to end on scikit-learn's digits, with PML's trainers, sampler and tester.

1. A teacher (MLP, 64-d) is trained with PML's ProxyAnchorLoss on digits 0-4.
2. A smaller student (MLP, 8-d) learns from the frozen teacher with RelaxedContrastiveLoss in
   pml_relaxed's EmbeddingTransfer trainer (two augmented views of each image per batch, no labels).
3. The same student is trained from scratch with ProxyAnchorLoss, for comparison.
All three are evaluated on digits 5-9, never seen in training (PML's tester with an AccuracyCalculator:
Recall@K for K = 1..32 and MAP@R). Each training shows one progress bar (epochs, loss); a Recall@K plot
of the three models is saved to --plot-path.

Run:  python examples/digits_transfer.py            (about a minute on a 2-core CPU)
      python examples/digits_transfer.py --plot-path results/recall.png
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from matplotlib.figure import Figure
from pytorch_metric_learning import losses, samplers, testers, trainers
from tqdm import tqdm

from pml_relaxed.datasets import Digits, MultiViewDataset, multi_view_collate
from pml_relaxed.datasets.transforms import Compose, GaussianNoise, RandomAffine
from pml_relaxed.evaluation import RecallAtKCalculator
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.trainers import EmbeddingTransfer

CPU = torch.device("cpu")
KS = (1, 2, 4, 8, 16, 32)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-dim", type=int, default=64)
    parser.add_argument("--student-dim", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--student-epochs", type=int, default=20)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot-path",
        type=Path,
        default=Path("digits_recall_at_k.png"),
        help="where to save the Recall@K plot (PNG; default: the current directory)",
    )
    return parser


class EpochProgress:
    """One tqdm bar per training, advanced by PML's trainer hooks (PML's own bars, one per epoch, are hidden)."""

    def __init__(self, desc: str, epochs: int, stream: TextIO | None) -> None:
        self.bar = tqdm(total=epochs, desc=desc, unit="epoch", file=stream, dynamic_ncols=True)
        self.last_loss = float("nan")

    def end_of_iteration_hook(self, trainer) -> None:
        loss = trainer.losses["total_loss"]
        self.last_loss = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)

    def end_of_epoch_hook(self, trainer) -> bool:
        self.bar.set_postfix(loss=f"{self.last_loss:.4f}", refresh=False)
        self.bar.update(1)
        return True

    def hooks(self) -> dict:
        return {"end_of_iteration_hook": self.end_of_iteration_hook, "end_of_epoch_hook": self.end_of_epoch_hook}


def mlp(hidden: int, out_dim: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, hidden),
        torch.nn.BatchNorm1d(hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, out_dim),
    )


def augment() -> Compose:
    return Compose([RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(0.05)])


def train_with_labels(model: torch.nn.Module, out_dim: int, epochs: int, progress: EpochProgress) -> None:
    """PML's MetricLossOnly with ProxyAnchorLoss on the training classes (digits 0-4)."""
    train = Digits("train", transform=augment())
    loss = losses.ProxyAnchorLoss(num_classes=10, embedding_size=out_dim)
    trainer = trainers.MetricLossOnly(
        models={"trunk": model},
        optimizers={
            "trunk_optimizer": torch.optim.Adam(model.parameters(), lr=1e-3),
            "metric_loss_optimizer": torch.optim.Adam(loss.parameters(), lr=1e-2),
        },
        batch_size=60,
        loss_funcs={"metric_loss": loss},
        dataset=train,
        sampler=samplers.MPerClassSampler(train.labels, m=6, length_before_new_iter=len(train)),
        dataloader_num_workers=0,
        data_device=CPU,
        **progress.hooks(),
    )
    trainer.train(num_epochs=epochs)
    progress.bar.close()


def train_with_teacher(
    student: torch.nn.Module, teacher: torch.nn.Module, args: argparse.Namespace, progress: EpochProgress
) -> None:
    """pml_relaxed's EmbeddingTransfer: the frozen teacher labels every pair of the batch."""
    train = MultiViewDataset(Digits("train"), transform=augment(), num_views=2)
    trainer = EmbeddingTransfer(
        models={"trunk": student, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.Adam(student.parameters(), lr=1e-3)},
        batch_size=30,  # 30 images x 2 views = 60 embeddings per batch
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(sigma=args.sigma, delta=args.delta)},
        dataset=train,
        sampler=samplers.MPerClassSampler(train.labels, m=3, length_before_new_iter=len(train)),
        collate_fn=multi_view_collate,
        dataloader_num_workers=0,
        data_device=CPU,
        **progress.hooks(),
    )
    trainer.train(num_epochs=args.student_epochs)
    progress.bar.close()


def evaluate(model: torch.nn.Module) -> dict:
    """R@1 (PML's precision_at_1), MAP@R and Recall@K on digits 5-9, leave-one-out retrieval."""
    recall_names = tuple(f"recall_at_{k}" for k in KS)
    tester = testers.GlobalEmbeddingSpaceTester(
        accuracy_calculator=RecallAtKCalculator(
            ks=KS, include=("precision_at_1", "mean_average_precision_at_r") + recall_names, device=CPU
        ),
        dataloader_num_workers=0,
        data_device=CPU,
    )
    accuracies = tester.test({"test": Digits("test")}, 1, model, torch.nn.Identity())["test"]
    return {
        "R@1": accuracies["precision_at_1_level0"],
        "MAP@R": accuracies["mean_average_precision_at_r_level0"],
        "recall_at_k": {k: accuracies[f"recall_at_{k}_level0"] for k in KS},
    }


def save_recall_plot(results: dict, path: Path) -> Path:
    """Recall@K of every model on one plot, written with matplotlib's Agg canvas (no display needed)."""
    figure = Figure(figsize=(6.4, 4.0), layout="tight")
    ax = figure.subplots()
    for name, scores in results.items():
        ax.plot(
            KS,
            [100 * scores["recall_at_k"][k] for k in KS],
            marker="o",
            label=name,
            linestyle="--" if name.startswith("teacher") else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_title("digits, unseen classes 5-9")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def main(args: argparse.Namespace) -> dict:
    logging.getLogger("PML").setLevel(logging.WARNING)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # PML's MPerClassSampler draws from numpy's global generator
    results = {}
    stream = sys.stderr  # the progress bars' stream, kept before PML's own bars are silenced
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-epoch and tester progress bars
        teacher = mlp(256, args.teacher_dim)
        progress = EpochProgress(f"teacher ({args.teacher_dim}-d, ProxyAnchor)", args.teacher_epochs, stream)
        train_with_labels(teacher, args.teacher_dim, args.teacher_epochs, progress)
        results[f"teacher ({args.teacher_dim}-d, ProxyAnchor)"] = evaluate(teacher)

        torch.manual_seed(args.seed + 1)
        np.random.seed(args.seed + 1)
        student = mlp(64, args.student_dim)
        progress = EpochProgress(f"student ({args.student_dim}-d, from teacher)", args.student_epochs, stream)
        train_with_teacher(student, teacher, args, progress)
        results[f"student ({args.student_dim}-d, RelaxedContrastive from teacher)"] = evaluate(student)

        torch.manual_seed(args.seed + 1)
        np.random.seed(args.seed + 1)
        scratch = mlp(64, args.student_dim)
        progress = EpochProgress(f"student ({args.student_dim}-d, from scratch)", args.student_epochs, stream)
        train_with_labels(scratch, args.student_dim, args.student_epochs, progress)
        results[f"student ({args.student_dim}-d, ProxyAnchor from scratch)"] = evaluate(scratch)

    width = max(len(name) for name in results)
    print(f"digits, unseen classes 5-9 ({len(Digits('test'))} images), seed {args.seed}")
    print(f"{'model':<{width}}  {'R@1':>6}  {'MAP@R':>6}")
    for name, scores in results.items():
        print(f"{name:<{width}}  {scores['R@1']:6.3f}  {scores['MAP@R']:6.3f}")
    plot = save_recall_plot(results, args.plot_path)
    print(f"Recall@K plot saved to {plot.resolve()}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
