"""Probabilistic Knowledge Transfer: Passalis & Tefas, "Learning Deep Representations with Probabilistic
Knowledge Transfer" (ECCV 2018)."""

from __future__ import annotations

from .. import _validation as v
from .. import functional_baselines as fb
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class PKTLoss(BaseTransferLoss):
    r"""Matches the student's and teacher's cosine-kernel conditional probability distributions.

    For student embeddings s (n, d) and teacher embeddings t (n, D)::

        x_hat  = x / (||x|| + eps)                                        (each network)
        K_ij   = (x_hat_i . x_hat_j + 1) / 2                              cosine kernel in [0, 1]
        p_j|i  = K_ij / sum_{k != i} K_ik                                 conditional probability
        L      = (1/n) sum_i sum_{j != i} p^t_j|i log((p^t_j|i + eps) / (p^s_j|i + eps))

    i.e. KL(teacher || student) of each anchor's conditional distribution (PKT Eq. 10 with the cosine
    kernel of Sec. 3.2), returned per anchor (``reduction_type="element"``) so PML's default MeanReducer
    averages over anchors. The paper sums over anchors; its reference code additionally keeps the
    self-pairs j = i and averages over all n^2 entries. ``eps`` follows the reference code (stabilises
    the normalisation and the logarithm); a zero student row gets a finite gradient.

    With ``ref_emb`` the conditionals run over the m reference samples (no self-pair excluded). Labels
    are accepted and ignored. The kernel is fixed by the paper, so ``distance`` cannot be set;
    ``indices_tuple`` is not supported (the conditionals need every pair).

    Args:
        eps: numerical stabiliser, > 0 (PKT reference code: 1e-7).
        **kwargs: PML's ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d), teacher_emb (n, D); ref_emb (m, d) with teacher_ref_emb (m, D). Output: scalar.

    Raises:
        ValueError: eps <= 0, a ``distance`` argument, an ``indices_tuple``, and the bad inputs of
            :class:`BaseTransferLoss` (e.g. a missing teacher_emb, mismatched rows).
        TypeError: non-tensor or non-float inputs.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses.pkt_loss import PKTLoss
        >>> loss = PKTLoss()(torch.randn(8, 16, requires_grad=True), teacher_emb=torch.randn(8, 64))
        >>> loss.backward()
    """

    supports_distance = False
    supports_indices_tuple = False

    def __init__(self, eps: float = 1e-7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = v.check_positive("eps", eps)
        self.add_to_recordable_attributes(list_of_names=["eps"], is_stat=False)

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        per_anchor = fb.pkt_per_anchor(batch.embeddings, batch.teacher_emb, *batch.explicit_reference(), self.eps)
        return self.element_loss_dict(per_anchor, batch.embeddings)
