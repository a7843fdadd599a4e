"""k augmented views of each sampled item in one batch (the paper uses 2)."""

from __future__ import annotations

from typing import Any, Callable, List, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from .. import _validation as v


class MultiViewDataset(Dataset):
    """Wraps a dataset of ``(x, label)`` so that each item is ``(views, label)``, views of shape (k, ...).

    Each view is ``transform(x)`` drawn independently. With ``collate_fn=multi_view_collate`` a batch of
    B items becomes B*k inputs (views of one item adjacent) and B*k labels, which the student and the
    teacher both see. PML samplers work on the wrapped dataset: ``labels`` is forwarded.

    Args:
        dataset: a map-style dataset returning ``(x, label)``.
        transform: the augmentation applied to each view (None = identical views).
        num_views: k >= 1.

    Raises:
        ValueError: num_views < 1.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any] = None, num_views: int = 2) -> None:
        self.dataset = dataset
        self.transform = transform
        self.num_views = v.check_optional_positive_int("num_views", num_views)
        if self.num_views is None:
            raise ValueError("num_views must be an int >= 1; got None")

    @property
    def labels(self):
        """Labels of the wrapped dataset (for PML's MPerClassSampler)."""
        return self.dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Any]:
        x, label = self.dataset[index]
        views = [x if self.transform is None else self.transform(x) for _ in range(self.num_views)]
        return torch.stack([torch.as_tensor(view) for view in views]), label


def multi_view_collate(batch: Sequence[Tuple[torch.Tensor, Any]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Collates ``(views (k, ...), label)`` items into inputs (B*k, ...) and labels (B*k,).

    The k views of item b are rows ``b*k .. b*k + k - 1``.
    """
    views: List[torch.Tensor] = [item[0] for item in batch]
    num_views = views[0].shape[0]
    inputs = torch.cat(views, dim=0)
    labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
    return inputs, labels.repeat_interleave(num_views)
