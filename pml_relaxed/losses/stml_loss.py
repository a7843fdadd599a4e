"""STML's objective: Kim et al., "Self-Taught Metric Learning without Labels" (CVPR 2022)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import _relaxed_engine as _bw
from .. import _validation as v
from .. import functional as fn
from ..similarities import BaseSimilarity, ContextualSimilarity
from .base_relaxed_loss import BaseRelaxedLoss
from .transfer_batch import TransferBatch


class STMLLoss(BaseRelaxedLoss):
    r"""STML's loss: the relaxed contrastive loss normalised by the number of pairs, on one or two student heads,
    plus STML's self-distillation between the heads.

    For n samples, student head f (the embedding that is evaluated), an optional second head g of the same
    samples (``aux_embeddings``; STML's wider "background" head) and relaxed labels ``w`` computed by
    ``similarity`` from the teacher's embeddings (STML: the EMA teacher's head g)::

        RC_STML(x) = 1 / (n (n - 1)) sum_i sum_{j != i} [w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2]
        d_ij       = ||x_i - x_j|| / ((1/n) sum_k ||x_i - x_k||)                 (row mean, self included)
        KL(f, g)   = (1/n) sum_i KL(p_i || q_i),  p_i = softmax_j(-d^g_ij),  q_i = softmax_j(-d^f_ij)

        L = RC_STML(f)                                                 without aux_embeddings
        L = (RC_STML(f) + RC_STML(g)) / 2 + kl_weight * KL(f, g)       with them (g detached inside KL)

    This is ``STML_loss`` of the authors' code (``code/loss.py``; ``RC_STML``, ``KL_STML``) with its defaults
    (``disable_mu=0``: the student is not normalised). Per anchor i the loss is
    ``(rc_i(f) + rc_i(g)) / (2 (n - 1)) + kl_weight * KL_i``, so PML's default MeanReducer gives exactly L;
    other reducers act on those n values. The relaxed-contrastive part runs on the library's engine (dense, or
    blockwise with a similarity that supports blocks, such as ``GaussianKernel``; :class:`ContextualSimilarity`
    needs the whole batch, so it is dense); the self-distillation term is dense, O(n^2) memory.

    Two-head networks whose output is one tensor ``[f | g]``: give ``embedding_size`` (the width of f) and call
    the loss without ``aux_embeddings``; the first ``embedding_size`` columns are f, the rest g. The teacher's
    embeddings are then its own ``[f | g]`` output (an EMA copy of the student, as
    :class:`~pml_relaxed.trainers.EmbeddingTransfer` builds it), of which the g columns are used, or the
    output of a teacher with a g head only. This is how :class:`~pml_relaxed.trainers.EmbeddingTransfer`
    trains STML.

    Differences from the authors' code: the relaxed labels are those of ``similarity``
    (:class:`ContextualSimilarity` follows STML's; see its differences); ``indices_tuple`` (not in STML)
    restricts the pairs, still divided by ``n - 1``; a batch of one row gives 0.

    Args:
        similarity: the relaxed labels from the teacher embeddings; default ``ContextualSimilarity()``. For STML's
            batches of two views per image use ``ContextualSimilarity(k=..., labels_mark_views=True)`` and pass
            the instance ids as ``labels``.
        delta: margin on relative distances, >= 0 (STML: 1).
        kl_weight: weight of the self-distillation term, >= 0 (STML: 1); unused without a second head.
        embedding_size: width of head f when ``embeddings`` holds ``[f | g]`` (see above), or None.
        block_size: query rows per block of the relaxed-contrastive part (see
            :class:`~pml_relaxed.losses.BaseRelaxedLoss`).
        **kwargs: :class:`~pml_relaxed.losses.BaseTransferLoss`'s ``validate`` and PML's ``distance``,
            ``reducer``, ``embedding_regularizer`` (on f), ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d_f) or (n, d_f + d_g) with ``embedding_size=d_f``; aux_embeddings (n, d_g);
        teacher_emb (n, D). Output: scalar.

    Raises:
        ValueError: delta < 0, kl_weight < 0; at call time a missing teacher_emb, row counts that differ,
            ``aux_embeddings`` given with ``embedding_size``, an ``embeddings`` no wider than ``embedding_size``.
        TypeError: a non-int ``embedding_size``, non-tensor or non-float inputs (integer ``aux_embeddings`` are
            most likely labels passed positionally: STML's second argument is ``aux_embeddings``).

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import STMLLoss
        >>> from pml_relaxed.similarities import ContextualSimilarity
        >>> loss_fn = STMLLoss(ContextualSimilarity(k=2, labels_mark_views=True), kl_weight=1.0)
        >>> f = torch.randn(8, 4, requires_grad=True)  # head f of 4 images x 2 views
        >>> g = torch.randn(8, 16, requires_grad=True)  # head g of the same rows
        >>> ids = torch.arange(4).repeat_interleave(2)  # the two views of an image share an id
        >>> loss = loss_fn(f, g, labels=ids, teacher_emb=torch.randn(8, 16))
        >>> loss.backward()
        >>> f.grad.shape, g.grad.shape
        (torch.Size([8, 4]), torch.Size([8, 16]))
    """

    supports_ref_emb = False

    def __init__(
        self,
        similarity: Optional[BaseSimilarity] = None,
        delta: float = 1.0,
        kl_weight: float = 1.0,
        embedding_size: Optional[int] = None,
        block_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(
            delta=delta,
            similarity=ContextualSimilarity() if similarity is None else similarity,
            block_size=block_size,
            **kwargs,
        )
        self.kl_weight = v.check_non_negative("kl_weight", kl_weight)
        self.embedding_size = v.check_optional_positive_int("embedding_size", embedding_size)
        self.add_to_recordable_attributes(list_of_names=["kl_weight"], is_stat=False)

    def forward(
        self,
        embeddings: torch.Tensor,
        aux_embeddings: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        indices_tuple: Optional[Sequence[torch.Tensor]] = None,
        *,
        teacher_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            embeddings: (n, d_f) head f, or (n, d_f + d_g) ``[f | g]`` with ``embedding_size``.
            aux_embeddings: (n, d_g) head g of the same samples, or None.
            labels: (n,) labels (instance ids with ``labels_mark_views``); ignored unless the similarity or
                the reducer uses them.
            indices_tuple: PML pairs or triplets restricting the pairs, or None.
            teacher_emb: (n, D) teacher embeddings of the same samples (required).

        Returns:
            The reduced loss (a scalar with PML's default reducers).
        """
        v.check_embeddings("embeddings", embeddings)
        if aux_embeddings is not None:
            _check_aux(aux_embeddings, embeddings, self.embedding_size)
            if self.validate:
                v.check_finite("aux_embeddings", aux_embeddings)
        elif self.embedding_size is not None:
            embeddings, aux_embeddings, teacher_emb = self._split_heads(embeddings, teacher_emb)
        return self._transfer_forward(
            embeddings, labels, indices_tuple, None, None, teacher_emb, None, aux_embeddings=aux_embeddings
        )

    def _split_heads(self, embeddings: torch.Tensor, teacher_emb: Optional[torch.Tensor]):
        """``(f, g, teacher g)`` of a two-head ``[f | g]`` output (see the class docstring)."""
        width = self.embedding_size
        if embeddings.shape[1] <= width:
            raise ValueError(
                f"embeddings must hold the two heads [f | g] of a two-head network, wider than "
                f"embedding_size={width} (the width of f); got shape {tuple(embeddings.shape)}"
            )
        if (
            isinstance(teacher_emb, torch.Tensor)
            and teacher_emb.ndim == 2
            and teacher_emb.shape[1] == embeddings.shape[1]
        ):
            teacher_emb = teacher_emb[:, width:]  # a two-head teacher (the EMA copy): its head g
        return embeddings[:, :width], embeddings[:, width:], teacher_emb

    def row_function(self):
        return _bw.ContrastiveRows(self.delta)

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        relaxed_labels = self.batch_relaxed_labels(batch)
        per_anchor = self.relaxed_per_anchor(batch.embeddings, batch, relaxed_labels)
        g = batch.aux_embeddings
        if g is not None:
            per_anchor = (per_anchor + self.relaxed_per_anchor(g, batch, relaxed_labels, record_stats=False)) / 2
        per_anchor = per_anchor / max(batch.embeddings.shape[0] - 1, 1)  # STML: pairs, not anchors
        if g is not None and self.kl_weight:
            per_anchor = per_anchor + self.kl_weight * fn.self_distillation_kl_per_anchor(batch.embeddings, g)
        return self.element_loss_dict(per_anchor, batch.embeddings)


def _check_aux(aux_embeddings: object, embeddings: torch.Tensor, embedding_size: Optional[int]) -> None:
    if embedding_size is not None:
        raise ValueError(
            f"aux_embeddings cannot be combined with embedding_size={embedding_size}, which splits embeddings "
            "into the two heads itself: pass one of them"
        )
    if isinstance(aux_embeddings, torch.Tensor) and not aux_embeddings.is_floating_point():
        raise TypeError(
            "aux_embeddings (STMLLoss's second argument) must be the (n, d_g) float embeddings of the student's second "
            f"head; got an integer tensor of shape {tuple(aux_embeddings.shape)}, most likely labels passed "
            "positionally: call loss(embeddings, labels=labels, ...)"
        )
    v.check_embeddings("aux_embeddings", aux_embeddings)
    v.check_same_rows("aux_embeddings", aux_embeddings, "embeddings", embeddings)
