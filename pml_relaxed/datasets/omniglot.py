"""Omniglot "background small" splits, decoded straight from the original zip files."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .. import _validation as v

PathLike = Union[str, "os.PathLike[str]"]

#: Zip file read for each split.
SPLIT_FILES: Dict[str, str] = {
    "train": "images_background_small1.zip",
    "test": "images_background_small2.zip",
}


def _default_root() -> Path:
    env = os.environ.get("PML_RELAXED_OMNIGLOT")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "omniglot").resolve()


#: ``$PML_RELAXED_OMNIGLOT`` if set, else ``<repo>/../shared/datasets/omniglot``.
DEFAULT_OMNIGLOT_ROOT: Path = _default_root()


def _zip_path(root: PathLike, split: str) -> Path:
    if not isinstance(split, str) or split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}; got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Omniglot root {str(root)!r} does not exist or is not a folder; expected a folder holding "
            f"{SPLIT_FILES['train']} and {SPLIT_FILES['test']} (set PML_RELAXED_OMNIGLOT or pass root)"
        )
    path = root / SPLIT_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(
            f"Omniglot {split!r} split needs the file {str(path)!r}, which does not exist; expected "
            f"{SPLIT_FILES[split]} inside root {str(root)!r} (it is never downloaded)"
        )
    return path


def _index_zip(archive: zipfile.ZipFile, path: Path) -> Dict[str, List[str]]:
    """Maps ``"<alphabet>/<character>"`` to the sorted member names of its PNG drawings."""
    members: Dict[str, List[str]] = {}
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) == 4 and parts[3].lower().endswith(".png"):
            members.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
    if not members:
        raise ValueError(
            f"{str(path)!r} holds no images laid out as <top>/<alphabet>/<character>/<file>.png"
        )
    return {key: sorted(names) for key, names in sorted(members.items())}


def _class_index(
    archive: zipfile.ZipFile, path: Path, root: PathLike, split: str, drop_overlap: bool
) -> Dict[str, List[str]]:
    """The split's class index; for ``"test"`` with drop_overlap, minus the train zip's classes."""
    index = _index_zip(archive, path)
    if split == "test" and drop_overlap:
        train_path = _zip_path(root, "train")
        with zipfile.ZipFile(train_path) as train_archive:
            shared = set(_index_zip(train_archive, train_path))
        index = {key: names for key, names in index.items() if key not in shared}
    return index


def _check_classes(classes: Sequence[int], num_classes: int) -> List[int]:
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a sequence of int class ids or None; got {type(classes).__name__}")
    ids = [int(c) if isinstance(c, torch.Tensor) and c.ndim == 0 else c for c in classes]
    for c in ids:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"classes must hold int class ids; got {type(c).__name__} ({c!r})")
    ids = [int(c) for c in ids]
    if not ids:
        raise ValueError("classes must hold at least one class id; got an empty sequence")
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes must not repeat a class id; got {ids}")
    bad = [c for c in ids if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes must be ids in [0, {num_classes - 1}]; got out-of-range ids {bad}")
    return sorted(ids)


class Omniglot(Dataset):
    """Omniglot characters as a metric-learning dataset (one class per character).

    ``split="train"`` reads ``images_background_small1.zip`` (5 alphabets, 136 characters x 20
    drawings), ``split="test"`` reads ``images_background_small2.zip`` (156 characters of 5
    alphabets). The two zips share Greek and Latin: 50 characters whose 1000 drawings are
    byte-identical in both. To keep the test classes disjoint from the training ones,
    ``split="test"`` drops them by default (106 characters, 2120 images); ``drop_overlap=False``
    keeps all 156. All images are decoded once at construction, resized with Pillow and inverted so
    that strokes are 1.0 and background 0.0. Class ids follow the sorted ``"<alphabet>/<character>"``
    names of the split; ``classes`` keeps a subset of them and relabels it ``0..len(classes)-1``
    (in increasing original id), which together with :meth:`class_split` gives a class-disjoint
    validation split.

    Args:
        root: folder holding the two zip files.
        split: ``"train"`` or ``"test"``.
        image_size: side of the square output images, in pixels (originals are 105).
        transform: optional callable applied to each (1, H, W) image tensor in ``__getitem__``.
        classes: optional ids of the classes to keep, numbered as in
            ``list_classes(root, split, drop_overlap)`` (e.g. from :meth:`class_split`).
        drop_overlap: for ``split="test"``, leave out the characters also present in the train
            zip (which must then exist). Ignored for ``split="train"``.

    Attributes:
        images: float tensor of shape (N, 1, image_size, image_size), values in [0, 1].
        labels: LongTensor of shape (N,), contiguous class ids ``0..C-1``.
        class_names: list of C ``"<alphabet>/<character>"`` names, indexed by label.
        class_ids: list of C ids of the kept classes, numbered as in ``list_classes``.

    Raises:
        FileNotFoundError: if ``root`` or the split's zip file does not exist.
        ValueError: for an unknown split, image_size < 1, or bad ``classes``.
        TypeError: for a non-int image_size, non-callable transform or non-int class ids.
    """

    def __init__(
        self,
        root: PathLike = DEFAULT_OMNIGLOT_ROOT,
        split: str = "train",
        image_size: int = 28,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        classes: Optional[Sequence[int]] = None,
        drop_overlap: bool = True,
    ) -> None:
        super().__init__()
        path = _zip_path(root, split)
        self.image_size = v.check_int("image_size", image_size, 1)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None; got {type(transform).__name__}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        with zipfile.ZipFile(path) as archive:
            index = _class_index(archive, path, root, split, bool(drop_overlap))
            all_names = list(index)
            keep = list(range(len(all_names))) if classes is None else _check_classes(classes, len(all_names))
            images: List[np.ndarray] = []
            labels: List[int] = []
            for label, class_id in enumerate(keep):
                for member in index[all_names[class_id]]:
                    images.append(self._decode(archive.read(member)))
                    labels.append(label)
        self.class_ids: List[int] = keep
        self.class_names: List[str] = [all_names[c] for c in keep]
        pixels = torch.from_numpy(np.stack(images)).unsqueeze(1)
        self.images: torch.Tensor = 1.0 - pixels.float() / 255.0
        self.labels: torch.Tensor = torch.tensor(labels, dtype=torch.long)

    def _decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L")
            if img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8).copy()

    @property
    def num_classes(self) -> int:
        """Number of classes C in this (possibly restricted) dataset."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, int]:
        """Returns ``(image, label)``: a float tensor of shape (1, H, W) and an int in [0, C)."""
        image = self.images[idx]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])

    @staticmethod
    def list_classes(
        root: PathLike = DEFAULT_OMNIGLOT_ROOT, split: str = "train", drop_overlap: bool = True
    ) -> List[str]:
        """Sorted ``"<alphabet>/<character>"`` names of a split; index = class id. Decodes nothing.

        ``drop_overlap`` has the meaning it has in the constructor.

        Raises:
            FileNotFoundError: if ``root`` or the split's zip file does not exist.
            ValueError: for an unknown split.
        """
        path = _zip_path(root, split)
        with zipfile.ZipFile(path) as archive:
            return list(_class_index(archive, path, root, split, bool(drop_overlap)))

    @classmethod
    def class_split(
        cls,
        root: PathLike,
        num_val_classes: int,
        seed: int = 0,
        split: str = "train",
        drop_overlap: bool = True,
    ) -> Tuple[List[int], List[int]]:
        """Splits a split's classes at random into two disjoint sorted id lists.

        Example: ``tr, va = Omniglot.class_split(root, 20)`` then
        ``Omniglot(root, "train", classes=tr)`` and ``Omniglot(root, "train", classes=va)``.

        Args:
            root: folder holding the zip files.
            num_val_classes: how many classes go to the validation list, in [1, C - 1].
            seed: seed of the permutation (same seed, same split).
            split: which split's classes to divide (default ``"train"``).
            drop_overlap: as in the constructor (matters for ``split="test"`` only).

        Returns:
            ``(train_class_ids, val_class_ids)``, sorted, together covering all C classes.

        Raises:
            FileNotFoundError: if ``root`` or the split's zip file does not exist.
            TypeError: if num_val_classes or seed is not an int.
            ValueError: if num_val_classes is not in [1, C - 1], or for an unknown split.
        """
        num_classes = len(cls.list_classes(root, split, drop_overlap))
        v.check_int("num_val_classes", num_val_classes)
        v.check_int("seed", seed)
        if not 1 <= num_val_classes <= num_classes - 1:
            raise ValueError(
                f"num_val_classes must be in [1, {num_classes - 1}] for the {num_classes} classes of "
                f"split {split!r}; got {num_val_classes}"
            )
        perm = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
        return sorted(perm[num_val_classes:]), sorted(perm[:num_val_classes])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, image_size={self.image_size}, "
            f"num_classes={self.num_classes}, num_samples={len(self)})"
        )
