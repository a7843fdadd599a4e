"""The paper's relaxed labels: a Gaussian kernel on teacher distances."""

from __future__ import annotations

from typing import Callable

import torch

from .. import _validation as v
from .. import functional as fn
from .base_similarity import BaseSimilarity
from .teacher_inputs import TeacherInputs


class GaussianKernel(BaseSimilarity):
    r"""``w_ij = exp(-||f_i - f_j||^2 / sigma)`` on (by default L2-normalised) teacher embeddings.

    With normalised f, ``||f_i - f_j||^2 = 2 - 2 cos(f_i, f_j)`` lies in [0, 4]: identical
    embeddings give w = 1, orthogonal ones ``exp(-2 / sigma)``, opposite ones ``exp(-4 / sigma)``.
    A smaller sigma makes the labels harder (closer to 0/1).

    Args:
        sigma: bandwidth, > 0 (paper: 1).
        normalize: L2-normalise teacher embeddings first (paper: yes).

    Raises:
        ValueError: if sigma <= 0.
        TypeError: a sigma that is not a real number, a normalize that is not a bool.
    """

    def __init__(self, sigma: float = 1.0, normalize: bool = True) -> None:
        super().__init__()
        self.sigma = v.check_positive("sigma", sigma)
        self.normalize = v.check_bool("normalize", normalize)

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        return fn.gaussian_kernel(inputs.teacher_emb, inputs.teacher_ref_emb, self.sigma, self.normalize)

    def rows(self, inputs: TeacherInputs) -> Callable[[int, int], torch.Tensor]:
        """Row blocks with the teacher normalised once (:func:`pml_relaxed.functional.gaussian_kernel_rows`)."""
        self.check_inputs(inputs)
        return fn.gaussian_kernel_rows(inputs.teacher_emb, inputs.teacher_ref_emb, self.sigma, self.normalize)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, normalize={self.normalize}"
