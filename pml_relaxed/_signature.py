"""Signature inspection shared by the combinators and the trainer: which losses and miners read the teacher.

Kept outside :mod:`pml_relaxed.losses` and :mod:`pml_relaxed.trainers` so both can import it without
the losses depending on the trainers.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

__all__ = ["takes_keyword", "takes_teacher"]


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
    """True if a loss or miner accepts ``teacher_emb=`` (pml_relaxed's losses, miners and combinators do).

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
