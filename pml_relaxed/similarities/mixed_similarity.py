"""A convex mix of two similarities, e.g. the teacher kernel and hard labels."""

from __future__ import annotations

from typing import Callable

import torch

from .. import _validation as v
from .base_similarity import BaseSimilarity
from .teacher_inputs import TeacherInputs


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

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        return self._mix(self.first.compute_mat(inputs), self.second.compute_mat(inputs))

    def rows(self, inputs: TeacherInputs) -> Callable[[int, int], torch.Tensor]:
        """Row blocks of the mix, each part prepared once by its own :meth:`rows`."""
        self.check_inputs(inputs)
        first, second = self.first.rows(inputs), self.second.rows(inputs)
        return lambda start, end: self._mix(first(start, end), second(start, end))

    def _mix(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return (1 - self.label_weight) * first + self.label_weight * second.to(first.dtype)
