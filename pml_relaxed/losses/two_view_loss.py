"""PML's two-view self-supervised losses (SimCLR's NTXent and the like) inside a PML trainer's batch."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from pytorch_metric_learning import losses as pml_losses

from .. import _validation as v


class TwoViewLoss(torch.nn.Module):
    r"""A PML trainer's ``metric_loss`` for batches of two views per item, rows ``2b`` and ``2b + 1`` the two
    views of item b (the layout of :class:`~pml_relaxed.datasets.TwoViewCollate` and of
    :func:`~pml_relaxed.datasets.multi_view_collate` with two views).

    It computes PML's ``SelfSupervisedLoss(loss, symmetric=symmetric)(embeddings[0::2], embeddings[1::2])``:
    the views of one item are the positives, every other row a negative; the batch's labels are ignored (PML's
    trainers always pass them), so the classes are never seen. With ``NTXentLoss`` this is SimCLR's objective.
    For a transfer loss on two views use :class:`TransferSelfSupervisedLoss` instead.

    Args:
        loss: a PML loss that takes ``ref_emb`` (SelfSupervisedLoss's requirement), e.g. ``NTXentLoss()``.
        symmetric: also score view 2 against view 1 (PML's default True).

    Shape:
        embeddings (2B, d), views interleaved. Output: the loss's.

    Raises:
        TypeError: a loss that is not an ``nn.Module``; a non-bool symmetric; non-tensor or non-float embeddings.
        ValueError: an odd number of rows (the views must come in pairs).

    Examples:
        >>> import torch
        >>> from pytorch_metric_learning.losses import NTXentLoss
        >>> from pml_relaxed.losses import TwoViewLoss
        >>> loss_fn = TwoViewLoss(NTXentLoss(temperature=0.1))
        >>> embeddings = torch.randn(8, 16, requires_grad=True)  # 4 items x 2 views, interleaved
        >>> loss_fn(embeddings, labels=torch.zeros(8)).backward()  # the labels are ignored
    """

    def __init__(self, loss: torch.nn.Module, symmetric: bool = True) -> None:
        super().__init__()
        if not isinstance(loss, torch.nn.Module):
            raise TypeError(f"loss must be a PML loss (an nn.Module, e.g. NTXentLoss()); got {type(loss).__name__}")
        self.loss = pml_losses.SelfSupervisedLoss(loss, symmetric=v.check_bool("symmetric", symmetric))

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        indices_tuple: Optional[Sequence[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """The loss of ``embeddings`` (2B, d); ``labels`` and ``indices_tuple`` (a trainer's) are ignored."""
        v.check_embeddings("embeddings", embeddings, "(2 * num_items, dim), two views per item interleaved")
        if embeddings.shape[0] % 2:
            raise ValueError(
                "embeddings must hold two views per item (rows 2b and 2b + 1), so an even number of rows; got "
                f"{embeddings.shape[0]} rows"
            )
        return self.loss(embeddings[0::2], embeddings[1::2])
