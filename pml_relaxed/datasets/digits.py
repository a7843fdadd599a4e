"""scikit-learn's handwritten digits (8x8, 1,797 images) as the embedded default dataset."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

DEFAULT_TRAIN_CLASSES = (0, 1, 2, 3, 4)
DEFAULT_TEST_CLASSES = (5, 6, 7, 8, 9)


class Digits(Dataset):
    """scikit-learn's ``load_digits`` as (1, 8, 8) float images in [0, 1], restricted to some classes.

    The default split is class-disjoint: ``split="train"`` holds digits 0-4, ``split="test"`` digits
    5-9, so the test measures retrieval of classes never seen in training. ``labels`` keep the digit
    values (so they stay disjoint across splits).

    Args:
        split: "train", "test" or "all"; ignored when ``classes`` is given.
        classes: the digit classes to keep.
        transform: applied to each image tensor.

    Raises:
        ValueError: an unknown split or classes outside 0-9.
    """

    def __init__(
        self,
        split: str = "train",
        classes: Optional[Sequence[int]] = None,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        from sklearn.datasets import load_digits

        if classes is None:
            splits = {"train": DEFAULT_TRAIN_CLASSES, "test": DEFAULT_TEST_CLASSES, "all": tuple(range(10))}
            if split not in splits:
                raise ValueError(f"split must be one of {sorted(splits)}; got {split!r}")
            classes = splits[split]
        classes = tuple(int(c) for c in classes)
        if not classes or any(c < 0 or c > 9 for c in classes):
            raise ValueError(f"classes must be a non-empty subset of 0-9; got {classes}")
        data = load_digits()
        images = torch.as_tensor(data.images, dtype=torch.float32) / 16.0
        labels = torch.as_tensor(data.target, dtype=torch.long)
        keep = torch.isin(labels, torch.as_tensor(classes))
        self.images = images[keep].unsqueeze(1)
        self.labels = labels[keep]
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
