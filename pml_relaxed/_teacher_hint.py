"""A clear error when a PML wrapper calls a teacher-fed loss or miner without the teacher.

PML's MultipleLosses, CrossBatchMemory, SelfSupervisedLoss and distributed wrappers call the losses and
miners they hold with PML's arguments only, so ``teacher_emb`` never arrives. When that happens, the
"teacher_emb is required" error names the PML wrapper found on the call stack and the pml_relaxed class
that passes the teacher on. The stack is read only on that error path: a normal call costs nothing.
"""

from __future__ import annotations

import sys
from typing import Optional

import torch
from pytorch_metric_learning.losses import CrossBatchMemory, MultipleLosses, SelfSupervisedLoss
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from . import _validation as v

# PML wrapper -> the pml_relaxed class that passes teacher_emb on.
_EQUIVALENTS = (
    (MultipleLosses, "pml_relaxed.losses.TransferMultipleLosses"),
    (CrossBatchMemory, "pml_relaxed.losses.TransferCrossBatchMemory"),
    (SelfSupervisedLoss, "pml_relaxed.losses.TransferSelfSupervisedLoss"),
    (DistributedLossWrapper, "pml_relaxed.distributed.DistributedTransferLossWrapper"),
    (DistributedMinerWrapper, "pml_relaxed.distributed.DistributedTransferMinerWrapper"),
)
_MAX_FRAMES = 16


def calling_pml_wrapper() -> Optional[tuple]:
    """``(wrapper, equivalent)`` for the nearest PML wrapper on the call stack, or None."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        frame = frame.f_back
        if frame is None:
            return None
        caller = frame.f_locals.get("self")
        if isinstance(caller, torch.nn.Module):
            for wrapper_class, equivalent in _EQUIVALENTS:
                if isinstance(caller, wrapper_class):
                    return caller, equivalent
    return None


def check_teacher_reached(teacher_emb: Optional[torch.Tensor], receiver: object) -> None:
    """Raises the "teacher_emb is required" ValueError naming the PML wrapper when one dropped the teacher.

    Does nothing when ``teacher_emb`` is given or no PML wrapper is on the call stack (the caller's own
    validation then reports a missing teacher_emb as usual).

    Raises:
        ValueError: ``teacher_emb`` is None and a PML wrapper called ``receiver``.
    """
    if teacher_emb is not None:
        return
    found = calling_pml_wrapper()
    if found is None:
        return
    wrapper, equivalent = found
    v.check_required(
        "teacher_emb",
        teacher_emb,
        f"PML's {type(wrapper).__name__} called {type(receiver).__name__} without it (PML's wrappers pass no "
        f"teacher); use {equivalent}, which passes teacher_emb to the losses and miners that take it",
    )
