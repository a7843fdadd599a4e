"""A convex mix of two similarities, e.g. the teacher kernel and hard labels."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .. import _validation as v
from .base_similarity import BaseSimilarity


class MixedSimilarity(BaseSimilarity):
    """``w = (1 - label_weight) * first + label_weight * second``, still in [0, 1].

    Args:
        first: a similarity (e.g. :class:`GaussianKernel`).
        second: another similarity (e.g. :class:`LabelSimilarity`).
        label_weight: weight of ``second``, in [0, 1].

    Raises:
        TypeError: if first/second are not BaseSimilarity instances.
        ValueError: if label_weight is outside [0, 1].
    """

    def __init__(self, first: BaseSimilarity, second: BaseSimilarity, label_weight: float = 0.5) -> None:
        super().__init__()
        for name, sim in (("first", first), ("second", second)):
            if not isinstance(sim, BaseSimilarity):
                raise TypeError(f"{name} must be a pml_relaxed similarity (BaseSimilarity); got {type(sim).__name__}")
        self.first, self.second = first, second
        self.label_weight = v.check_in_unit_interval("label_weight", label_weight)
        self.requires_labels = first.requires_labels or second.requires_labels
        self.supports_blocks = first.supports_blocks and second.supports_blocks

    def compute_mat(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        ref_labels: Optional[torch.Tensor],
    ) -> torch.Tensor:
        a = self.first.compute_mat(teacher_emb, teacher_ref_emb, labels, ref_labels)
        b = self.second.compute_mat(teacher_emb, teacher_ref_emb, labels, ref_labels)
        return (1 - self.label_weight) * a + self.label_weight * b.to(a.dtype)

    def rows(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
    ) -> Callable[[int, int], torch.Tensor]:
        """Row blocks of the mix, each part prepared once by its own :meth:`rows`."""
        self.check_inputs(teacher_emb, teacher_ref_emb, labels, ref_labels)
        first = self.first.rows(teacher_emb, teacher_ref_emb, labels, ref_labels)
        second = self.second.rows(teacher_emb, teacher_ref_emb, labels, ref_labels)

        def block(start: int, end: int) -> torch.Tensor:
            a = first(start, end)
            return (1 - self.label_weight) * a + self.label_weight * second(start, end).to(a.dtype)

        return block
