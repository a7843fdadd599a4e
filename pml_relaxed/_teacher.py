"""The one teacher-routing rule: which callee reads the teacher, what it is given, and who to blame when none came.

Every pml_relaxed object that calls other losses or miners (TransferMultipleLosses, TransferCrossBatchMemory,
TransferSelfSupervisedLoss, the distributed wrappers, the EmbeddingTransfer trainer) decides with
:func:`takes_teacher` whether a callee reads the teacher and builds the callee's teacher arguments with
:func:`teacher_kwargs`, so a ``teacher_ref_emb`` that a callee cannot use raises everywhere instead of
being dropped by some wrappers. :func:`check_teacher_reached` turns the "teacher_emb is required" error
of a loss or miner called by PML's wrappers or trainers (which pass no teacher) into one that names them
and the pml_relaxed class to use instead.

Kept outside :mod:`pml_relaxed.losses` and :mod:`pml_relaxed.trainers` so that both can import it without
the losses depending on the trainers.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Optional

import torch
from pytorch_metric_learning.losses import CrossBatchMemory, MultipleLosses, SelfSupervisedLoss
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from . import _validation as v

__all__ = [
    "takes_keyword",
    "takes_teacher",
    "teacher_kwargs",
    "pml_equivalent",
    "calling_pml_wrapper",
    "check_teacher_reached",
]

#: PML wrapper -> the pml_relaxed class that passes teacher_emb on
PML_EQUIVALENTS = (
    (MultipleLosses, "pml_relaxed.losses.TransferMultipleLosses"),
    (CrossBatchMemory, "pml_relaxed.losses.TransferCrossBatchMemory"),
    (SelfSupervisedLoss, "pml_relaxed.losses.TransferSelfSupervisedLoss"),
    (DistributedLossWrapper, "pml_relaxed.distributed.DistributedTransferLossWrapper"),
    (DistributedMinerWrapper, "pml_relaxed.distributed.DistributedTransferMinerWrapper"),
)
#: PML's trainers pass no teacher; this one does
TRAINER_EQUIVALENT = "pml_relaxed.trainers.EmbeddingTransfer"
_MAX_FRAMES = 16


def takes_keyword(func: Any, name: str) -> bool:
    """True if ``func`` (a callable, or an ``nn.Module`` through its ``forward``) accepts the argument ``name``.

    A ``**kwargs`` catch-all does not count: only an argument spelled ``name`` does.

    Examples:
        >>> from pytorch_metric_learning.losses import ContrastiveLoss
        >>> takes_keyword(ContrastiveLoss(), "ref_emb"), takes_keyword(ContrastiveLoss(), "teacher_emb")
        (True, False)
    """
    target = func.forward if isinstance(func, torch.nn.Module) else func
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(name)
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def takes_teacher(func: Any) -> bool:
    """True if a loss or miner reads ``teacher_emb=`` (pml_relaxed's losses, miners and combinators do).

    A wrapper that passes the teacher on only when what it wraps reads it (the distributed wrappers) names
    that object in its ``teacher_passthrough`` attribute, and is looked through.

    Examples:
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> takes_teacher(RelaxedContrastiveLoss())
        True
    """
    wrapped = getattr(func, "teacher_passthrough", None)
    if wrapped is not None:
        return takes_teacher(wrapped)
    return takes_keyword(func, "teacher_emb")


def teacher_kwargs(
    callee: Any,
    teacher_emb: Optional[torch.Tensor],
    teacher_ref_emb: Optional[torch.Tensor],
    ref_emb: Optional[torch.Tensor] = None,
) -> dict:
    """The teacher keyword arguments a wrapper passes to ``callee``: the rule every pml_relaxed wrapper follows.

    - A callee that reads no teacher (:func:`takes_teacher` is False: a PML loss or miner) gets none; the
      teacher reaches it through a teacher-based miner's pairs.
    - A callee that reads it gets ``teacher_emb``, and ``teacher_ref_emb`` when one is given. A
      ``teacher_ref_emb`` describes the reference set ``ref_emb``, so it needs one, and a callee whose
      forward takes no ``teacher_ref_emb`` (a cross-batch memory: its reference set is its queue) cannot
      use it: both raise instead of the teacher of the reference set being dropped.

    Args:
        callee: the loss or miner about to be called.
        teacher_emb: the teacher's embeddings of the queries, or None.
        teacher_ref_emb: the teacher's embeddings of the reference set, or None.
        ref_emb: the student's reference set passed beside it, or None.

    Returns:
        ``{}``, ``{"teacher_emb": ...}`` or ``{"teacher_emb": ..., "teacher_ref_emb": ...}``.

    Raises:
        ValueError: a ``teacher_ref_emb`` for a teacher-reading callee that takes none, or without ``ref_emb``.

    Examples:
        >>> import torch
        >>> from pytorch_metric_learning.losses import ContrastiveLoss
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
        >>> teacher = torch.randn(4, 3)
        >>> teacher_kwargs(ContrastiveLoss(), teacher, None)
        {}
        >>> list(teacher_kwargs(RelaxedContrastiveLoss(), teacher, None))
        ['teacher_emb']
        >>> memory = TransferCrossBatchMemory(RelaxedContrastiveLoss(), 2, 3)
        >>> teacher_kwargs(memory, teacher, teacher)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: TransferCrossBatchMemory takes teacher_emb but no teacher_ref_emb: it is a cross-batch memory, ...
    """
    if not takes_teacher(callee):
        return {}
    kwargs = {"teacher_emb": teacher_emb}
    if teacher_ref_emb is None:
        return kwargs
    name = type(callee).__name__
    if not takes_keyword(callee, "teacher_ref_emb"):
        reason = "it has no reference set of its own"
        if takes_keyword(callee, "enqueue_mask"):
            reason = (
                "it is a cross-batch memory, whose reference set is its queue (it keeps the teacher's embeddings of "
                "the queued rows itself); leave teacher_ref_emb (and ref_emb) out"
            )
        raise ValueError(f"{name} takes teacher_emb but no teacher_ref_emb: {reason}; got teacher_ref_emb")
    v.check_teacher_ref_emb(ref_emb, teacher_ref_emb)
    kwargs["teacher_ref_emb"] = teacher_ref_emb
    return kwargs


def pml_equivalent(module: object) -> Optional[str]:
    """The pml_relaxed class that replaces ``module`` when it is one of PML's wrappers, else None.

    Examples:
        >>> from pytorch_metric_learning.losses import ContrastiveLoss, MultipleLosses
        >>> pml_equivalent(MultipleLosses([ContrastiveLoss()])), pml_equivalent(ContrastiveLoss())
        ('pml_relaxed.losses.TransferMultipleLosses', None)
    """
    for wrapper_class, equivalent in PML_EQUIVALENTS:
        if isinstance(module, wrapper_class):
            return equivalent
    return None


def _pml_trainer(caller: object) -> bool:
    """True for an instance of one of PML's trainers, not of a pml_relaxed subclass (EmbeddingTransfer)."""
    trainers = sys.modules.get("pytorch_metric_learning.trainers")  # a trainer on the stack imported it
    if trainers is None or not isinstance(caller, trainers.BaseTrainer):
        return False
    return not any(cls.__module__.startswith("pml_relaxed") for cls in type(caller).__mro__)


def calling_pml_wrapper() -> Optional[tuple]:
    """``(caller, equivalent)`` for the nearest PML wrapper or PML trainer on the call stack, or None."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        frame = frame.f_back
        if frame is None:
            return None
        caller = frame.f_locals.get("self")
        if isinstance(caller, torch.nn.Module):
            equivalent = pml_equivalent(caller)
            if equivalent is not None:
                return caller, equivalent
        elif caller is not None and _pml_trainer(caller):
            return caller, TRAINER_EQUIVALENT
    return None


def check_teacher_reached(teacher_emb: Optional[torch.Tensor], receiver: object) -> None:
    """Raises the "teacher_emb is required" ValueError naming the PML wrapper or trainer that dropped the teacher.

    Does nothing when ``teacher_emb`` is given or no PML wrapper or trainer is on the call stack (the
    caller's own validation then reports a missing teacher_emb as usual). The stack is read only then:
    a normal call costs nothing.

    Raises:
        ValueError: ``teacher_emb`` is None and a PML wrapper or trainer called ``receiver``.
    """
    if teacher_emb is not None:
        return
    found = calling_pml_wrapper()
    if found is None:
        return
    caller, equivalent = found
    if equivalent == TRAINER_EQUIVALENT:
        hint = (
            f"PML's trainer {type(caller).__name__} called {type(receiver).__name__} without it (PML's trainers run "
            f"no teacher); use {equivalent}, which runs the frozen teacher on every batch and passes teacher_emb to "
            "loss_funcs['transfer_loss'] and mining_funcs['tuple_miner']"
        )
    else:
        hint = (
            f"PML's {type(caller).__name__} called {type(receiver).__name__} without it (PML's wrappers pass no "
            f"teacher); use {equivalent}, which passes teacher_emb to the losses and miners that take it"
        )
    v.check_required("teacher_emb", teacher_emb, hint)
