"""Embedding transfer with DistributedDataParallel: a digits teacher -> a small student on every rank.

1. Each rank trains the same teacher (MLP, 64-d, PML's ProxyAnchorLoss on digits 0-4, full batch)
   and takes rank 0's weights, so every rank holds the same frozen teacher (it is not wrapped in DDP).
2. The student (MLP, 8-d) is wrapped in DistributedDataParallel and trained with pml_relaxed's
   EmbeddingTransfer: RelaxedContrastiveLoss inside DistributedTransferLossWrapper (every rank's
   loss and gradient are those of one process on the global batch of all ranks), batches from
   DistributedMPerClassSampler (class-balanced, a disjoint share per rank). Rank 0 prints the loss.
3. Rank 0 reports R@1 on digits 5-9 (classes never seen in training) for the teacher and the student.

Run:
    torchrun --nproc_per_node=2 examples/ddp_transfer.py --steps 3   # gloo on CPU, nccl on GPUs
    python examples/ddp_transfer.py --steps 3                        # one process, no process group
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os

import torch
import torch.distributed as dist
from pytorch_metric_learning.losses import ProxyAnchorLoss

from pml_relaxed.datasets import Digits
from pml_relaxed.distributed import DistributedTransferLossWrapper
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.samplers import DistributedMPerClassSampler
from pml_relaxed.trainers import EmbeddingTransfer


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="student training steps (global batches)")
    parser.add_argument("--batch-size", type=int, default=20, help="per-rank batch size")
    parser.add_argument("--teacher-steps", type=int, default=50, help="full-batch teacher training steps")
    parser.add_argument("--teacher-dim", type=int, default=64)
    parser.add_argument("--student-dim", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1.0)
    parser.add_argument("--efficient", action="store_true", help="local queries against the global batch")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def mlp(hidden: int, out_dim: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out_dim)
    )


def setup_distributed() -> torch.device:
    """Joins torchrun's process group (nccl on GPUs, gloo on CPU); returns this rank's device."""
    cuda = torch.cuda.is_available()
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def rank_and_world() -> tuple:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def class_balanced_sampler(
    labels: torch.Tensor, batch_size: int, world_size: int, length: int, seed: int
) -> DistributedMPerClassSampler:
    """m samples per class, the smallest m dividing the per-rank batch for which the global batch holds
    distinct classes (m * classes >= batch_size * world_size). With more ranks than that allows, each
    rank's batch is batch_size samples of one class (classes may repeat across ranks)."""
    num_classes = len(torch.unique(labels))
    for m in range(1, batch_size + 1):
        if batch_size % m == 0 and m * num_classes >= batch_size * world_size:
            return DistributedMPerClassSampler(labels, m, batch_size, length, seed=seed)
    return DistributedMPerClassSampler(labels, batch_size, None, length, seed=seed)


def train_teacher(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """PML's ProxyAnchorLoss on digits 0-4, full batch; then every rank takes rank 0's weights."""
    train = Digits("train")
    images, labels = train.images.to(device), train.labels.to(device)
    teacher = mlp(256, args.teacher_dim).to(device)
    proxy_loss = ProxyAnchorLoss(num_classes=10, embedding_size=args.teacher_dim).to(device)
    optimizer = torch.optim.Adam(list(teacher.parameters()) + list(proxy_loss.parameters()), lr=1e-3)
    for _ in range(args.teacher_steps):
        optimizer.zero_grad()
        proxy_loss(teacher(images), labels).backward()
        optimizer.step()
    if dist.is_initialized():
        for tensor in teacher.state_dict().values():
            dist.broadcast(tensor, src=0)
    return teacher.eval().requires_grad_(False)


def recall_at_1(model: torch.nn.Module, device: torch.device) -> float:
    embeddings, labels = compute_embeddings(model, Digits("test"), device=device, show_progress=False)
    return evaluate_embeddings(embeddings, labels, metrics=("recall_at_1",))["recall_at_1"]


def main(args: argparse.Namespace) -> dict:
    logging.getLogger("PML").setLevel(logging.ERROR)  # PML's notes on the optional keys (embedder, metric_loss)
    device = setup_distributed()
    rank, world_size = rank_and_world()
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    teacher = train_teacher(args, device)
    student = mlp(64, args.student_dim).to(device)
    ddp_student = student
    if dist.is_initialized():
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_student = torch.nn.parallel.DistributedDataParallel(student, device_ids=device_ids)
    train = Digits("train")
    length = args.steps * args.batch_size * world_size
    sampler = class_balanced_sampler(train.labels, args.batch_size, world_size, length, args.seed)
    losses = []

    def log_step(trainer: EmbeddingTransfer) -> None:
        loss = float(trainer.losses["total_loss"].detach())  # the global-batch loss, the same on every rank
        losses.append(loss)
        if rank == 0:
            print(f"step {len(losses)}/{args.steps}  loss {loss:.4f}", flush=True)

    trainer = EmbeddingTransfer(
        models={"trunk": ddp_student, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.Adam(student.parameters(), lr=args.lr)},
        batch_size=args.batch_size,
        loss_funcs={
            "transfer_loss": DistributedTransferLossWrapper(
                RelaxedContrastiveLoss(sigma=args.sigma, delta=args.delta), efficient=args.efficient
            )
        },
        dataset=train,
        sampler=sampler,
        iterations_per_epoch=args.steps,
        dataloader_num_workers=0,
        data_device=device,
        end_of_iteration_hook=log_step,
    )
    if rank == 0:
        backend = dist.get_backend() if dist.is_initialized() else "none (one process)"
        print(
            f"{world_size} rank(s), backend {backend}, global batch {args.batch_size * world_size}, "
            f"{'efficient' if args.efficient else 'full'} mode",
            flush=True,
        )
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-iteration progress bar
        trainer.train(num_epochs=1)
    results = {"losses": losses, "world_size": world_size}
    if rank == 0:
        results["teacher R@1"] = recall_at_1(teacher, device)
        results["student R@1"] = recall_at_1(student, device)
        print(
            f"digits 5-9 (unseen classes): R@1 teacher {results['teacher R@1']:.3f}, "
            f"student {results['student R@1']:.3f}",
            flush=True,
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
