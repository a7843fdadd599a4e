"""Two augmented views of every image of a batch, drawn in the collate function (one call per batch)."""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch


class TwoViewCollate:
    """A ``collate_fn``: B images -> (2B views, 2B instance ids).

    Rows ``2b`` and ``2b + 1`` are ``augment(images)[b]`` from two independent calls of ``augment`` on the
    stacked (B, ...) batch, and both carry the id b: an instance id within the batch, not a class label, as
    STML's ``labels_mark_views`` and :class:`~pml_relaxed.losses.TwoViewLoss` read it. Batch-level augmentation
    (one call per view and batch) is faster than :class:`MultiViewDataset`'s per-item transform for tensor
    augmentations such as :class:`RandomAffine`; the randomness comes from torch's global generator.

    Args:
        augment: maps a (B, ...) image batch to an augmented batch of the same shape.

    Raises:
        TypeError: a non-callable ``augment``.

    Examples:
        >>> import torch
        >>> collate = TwoViewCollate(lambda images: images + 0.01 * torch.randn_like(images))
        >>> views, ids = collate([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
        >>> views.shape, ids.tolist()
        (torch.Size([4, 1, 4, 4]), [0, 0, 1, 1])
    """

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not callable(augment):
            raise TypeError(f"augment must map a (B, ...) image batch to a batch; got {type(augment).__name__}")
        self.augment = augment

    def __call__(self, batch: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack(batch)
        views = torch.stack([self.augment(images), self.augment(images)], dim=1)
        ids = torch.arange(len(batch)).repeat_interleave(2)
        return views.reshape(2 * len(batch), *images.shape[1:]), ids
