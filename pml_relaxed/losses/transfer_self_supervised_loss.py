"""The two-view self-supervised idiom for transfer losses: PML's SelfSupervisedLoss with the teacher of each view."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _validation as v
from .._teacher import takes_keyword, takes_teacher, teacher_kwargs
from .fitnet_loss import FitNetLoss


class TransferSelfSupervisedLoss(torch.nn.Module):
    r"""Transfer on two augmented views of the same n samples, without labels.

    PML's :class:`~pytorch_metric_learning.losses.SelfSupervisedLoss` generates the labels
    ``0, 1, ..., n-1`` (row i of both views is sample i) and, with ``symmetric=True``, stacks the views
    into one batch. A relaxed loss needs no labels, its targets being the teacher's relaxed labels, so
    what it needs from the idiom is each view's teacher embedding. Called as
    ``loss_fn(embeddings, ref_emb, *, teacher_emb, teacher_ref_emb)`` (``teacher_emb``: the teacher on
    view 1, ``teacher_ref_emb``: on view 2; pass the same tensor twice for a teacher that sees one
    un-augmented view), it computes:

    - ``symmetric=True`` (default): the loss on the 2n-row batch of both views,
      ``loss(cat[embeddings, ref_emb], cat[labels, labels], teacher_emb=cat[teacher_emb, teacher_ref_emb])``.
      Every ordered pair of the 2n rows except the self pairs counts: the cross-view pair (i, n + i)
      with the teacher's relaxed label between the two views of sample i (about 1 for a teacher that is
      invariant to the augmentation, so the views are pulled together) and every other pair, within and
      across views, with its teacher relaxed label. Row means run over the 2n rows. This is the natural
      idiom for a relaxed loss: it is the plain loss on the batch a two-view loader would give
      (as :class:`~pml_relaxed.datasets.MultiViewDataset` does for the trainer) and treats both views alike.
    - ``symmetric=False``: view 1 queries, view 2 references,
      ``loss(embeddings, labels, ref_emb=ref_emb, ref_labels=labels, teacher_emb=..., teacher_ref_emb=...)``:
      the n x n cross-view pairs, (i, i) included (two views, not a self pair), no within-view pair;
      row means over the n rows of view 2.

    The generated labels matter only to a label-based similarity (``LabelSimilarity``,
    ``MixedSimilarity``: "same source sample") or a loss that reads labels (e.g. DarkRankLoss's triplet
    term, whose positives are then the other view).

    Args:
        loss: a loss that takes ``teacher_emb`` (e.g. :class:`RelaxedContrastiveLoss`, or a
            :class:`TransferMultipleLosses`); with ``symmetric=False`` it must also take ``ref_emb``
            (FitNetLoss, TransferCrossBatchMemory do not). For a label loss use PML's SelfSupervisedLoss.
        symmetric: stack both views into one 2n batch (True) or use view 2 as the reference set (False).

    Shape:
        embeddings and ref_emb (n, d), teacher_emb and teacher_ref_emb (n, D). Output: the loss's.

    Raises:
        TypeError: a loss that is not an ``nn.Module`` or takes no teacher_emb; a non-bool symmetric;
            non-tensor or non-float inputs.
        ValueError: ``symmetric=False`` with a loss that takes no reference set; views of different
            shapes; a missing teacher_emb or teacher_ref_emb; the teacher inputs' row/column mismatches; with
            ``symmetric=False``, a loss that takes no teacher_ref_emb (:func:`pml_relaxed._teacher.teacher_kwargs`).

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss, TransferSelfSupervisedLoss
        >>> loss_fn = TransferSelfSupervisedLoss(RelaxedContrastiveLoss())
        >>> view1, view2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True)
        >>> teacher1, teacher2 = torch.randn(8, 64), torch.randn(8, 64)
        >>> loss = loss_fn(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
        >>> loss.backward()
    """

    def __init__(self, loss: torch.nn.Module, symmetric: bool = True) -> None:
        super().__init__()
        if not isinstance(loss, torch.nn.Module):
            raise TypeError(f"loss must be a torch.nn.Module (a pml_relaxed loss); got {type(loss).__name__}")
        if not takes_teacher(loss):
            raise TypeError(
                f"loss {type(loss).__name__} takes no teacher_emb; TransferSelfSupervisedLoss is for transfer losses "
                "(for a label loss use PML's SelfSupervisedLoss)"
            )
        self.symmetric = v.check_bool("symmetric", symmetric)
        if not symmetric and (isinstance(loss, FitNetLoss) or not takes_keyword(loss, "ref_emb")):
            raise ValueError(
                f"symmetric=False uses the second view as the reference set, and {type(loss).__name__} takes none; "
                "use symmetric=True"
            )
        self.loss = loss

    def forward(
        self,
        embeddings: torch.Tensor,
        ref_emb: torch.Tensor,
        *,
        teacher_emb: Optional[torch.Tensor] = None,
        teacher_ref_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The loss on the two views.

        Args:
            embeddings: (n, d) student embeddings of view 1.
            ref_emb: (n, d) student embeddings of view 2 (row i: the same sample as row i of view 1).
            teacher_emb: (n, D) teacher embeddings of view 1 (required).
            teacher_ref_emb: (n, D) teacher embeddings of view 2 (required).

        Returns:
            The wrapped loss.
        """
        v.check_embeddings("embeddings", embeddings, "(batch_size, student_dim)")
        v.check_embeddings("ref_emb", ref_emb, "(batch_size, student_dim)")
        v.check_same_rows("ref_emb", ref_emb, "embeddings", embeddings)
        v.check_teacher_pair(embeddings, ref_emb, teacher_emb, teacher_ref_emb)
        labels = torch.arange(embeddings.shape[0], device=embeddings.device)
        if self.symmetric:
            stacked_teacher = torch.cat([teacher_emb, teacher_ref_emb.to(teacher_emb.device)], dim=0)
            return self.loss(
                torch.cat([embeddings, ref_emb], dim=0),
                torch.cat([labels, labels], dim=0),
                **teacher_kwargs(self.loss, stacked_teacher, None),
            )
        teacher = teacher_kwargs(self.loss, teacher_emb, teacher_ref_emb, ref_emb)
        return self.loss(embeddings, labels, ref_emb=ref_emb, ref_labels=labels.clone(), **teacher)
