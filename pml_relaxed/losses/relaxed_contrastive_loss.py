"""The relaxed contrastive loss of Kim et al., "Embedding Transfer with Label Relaxation for Improved
Metric Learning" (CVPR 2021)."""

from __future__ import annotations

from .. import _relaxed_engine as _bw
from .base_relaxed_loss import BaseRelaxedLoss


class RelaxedContrastiveLoss(BaseRelaxedLoss):
    r"""Transfers a teacher's embedding space to a student by using teacher similarities as soft labels.

    For n student embeddings g (not normalised) and teacher embeddings f::

        w_ij = exp(-||f_i - f_j||^2 / sigma)                   relaxed label, no gradient
        d_ij = ||g_i - g_j|| / ((1/n) sum_k ||g_i - g_k||)     relative distance (row mean, self included)
        L    = (1/n) sum_i sum_{j != i} [ w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2 ]

    For one pair the minimum is at ``d = (1 - w) delta``: pairs the teacher finds similar are pulled
    together in proportion. Labels are accepted and ignored (unless ``similarity`` uses them).
    ``indices_tuple`` from any PML miner restricts the pairs (each pair counted once); the row means
    still use the whole reference set. The loss is returned per anchor (``reduction_type="element"``),
    so PML's default MeanReducer gives exactly L; other reducers act on the n per-anchor sums.
    The constructor is :class:`~pml_relaxed.losses.BaseRelaxedLoss`'s, with the arguments below.

    Args:
        sigma: Gaussian kernel bandwidth, > 0 (paper: 1).
        delta: margin on relative distances, >= 0 (paper: 1).
        normalize_teacher: L2-normalise teacher embeddings (paper: yes).
        similarity: replaces the Gaussian kernel, e.g. ``LabelSimilarity()``.
        block_size: query rows per block: None (auto: dense up to 2**16 pairs, blockwise above), 0 (dense)
            or k > 0. Blockwise is exact (same values and gradients), O(block * m) memory, and faster on
            large batches; see :class:`~pml_relaxed.losses.BaseRelaxedLoss`.
        validate: check student and teacher embeddings for NaN/inf (names the rows); False for
            ``torch.compile(fullgraph=True)`` and no host synchronisation.
        **kwargs: PML's ``distance`` (default ``LpDistance(normalize_embeddings=False)``), ``reducer``,
            ``embedding_regularizer``, ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d), teacher_emb (n, D); ref_emb (m, d) with teacher_ref_emb (m, D). Output: scalar.

    Raises:
        ValueError: sigma <= 0, delta < 0, an inverted distance (a similarity), and bad inputs: a missing
            teacher_emb, a row count differing from the student's, non-finite teacher values, a
            non-2D tensor, ref_emb without teacher_ref_emb.
        TypeError: non-tensor or non-float inputs.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> loss_fn = RelaxedContrastiveLoss(sigma=1.0, delta=1.0)
        >>> student = torch.randn(8, 16, requires_grad=True)
        >>> teacher = torch.randn(8, 128)
        >>> loss = loss_fn(student, teacher_emb=teacher)
        >>> loss.backward()
    """

    def row_function(self):
        return _bw.ContrastiveRows(self.delta)
