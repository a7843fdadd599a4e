"""Omniglot "background small" splits, decoded straight from the original zip files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import _validation as v
from ._pillow import pillow_image
from .data_root import PathLike, default_root_attribute, how_to_set, resolve_root

#: Zip file read for each split.
SPLIT_FILES: Dict[str, str] = {
    "train": "images_background_small1.zip",
    "test": "images_background_small2.zip",
}


#: the dataset's folder name below ``$PML_RELAXED_DATA`` or the cache, and its own environment variable
NAME, ENV_VAR = "omniglot", "PML_RELAXED_OMNIGLOT"
#: the folder of Lake et al.'s repository holding the zip files (MIT licence)
SOURCE_URL = "https://github.com/brendenlake/omniglot/raw/master/python"


#: ``DEFAULT_OMNIGLOT_ROOT``: the folder read without ``root=`` (computed when read, see :mod:`.data_root`)
__getattr__ = default_root_attribute(__name__, "DEFAULT_OMNIGLOT_ROOT", NAME, ENV_VAR)


def _get_data(root: Path) -> str:
    return (
        f"download {' and '.join(SPLIT_FILES.values())} from {SOURCE_URL} into {str(root)!r} (download=True "
        f"does it through torchvision's downloader), or {how_to_set(NAME, ENV_VAR)}"
    )


def download(root: PathLike, split: str) -> Path:
    """Downloads the zip file of ``split`` into ``root`` (created if needed) unless it is there already.

    Uses torchvision's downloader (``pip install 'pml-relaxed[vision]'``), which needs internet.

    Returns:
        The path of the zip file.

    Raises:
        ValueError: an unknown split.
        ImportError: torchvision is not installed.
    """
    if not isinstance(split, str) or split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}; got {split!r}")
    path = Path(root) / SPLIT_FILES[split]
    if path.is_file():
        return path
    try:
        from torchvision.datasets.utils import download_url
    except ImportError as err:
        raise ImportError(
            "Omniglot(download=True) uses torchvision's downloader, which is not installed: "
            "pip install 'pml-relaxed[vision]' (or download the zip files yourself from " + SOURCE_URL + ")"
        ) from err
    download_url(f"{SOURCE_URL}/{SPLIT_FILES[split]}", root=str(root), filename=SPLIT_FILES[split])
    return path


def _zip_path(root: Optional[PathLike], split: str, download_missing: bool = False) -> Path:
    if not isinstance(split, str) or split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}; got {split!r}")
    root, source = resolve_root(root, NAME, ENV_VAR)
    if download_missing:
        download(root, split)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Omniglot root {str(root)!r} (from {source}) does not exist or is not a folder; expected a folder "
            f"holding {SPLIT_FILES['train']} and {SPLIT_FILES['test']}: {_get_data(root)}"
        )
    path = root / SPLIT_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(
            f"Omniglot {split!r} split needs the file {str(path)!r}, which does not exist; expected "
            f"{SPLIT_FILES[split]} inside root {str(root)!r}: {_get_data(root)}"
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
        raise ValueError(f"{str(path)!r} holds no images laid out as <top>/<alphabet>/<character>/<file>.png")
    return {key: sorted(names) for key, names in sorted(members.items())}


def _class_index(
    archive: zipfile.ZipFile, path: Path, split: str, drop_overlap: bool, download_missing: bool = False
) -> Dict[str, List[str]]:
    """The split's class index; for ``"test"`` with drop_overlap, minus the classes of the train zip beside it."""
    index = _index_zip(archive, path)
    if split == "test" and drop_overlap:
        train_path = _zip_path(path.parent, "train", download_missing)
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

    The zip files are those of Lake et al.'s repository (https://github.com/brendenlake/omniglot, folder
    ``python``); ``download=True`` fetches the missing ones.

    Args:
        root: folder holding the two zip files. None (default): ``$PML_RELAXED_OMNIGLOT``, else
            ``$PML_RELAXED_DATA/omniglot``, else ``~/.cache/pml_relaxed/omniglot``
            (see :mod:`pml_relaxed.datasets.data_root`).
        split: ``"train"`` or ``"test"``.
        image_size: side of the square output images, in pixels (originals are 105).
        transform: optional callable applied to each (1, H, W) image tensor in ``__getitem__``.
        classes: optional ids of the classes to keep, numbered as in
            ``list_classes(root, split, drop_overlap)`` (e.g. from :meth:`class_split`).
        drop_overlap: for ``split="test"``, leave out the characters also present in the train
            zip (which must then exist). Ignored for ``split="train"``.
        download: download the zip files this split needs into root when they are missing, with
            torchvision's downloader (``pip install 'pml-relaxed[vision]'``, needs internet).

    Attributes:
        images: float tensor of shape (N, 1, image_size, image_size), values in [0, 1].
        labels: LongTensor of shape (N,), contiguous class ids ``0..C-1``.
        class_names: list of C ``"<alphabet>/<character>"`` names, indexed by label.
        class_ids: list of C ids of the kept classes, numbered as in ``list_classes``.

    Raises:
        FileNotFoundError: if ``root`` or the split's zip file does not exist (the message says where it
            looked and where the files come from).
        ValueError: for an unknown split, image_size < 1, or bad ``classes``.
        TypeError: for a non-int image_size, non-callable transform, non-int class ids or non-bool download.
        ImportError: ``download=True`` without torchvision.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        image_size: int = 28,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        classes: Optional[Sequence[int]] = None,
        drop_overlap: bool = True,
        download: bool = False,
    ) -> None:
        super().__init__()
        path = _zip_path(root, split, v.check_bool("download", download))
        self.image_size = v.check_int("image_size", image_size, 1)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None; got {type(transform).__name__}")
        self.root = path.parent
        self.split = split
        self.transform = transform
        with zipfile.ZipFile(path) as archive:
            index = _class_index(archive, path, split, bool(drop_overlap), download)
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
        pil = pillow_image("Omniglot")
        with pil.open(io.BytesIO(data)) as img:
            img = img.convert("L")
            if img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), pil.BILINEAR)
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
    def list_classes(root: Optional[PathLike] = None, split: str = "train", drop_overlap: bool = True) -> List[str]:
        """Sorted ``"<alphabet>/<character>"`` names of a split; index = class id. Decodes nothing.

        ``drop_overlap`` has the meaning it has in the constructor.

        Raises:
            FileNotFoundError: if ``root`` or the split's zip file does not exist.
            ValueError: for an unknown split.
        """
        path = _zip_path(root, split)
        with zipfile.ZipFile(path) as archive:
            return list(_class_index(archive, path, split, bool(drop_overlap)))

    @classmethod
    def class_split(
        cls,
        root: Optional[PathLike],
        num_val_classes: int,
        seed: int = 0,
        split: str = "train",
        drop_overlap: bool = True,
    ) -> Tuple[List[int], List[int]]:
        """Splits a split's classes at random into two disjoint sorted id lists.

        Example: ``tr, va = Omniglot.class_split(root, 20)`` then
        ``Omniglot(root, "train", classes=tr)`` and ``Omniglot(root, "train", classes=va)``.

        Args:
            root: folder holding the zip files (None: the default of the constructor).
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
