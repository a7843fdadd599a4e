"""A PML trainer that trains a student from a frozen teacher (the only module tied to PML 2.x's trainers)."""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from pytorch_metric_learning.trainers import MetricLossOnly
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import distributed as pml_distributed

from ..distributed import DistributedTransferLossWrapper, DistributedTransferMinerWrapper


def takes_teacher(func: Any) -> bool:
    """True if a loss or miner accepts ``teacher_emb=`` (pml_relaxed's losses and miners do).

    pml_relaxed's distributed wrappers are looked through: a wrapper takes the teacher when what it wraps does.
    """
    if isinstance(func, DistributedTransferLossWrapper):
        func = func.loss
    elif isinstance(func, DistributedTransferMinerWrapper):
        func = func.miner
    target = func.forward if isinstance(func, torch.nn.Module) else func
    try:
        return "teacher_emb" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


class EmbeddingTransfer(MetricLossOnly):
    """PML's MetricLossOnly plus a frozen teacher whose embeddings feed the transfer loss and miner.

    models:
        ``trunk`` (+ optional ``embedder``): the student; ``teacher``: any nn.Module mapping a batch of
        inputs to teacher embeddings. The teacher runs in eval mode under no_grad on exactly the batch
        the student sees (same augmentation), is always in ``freeze_these``, needs no optimizer and is
        never stepped.
    loss_funcs:
        ``transfer_loss`` (required): a pml_relaxed loss (called with ``teacher_emb=``), or any PML pair
        loss when the ``tuple_miner`` is teacher-based (e.g. TeacherSimilarityMiner). ``metric_loss``
        (optional): any PML label loss on the student embeddings. Combined with PML's ``loss_weights``.
    mining_funcs:
        ``tuple_miner``: its pairs go to the transfer loss; it receives ``teacher_emb=`` when it takes
        it. ``subset_batch_miner`` works as in PML.

    Everything else (samplers, lr schedulers, hooks, logging presets, testers) is PML's.
    Under torchrun with DistributedDataParallel: wrap the student (trunk, embedder) in DDP and not the
    teacher, wrap the losses and the miner in :mod:`pml_relaxed.distributed`'s wrappers (looked through
    here) and use a distributed sampler such as :class:`pml_relaxed.samplers.DistributedMPerClassSampler`
    (see ``examples/ddp_transfer.py``).
    For multi-view batches use :class:`pml_relaxed.datasets.MultiViewDataset` with
    ``collate_fn=pml_relaxed.datasets.multi_view_collate``.

    Raises:
        ValueError: a transfer_loss that takes no teacher_emb without a teacher-based tuple_miner; a
            teacher-fed loss or miner inside PML's DistributedLossWrapper / DistributedMinerWrapper.
    """

    def custom_setup(self) -> None:
        if "teacher" not in self.freeze_these:
            self.freeze_these = tuple(self.freeze_these) + ("teacher",)
        transfer_loss = self.loss_funcs.get("transfer_loss")
        miner = self.mining_funcs.get("tuple_miner")
        for wrapper, inner, ours in (
            (transfer_loss, "loss", "DistributedTransferLossWrapper"),
            (miner, "miner", "DistributedTransferMinerWrapper"),
        ):
            if isinstance(wrapper, (pml_distributed.DistributedLossWrapper, pml_distributed.DistributedMinerWrapper)):
                if takes_teacher(getattr(wrapper, inner)):
                    raise ValueError(
                        f"PML's {type(wrapper).__name__} neither gathers nor passes teacher_emb; wrap "
                        f"{type(getattr(wrapper, inner)).__name__} in pml_relaxed.distributed.{ours} instead"
                    )
        if transfer_loss is not None and not takes_teacher(transfer_loss):
            if miner is None or not takes_teacher(miner):
                raise ValueError(
                    f"transfer_loss {type(transfer_loss).__name__} takes no teacher_emb, so it needs a teacher-based "
                    "tuple_miner (e.g. pml_relaxed.miners.TeacherSimilarityMiner) in mining_funcs; got "
                    f"{type(miner).__name__ if miner is not None else 'no tuple_miner'}"
                )

    def modify_schema(self) -> None:
        self.schema["models"].keys += ["teacher"]
        self.schema["models"].essential += ["teacher"]
        self.schema["loss_funcs"].keys += ["transfer_loss"]
        self.schema["loss_funcs"].essential = ["transfer_loss"]
        self.schema["optimizers"].important = c_f.append_map(
            [k for k in self.models.keys() if k != "teacher"], "_optimizer"
        )

    def compute_teacher_embeddings(self, data: Any) -> torch.Tensor:
        teacher = self.models["teacher"]
        teacher.eval()
        with torch.no_grad():
            return teacher(c_f.to_device(data, device=self.data_device, dtype=self.dtype))

    def calculate_loss(self, curr_batch) -> None:
        data, labels = curr_batch
        embeddings = self.compute_embeddings(data)
        teacher_emb = self.compute_teacher_embeddings(data)
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels, teacher_emb)
        self.losses["transfer_loss"] = self.get_transfer_loss(embeddings, labels, indices_tuple, teacher_emb)
        if "metric_loss" in self.loss_funcs:
            self.losses["metric_loss"] = self.maybe_get_metric_loss(embeddings, labels, None)

    def maybe_mine_embeddings(
        self, embeddings: torch.Tensor, labels: torch.Tensor, teacher_emb: Optional[torch.Tensor] = None
    ):
        miner = self.mining_funcs.get("tuple_miner")
        if miner is None:
            return None
        if takes_teacher(miner):
            return miner(embeddings, labels, teacher_emb=teacher_emb)
        return miner(embeddings, labels)

    def get_transfer_loss(self, embeddings, labels, indices_tuple, teacher_emb):
        if self.loss_weights.get("transfer_loss", 0) == 0:
            return 0
        loss_fn = self.loss_funcs["transfer_loss"]
        if takes_teacher(loss_fn):
            return loss_fn(embeddings, labels, indices_tuple, teacher_emb=teacher_emb)
        return loss_fn(embeddings, None, indices_tuple)
