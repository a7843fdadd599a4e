"""``_PaperSplitMixin``: the small private base of ``CUB200``, ``Cars196`` and ``StanfordOnlineProducts``.

It adds to PML's dataset readers the root checks (with a message naming the missing file), the paper's
contiguous 0-based relabelling and RGB loading.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Tuple

import torch

from ._pillow import pillow_image
from .data_root import PathLike, how_to_set, resolve_root
from .transforms import ResizeToTensor

SPLITS: Tuple[str, ...] = ("train", "test", "train+test")


class _PaperSplitMixin:
    """Shared behaviour of the paper's image datasets; put it before the PML class in the bases.

    Subclasses set ``REQUIRED_FILES`` (paths relative to root that PML opens), ``DATA_NAME`` (the folder
    name below ``$PML_RELAXED_DATA`` or the cache, used without ``root``) and ``SOURCE`` (where the data
    comes from); ``__init__`` calls ``_prepare`` before, and ``_relabel`` after, PML's ``__init__``.

    Attributes:
        paths: list of N image paths.
        labels: LongTensor of shape (N,), contiguous 0-based class ids.
        original_labels: LongTensor of shape (N,), the dataset's class ids (1-based for CUB200 and Cars196).
        class_ids: sorted original class ids; index = label.
    """

    REQUIRED_FILES: Tuple[str, ...] = ()
    DATA_NAME: str = ""
    SOURCE: str = ""
    paths: List[str]
    labels: Any

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        image_size: int = 224,
        download: bool = False,
    ) -> None:
        """Checks ``root``, reads ``split`` with PML's reader, then relabels it.

        Args:
            root: the dataset's folder, in the layout the class docstring describes. None (default):
                ``$PML_RELAXED_DATA/<DATA_NAME>`` (``cub200``, ``cars196``, ``sop``), else
                ``~/.cache/pml_relaxed/<DATA_NAME>`` (see :mod:`pml_relaxed.datasets.data_root`).
            split: ``"train"``, ``"test"`` or ``"train+test"``.
            transform: callable on the RGB PIL image; default ``ResizeToTensor(image_size)``, giving
                a float tensor of shape (3, image_size, image_size). See also ``paper_transforms``.
            target_transform: optional callable on the int label.
            image_size: output side of the default transform.
            download: let PML download (and extract) the archive into root (needs internet).

        Raises:
            FileNotFoundError: if root or an index file is missing (and download is False).
            ValueError: for an unknown split, or a split without images.
            TypeError: for a bad root, transform or download type.
        """
        root, transform = self._prepare(root, split, transform, image_size, download)
        super().__init__(root, split, transform, target_transform, download)
        self._relabel()

    def _prepare(
        self,
        root: Optional[PathLike],
        split: str,
        transform: Optional[Callable],
        image_size: int,
        download: bool,
    ) -> Tuple[str, Callable]:
        name = type(self).__name__
        root_path, source = resolve_root(root, self.DATA_NAME)
        if not isinstance(split, str) or split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
        if not isinstance(download, bool):
            raise TypeError(f"download must be a bool; got {type(download).__name__} ({download!r})")
        if transform is None:
            transform = ResizeToTensor(image_size)
        elif not callable(transform):
            raise TypeError(f"transform must be callable or None; got {type(transform).__name__}")
        root = os.fspath(root_path)
        get_data = (
            f"download=True lets PML fetch it (needs internet), or get it from {self.SOURCE}; "
            f"{how_to_set(self.DATA_NAME)}"
        )
        if not download:
            if not os.path.isdir(root):
                raise FileNotFoundError(
                    f"{name} root {root!r} (from {source}) does not exist; expected a folder holding "
                    f"{', '.join(self.REQUIRED_FILES)}: {get_data}"
                )
            for rel in self.REQUIRED_FILES:
                path = os.path.join(root, rel)
                if not os.path.isfile(path):
                    raise FileNotFoundError(
                        f"{name} root {root!r} lacks the index file {rel!r}: expected {path!r} to exist; {get_data}"
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
        with pillow_image(type(self).__name__).open(self.paths[idx]) as img:
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
