"""FitNet-style embedding regression: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015),
applied to the final embeddings."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _validation as v
from .. import functional_baselines as fb
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class FitNetLoss(BaseTransferLoss):
    r"""Regresses the teacher's embedding from the student's through a learned linear map.

    For student embeddings g (n, d) and teacher embeddings f (n, D)::

        L = (1/n) sum_i (1/D) ||W g_i - f_i||^2       (= F.mse_loss(g W^T, f))

    ``W`` (D x d, no bias) is the FitNet "regressor" (Romero et al. Eq. 3, with the guided layer = the
    student embedding and the hint = the teacher embedding). The paper's ``1/2 ||.||^2`` per sample is
    replaced by the mean squared error, a constant factor ``2/D``. The loss is returned per sample
    (``reduction_type="element"``), so PML's default MeanReducer gives exactly L.

    ``W`` is ``self.regressor`` (a ``torch.nn.Linear``), a parameter of this loss: train it with the
    student, e.g. through PML trainers' ``"transfer_loss_optimizer"`` or by adding
    ``loss_fn.parameters()`` to the optimizer. It is created at construction, never lazily, so the
    optimizer sees it from the start: pass both ``student_dim`` and ``teacher_dim``. With both None
    there is no regressor (``W`` = identity), which needs d = D; otherwise the first call raises a
    ValueError asking for the dims. The regressor is used in the student's dtype and on its device.

    FitNet is pointwise: a batch of one gives that sample's squared error (not 0); ``ref_emb`` /
    ``teacher_ref_emb`` and ``indices_tuple`` are not supported, labels are accepted and ignored, and
    ``distance`` cannot be set.

    Args:
        student_dim: d, >= 1, or None (with teacher_dim None: no regressor).
        teacher_dim: D, >= 1, or None (with student_dim None: no regressor).
        **kwargs: PML's ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d), teacher_emb (n, D). Output: scalar.

    Raises:
        ValueError: only one of student_dim/teacher_dim given, a dim < 1, a ``distance`` argument,
            dims that do not match the inputs, ``ref_emb``/``teacher_ref_emb`` or ``indices_tuple``
            given, and the bad inputs of :class:`BaseTransferLoss` (e.g. a missing teacher_emb).
        TypeError: non-int dims, non-tensor or non-float inputs.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses.fitnet_loss import FitNetLoss
        >>> loss_fn = FitNetLoss(student_dim=16, teacher_dim=64)
        >>> loss = loss_fn(torch.randn(8, 16, requires_grad=True), teacher_emb=torch.randn(8, 64))
        >>> loss.backward()  # gradients for the student and for loss_fn.regressor.weight
    """

    supports_distance = False
    supports_indices_tuple = False
    supports_ref_emb = False

    def __init__(self, student_dim: Optional[int] = None, teacher_dim: Optional[int] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.student_dim = v.check_optional_positive_int("student_dim", student_dim)
        self.teacher_dim = v.check_optional_positive_int("teacher_dim", teacher_dim)
        if (self.student_dim is None) != (self.teacher_dim is None):
            raise ValueError(
                "pass both student_dim and teacher_dim (for a learned regressor) or neither (identity, equal "
                f"dims); got student_dim={student_dim!r}, teacher_dim={teacher_dim!r}"
            )
        self.regressor: Optional[torch.nn.Linear] = None
        if self.student_dim is not None:
            self.regressor = torch.nn.Linear(self.student_dim, self.teacher_dim, bias=False)

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        student_dim, teacher_dim = batch.embeddings.shape[1], batch.teacher_emb.shape[1]
        if self.regressor is None and student_dim != teacher_dim:
            raise ValueError(
                f"embeddings have dimension {student_dim} but teacher_emb has {teacher_dim}: construct "
                f"FitNetLoss(student_dim={student_dim}, teacher_dim={teacher_dim}) for a learned regressor"
            )
        if self.regressor is not None and (student_dim, teacher_dim) != (self.student_dim, self.teacher_dim):
            raise ValueError(
                f"FitNetLoss was built for student_dim={self.student_dim}, teacher_dim={self.teacher_dim}; got "
                f"embeddings of dimension {student_dim} and teacher_emb of dimension {teacher_dim}"
            )
        weight = None if self.regressor is None else self.regressor.weight
        per_sample = fb.fitnet_per_sample(batch.embeddings, batch.teacher_emb, weight)
        return self.element_loss_dict(per_sample, batch.embeddings)
