"""``_PaperSplitMixin``: the small private base of ``CUB200``, ``Cars196`` and ``StanfordOnlineProducts``.

It adds to PML's dataset readers the root checks (with a message naming the missing file), the paper's
contiguous 0-based relabelling and RGB loading.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from PIL import Image

from .transforms import ResizeToTensor

PathLike = Union[str, "os.PathLike[str]"]
SPLITS: Tuple[str, ...] = ("train", "test", "train+test")


class _PaperSplitMixin:
    """Shared behaviour of the paper's image datasets; put it before the PML class in the bases.

    Subclasses set ``REQUIRED_FILES`` (paths relative to root that PML opens) and call
    ``_prepare`` before, and ``_relabel`` after, PML's ``__init__``.
    """

    REQUIRED_FILES: Tuple[str, ...] = ()
    paths: List[str]
    labels: Any

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        image_size: int = 224,
        download: bool = False,
    ) -> None:
        root, transform = self._prepare(root, split, transform, image_size, download)
        super().__init__(root, split, transform, target_transform, download)
        self._relabel()

    def _prepare(
        self,
        root: PathLike,
        split: str,
        transform: Optional[Callable],
        image_size: int,
        download: bool,
    ) -> Tuple[str, Callable]:
        name = type(self).__name__
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or os.PathLike; got {type(root).__name__}")
        if not isinstance(split, str) or split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
        if not isinstance(download, bool):
            raise TypeError(f"download must be a bool; got {type(download).__name__} ({download!r})")
        if transform is None:
            transform = ResizeToTensor(image_size)
        elif not callable(transform):
            raise TypeError(f"transform must be callable or None; got {type(transform).__name__}")
        root = os.fspath(root)
        if not download:
            if not os.path.isdir(root):
                raise FileNotFoundError(
                    f"{name} root {root!r} does not exist; expected a folder holding "
                    f"{', '.join(self.REQUIRED_FILES)} (download=True fetches it, needs internet)"
                )
            for rel in self.REQUIRED_FILES:
                path = os.path.join(root, rel)
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"{name} root {root!r} lacks the index file {rel!r}: expected {path!r} to exist "
                        f"(download=True fetches the dataset, needs internet)"
                    )
        return root, transform

    def _relabel(self) -> None:
        """Maps PML's 1-based class ids to contiguous 0-based labels (sorted by original id)."""
        original = [int(label) for label in self.labels]
        if not original:
            raise ValueError(
                f"{type(self).__name__} split {self.split!r} in root {self.root!r} holds no images; "
                f"check the index files"
            )
        self.class_ids: List[int] = sorted(set(original))
        lookup = {c: i for i, c in enumerate(self.class_ids)}
        self.original_labels: torch.Tensor = torch.tensor(original, dtype=torch.long)
        self.labels = torch.tensor([lookup[c] for c in original], dtype=torch.long)

    @property
    def num_classes(self) -> int:
        """Number of classes C in the split."""
        return len(self.class_ids)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> Tuple[Any, Any]:
        """Returns ``(transform(RGB PIL image), label)``; label is an int in [0, C) by default."""
        with Image.open(self.paths[idx]) as img:
            img = img.convert("RGB")
        label: Any = int(self.labels[idx])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, split={self.split!r}, "
            f"num_classes={self.num_classes}, num_samples={len(self)})"
        )
