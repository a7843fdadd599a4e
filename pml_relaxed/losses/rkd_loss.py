"""Relational Knowledge Distillation: Park et al., "Relational Knowledge Distillation" (CVPR 2019)."""

from __future__ import annotations

from .. import _validation as v
from .. import functional_baselines as fb
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class RKDLoss(BaseTransferLoss):
    r"""Transfers the teacher's pairwise distances and triplet angles (RKD-DA).

    For student embeddings s (n, d) and teacher embeddings t (n, D), both used as given (not normalised)::

        psi_D(i, j)    = ||x_i - x_j|| / mu,   mu = mean_{i != j} ||x_i - x_j||   (per network, per batch)
        psi_A(j, i, k) = <e_ij, e_ik>,         e_ij = (x_j - x_i) / ||x_j - x_i||  (cosine of the angle at i)
        L_D = mean_{i != j} huber(psi_D^t(i, j) - psi_D^s(i, j))
        L_A = mean_{i, j, k distinct} huber(psi_A^t(j, i, k) - psi_A^s(j, i, k))
        L   = distance_weight * L_D + angle_weight * L_A

    ``huber`` is the smooth L1 loss with threshold 1 (RKD Eq. 7). The loss is returned per anchor
    (the vertex i, ``reduction_type="element"``), each anchor averaging its own pairs and triplets, so
    PML's default MeanReducer gives exactly L. The paper writes sums over pairs/triplets; its reference
    code averages over all n^2 / n^3 entries, self-pairs included, i.e. scales L_D by (n-1)/n and L_A
    by (n-1)(n-2)/n^2 relative to this loss. ``mu`` excludes only the diagonal (zero distances of
    duplicated rows count), and is 0-safe: a collapsed or single-sample batch gives finite values.

    With ``ref_emb``, pairs are (query, reference) and angles have a query vertex and two distinct
    references; ``mu`` is the mean over all n x m pairs. Labels are accepted and ignored. The loss is
    computed with the Euclidean distance of the paper, so ``distance`` cannot be set; ``indices_tuple``
    is not supported (RKD uses every pair and triplet).

    Args:
        distance_weight: weight of the distance-wise term, >= 0 (RKD: 1).
        angle_weight: weight of the angle-wise term, >= 0 (RKD: 2). A 0 weight skips that term; the
            angle term needs O(n m max(m, d)) memory.
        **kwargs: PML's ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d), teacher_emb (n, D); ref_emb (m, d) with teacher_ref_emb (m, D). Output: scalar.

    Raises:
        ValueError: a negative weight or both weights 0, a ``distance`` argument, an ``indices_tuple``,
            and the bad inputs of :class:`BaseTransferLoss` (e.g. a missing teacher_emb, mismatched rows).
        TypeError: non-tensor or non-float inputs.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses.rkd_loss import RKDLoss
        >>> loss = RKDLoss()(torch.randn(8, 16, requires_grad=True), teacher_emb=torch.randn(8, 64))
        >>> loss.backward()
    """

    supports_distance = False
    supports_indices_tuple = False

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.distance_weight = v.check_non_negative("distance_weight", distance_weight)
        self.angle_weight = v.check_non_negative("angle_weight", angle_weight)
        if self.distance_weight == 0 and self.angle_weight == 0:
            raise ValueError("distance_weight and angle_weight are both 0, so the RKD loss would be 0; got 0 and 0")
        self.add_to_recordable_attributes(list_of_names=["distance_weight", "angle_weight"], is_stat=False)

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        per_anchor = fb.rkd_per_anchor(
            batch.embeddings, batch.teacher_emb, *batch.explicit_reference(), self.distance_weight, self.angle_weight
        )
        return self.element_loss_dict(per_anchor, batch.embeddings)
