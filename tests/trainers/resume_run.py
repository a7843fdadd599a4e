"""A small EmbeddingTransfer run checkpointed by PML's HookContainer, for tests/trainers/test_resume.py.

    PYTHONPATH=. python tests/trainers/resume_run.py CASE FOLDER EPOCHS [--kill-after K]

trains ``EPOCHS`` epochs of CASE (plain, ema, memory or ddp), resuming from the latest checkpoint in FOLDER
(``hooks.load_latest_saved_models``), and writes the final student and the epoch it started from to
``FOLDER/final.pth`` (under DDP, ``FOLDER/rank<r>/``). With ``--kill-after K`` its process group is SIGKILLed
right after epoch K's checkpoint is written. Every source of randomness is used: dropout, augmentation in
``__getitem__`` (torch, NumPy and Python), shuffling or a sampler, DataLoader workers (plain); Adam and an
lr scheduler hold optimizer state.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import logging
import multiprocessing
import os
import random
import signal
import socket

import numpy as np
import record_keeper  # noqa: F401 - imported by PML's get_record_keeper: here, so that a forkserver preloads it
import torch
import torch._dynamo  # noqa: F401 - likewise, imported by an optimizer's first add_param_group
import torch.distributed as dist
from pytorch_metric_learning import testers
from pytorch_metric_learning.utils import logging_presets
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch.utils import tensorboard  # noqa: F401 - likewise, by PML's get_record_keeper

from pml_relaxed.distributed import DistributedTransferLossWrapper
from pml_relaxed.evaluation import compute_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
from pml_relaxed.samplers import DistributedMPerClassSampler, NearestNeighbourBatchSampler
from pml_relaxed.similarities import ContextualSimilarity
from pml_relaxed.trainers import EmbeddingTransfer, register_training_state

CASES = ("plain", "ema", "memory", "ddp")
CPU = torch.device("cpu")
NUM_POINTS, DIM, NUM_CLASSES, EMBEDDING, TEACHER_EMBEDDING = 48, 6, 4, 4, 8
WORLD = 2


def points():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(NUM_POINTS, DIM, generator=gen), torch.arange(NUM_POINTS) % NUM_CLASSES


class NoisyPoints(torch.utils.data.Dataset):
    """The points with a random augmentation drawn from torch's, NumPy's and Python's global generators."""

    def __init__(self) -> None:
        self.data, self.labels = points()

    def __len__(self) -> int:
        return NUM_POINTS

    def __getitem__(self, index: int):
        noise = 0.1 * torch.randn(DIM) + torch.from_numpy(np.random.normal(0, 0.05, DIM)).float()
        return self.data[index] * (1 + 0.1 * random.random()) + noise, self.labels[index]


def student():
    trunk = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2))
    return trunk, torch.nn.Linear(16, EMBEDDING)


def end_of_epoch_hook(hooks, folder: str, kill_after, distributed: bool):
    """PML's end-of-epoch hook (test, save every model, optimizer, scheduler, loss, training state); after
    epoch ``kill_after``'s checkpoint, SIGKILL the whole process group (every rank, the spawning process)."""
    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1",), k=1),
        dataloader_num_workers=0,
        data_device=CPU,
    )
    val = torch.utils.data.TensorDataset(*points())
    pml_hook = hooks.end_of_epoch_hook(tester, {"val": val}, folder, test_interval=1)

    def hook(trainer) -> bool:
        keep_training = pml_hook(trainer)
        if trainer.epoch == kill_after:
            if distributed:
                dist.barrier()  # every rank has written its checkpoint
            if not distributed or dist.get_rank() == 0:
                os.killpg(os.getpgrp(), signal.SIGKILL)
        return keep_training

    return hook


def build_trainer(case: str, rank=None):
    torch.manual_seed(0)  # the same initial weights in every run (and on every rank)
    trunk, embedder = student()
    teacher = torch.nn.Linear(DIM, TEACHER_EMBEDDING).requires_grad_(False)
    dataset = NoisyPoints()
    models = {"trunk": trunk, "embedder": embedder, "teacher": teacher}
    transfer_loss = RelaxedContrastiveLoss()
    kwargs = {"batch_size": 12, "dataloader_num_workers": 0}
    if case == "plain":  # PML's default shuffling, augmentation in a DataLoader worker
        kwargs.update(dataloader_num_workers=1, data_and_label_getter=lambda batch: (batch[0], None))
    elif case == "ema":  # STML: EMA teacher, contextual similarity, nearest-neighbour batches of the student
        del models["teacher"]
        transfer_loss = RelaxedContrastiveLoss(similarity=ContextualSimilarity(k=3))
        model = torch.nn.Sequential(trunk, embedder)

        def embed():
            return compute_embeddings(model, torch.utils.data.TensorDataset(dataset.data), show_progress=False)[0]

        sampler = NearestNeighbourBatchSampler(embed, batch_size=12, neighbours_per_query=3, seed=1)
        kwargs.update(sampler=sampler, ema_momentum=0.9, data_and_label_getter=lambda batch: (batch[0], None))
    elif case == "memory":  # a cross-batch memory that wraps around (48 rows per epoch, 20 slots)
        transfer_loss = TransferCrossBatchMemory(transfer_loss, EMBEDDING, TEACHER_EMBEDDING, memory_size=20)
        kwargs.update(sampler=DistributedMPerClassSampler(dataset.labels, 3, 12, NUM_POINTS, num_replicas=1, rank=0))
    else:  # DDP: each rank trains on its share of class-balanced global batches
        models.update(
            trunk=torch.nn.parallel.DistributedDataParallel(trunk),
            embedder=torch.nn.parallel.DistributedDataParallel(embedder),
        )
        transfer_loss = DistributedTransferLossWrapper(transfer_loss)
        sampler = DistributedMPerClassSampler(dataset.labels, 3, 6, NUM_POINTS, num_replicas=WORLD, rank=rank)
        kwargs.update(batch_size=6, sampler=sampler)
        torch.manual_seed(1 + rank)  # the ranks' generators differ (dropout, augmentation)
    optimizers = {
        "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=0.01),
        "embedder_optimizer": torch.optim.Adam(embedder.parameters(), lr=0.01),
    }
    np.random.seed(0)
    random.seed(0)
    return EmbeddingTransfer(
        models=models,
        optimizers=optimizers,
        lr_schedulers={"trunk_scheduler_by_epoch": torch.optim.lr_scheduler.StepLR(optimizers["trunk_optimizer"], 1)},
        loss_funcs={"transfer_loss": transfer_loss},
        dataset=dataset,
        data_device=CPU,
        **kwargs,
    ), (trunk, embedder)


def run(case: str, folder: str, epochs: int, kill_after=None, rank=None) -> None:
    logging.getLogger("PML").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    distributed = rank is not None
    if distributed:
        folder = os.path.join(folder, f"rank{rank}")  # each rank saves (and resumes) its own random state
    trainer, (trunk, embedder) = build_trainer(case, rank)
    keeper, _, _ = logging_presets.get_record_keeper(os.path.join(folder, "logs"))
    hooks = logging_presets.get_hook_container(keeper, primary_metric="precision_at_1")
    trainer.end_of_epoch_hook = end_of_epoch_hook(hooks, folder, kill_after, distributed)
    register_training_state(hooks, trainer)
    start_epoch = hooks.load_latest_saved_models(trainer, folder, device=CPU)
    with contextlib.redirect_stderr(io.StringIO()):  # PML's progress bars
        trainer.train(start_epoch, epochs)
    final = {"start_epoch": start_epoch, "trunk": trunk.state_dict(), "embedder": embedder.state_dict()}
    torch.save(final, os.path.join(folder, "final.pth"))


def _rank_entry(rank: int, port: int, case: str, folder: str, epochs: int, kill_after) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=datetime.timedelta(60)
    )
    try:
        run(case, folder, epochs, kill_after, rank)
    finally:
        dist.destroy_process_group()


def main(case: str, folder: str, epochs: int, kill_after=None, start_method: str = "spawn") -> None:
    """Runs CASE (the ddp case on WORLD gloo processes started with ``start_method``)."""
    if case != "ddp":
        run(case, folder, epochs, kill_after)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = (port, case, folder, epochs, kill_after)
    torch.multiprocessing.start_processes(_rank_entry, args=args, nprocs=WORLD, start_method=start_method)


def main_in_own_process_group(case: str, folder: str, epochs: int, kill_after, log: str) -> None:
    """:func:`main` as a process of its own group (what ``--kill-after`` kills), its output in ``log``; the
    ranks are forked (this process, started by a forkserver, has imported everything and trained nothing)."""
    os.setpgid(0, 0)
    multiprocessing.set_start_method("fork", force=True)  # DataLoader workers as on Linux (not the forkserver's)
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    main(case, folder, epochs, kill_after, start_method="fork")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=CASES)
    parser.add_argument("folder")
    parser.add_argument("epochs", type=int)
    parser.add_argument("--kill-after", type=int, default=None)
    cli = parser.parse_args()
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # --kill-after kills this process group: the run's own, not the caller's
    main(cli.case, cli.folder, cli.epochs, cli.kill_after)
