"""BANKING77 intents with a class-disjoint (zero-shot) train / val / test split."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.data import Dataset

from .. import _validation as v
from .data_root import PathLike, default_root_attribute, how_to_set, resolve_root

#: The first NUM_TRAIN_INTENTS intents of categories.json are training intents, the rest test.
NUM_TRAIN_INTENTS = 39
SPLITS: Tuple[str, ...] = ("train", "val", "test")


#: the dataset's folder name below ``$PML_RELAXED_DATA`` or the cache, and its own environment variable
NAME, ENV_VAR = "banking77", "PML_RELAXED_BANKING77"
#: where the three files come from (PolyAI, CC-BY-4.0)
SOURCE_URL = "https://github.com/PolyAI-LDN/task-specific-datasets/tree/master/banking_data"
FILES = ("train.csv", "test.csv", "categories.json")


#: ``DEFAULT_BANKING77_ROOT``: the folder read without ``root=`` (computed when read, see :mod:`.data_root`)
__getattr__ = default_root_attribute(__name__, "DEFAULT_BANKING77_ROOT", NAME, ENV_VAR)


def _get_data(root: Path) -> str:
    return f"download {', '.join(FILES)} from {SOURCE_URL} into {str(root)!r}, or {how_to_set(NAME, ENV_VAR)}"


def _read_categories(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        categories = json.load(f)
    if (
        not isinstance(categories, list)
        or not all(isinstance(c, str) for c in categories)
        or len(set(categories)) != len(categories)
        or len(categories) <= NUM_TRAIN_INTENTS
    ):
        raise ValueError(
            f"{str(path)!r} must hold a JSON list of more than {NUM_TRAIN_INTENTS} distinct intent "
            f"names; got {type(categories).__name__} of length {len(categories)}"
        )
    return categories


def _read_rows(path: Path, known: Dict[str, int]) -> List[Tuple[str, str]]:
    """(text, category) rows of a ``text,category`` CSV (quoted commas and newlines allowed)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ValueError(f"{str(path)!r} must have the columns text,category; got {reader.fieldnames}")
        rows = [(row["text"], row["category"]) for row in reader]
    unknown = sorted({c for _, c in rows if c not in known})
    if unknown:
        raise ValueError(f"{str(path)!r} has intents missing from categories.json: {unknown[:5]}")
    return rows


class Banking77(Dataset):
    """BANKING77 customer-service queries, split by intent for embedding transfer.

    The first 39 intents of ``categories.json`` are training intents (rows of ``train.csv``), the
    other 38 are test intents (rows of ``test.csv``), so train and test share no class. For
    choosing hyper-parameters, ``num_val_classes`` training intents (drawn with ``seed``) are
    held out: ``split="val"`` gives their ``train.csv`` rows and ``split="train"`` the rest.
    Labels are contiguous 0-based within the split, in ``categories.json`` order. Texts are
    stripped of leading and trailing whitespace.

    The data is PolyAI's (CC-BY-4.0, https://github.com/PolyAI-LDN/task-specific-datasets, folder
    ``banking_data``); it is never downloaded here.

    Args:
        root: folder holding ``train.csv``, ``test.csv`` (columns ``text,category``) and
            ``categories.json``. None (default): ``$PML_RELAXED_BANKING77``, else
            ``$PML_RELAXED_DATA/banking77``, else ``~/.cache/pml_relaxed/banking77``
            (see :mod:`pml_relaxed.datasets.data_root`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_val_classes: training intents held out for ``"val"``, in [0, 38]; must be >= 1
            for ``split="val"``. Use the same value and seed for the train and val datasets.
        seed: seed of the held-out intent draw.

    Attributes:
        texts: list of N query strings.
        labels: LongTensor of shape (N,), contiguous class ids ``0..C-1``.
        intents: list of C intent names; index = label.

    Raises:
        FileNotFoundError: if root or one of its three files is missing (the message says where it looked
            and where the files come from).
        ValueError: for an unknown split, num_val_classes out of range (or 0 with
            ``split="val"``), or malformed files.
        TypeError: if num_val_classes or seed is not an int.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        num_val_classes: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(split, str) or split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
        v.check_int("num_val_classes", num_val_classes)
        v.check_int("seed", seed)
        if not 0 <= num_val_classes <= NUM_TRAIN_INTENTS - 1:
            raise ValueError(f"num_val_classes must be in [0, {NUM_TRAIN_INTENTS - 1}]; got {num_val_classes}")
        if split == "val" and num_val_classes == 0:
            raise ValueError("split='val' needs num_val_classes >= 1; got num_val_classes=0")
        root, source = resolve_root(root, NAME, ENV_VAR)
        files = ("categories.json", "test.csv" if split == "test" else "train.csv")
        if not root.is_dir():
            raise FileNotFoundError(
                f"Banking77 root {str(root)!r} (from {source}) does not exist or is not a folder; expected a folder "
                f"holding {', '.join(FILES)}: {_get_data(root)}"
            )
        for name in files:
            if not (root / name).is_file():
                raise FileNotFoundError(
                    f"Banking77 split {split!r} needs the file {str(root / name)!r}, which does not exist: "
                    f"{_get_data(root)}"
                )
        categories = _read_categories(root / files[0])
        self.root = root
        self.split = split
        self.intents: List[str] = self._split_intents(categories, split, num_val_classes, seed)
        lookup = {name: i for i, name in enumerate(self.intents)}
        rows = _read_rows(root / files[1], {c: i for i, c in enumerate(categories)})
        kept = [(text.strip(), lookup[cat]) for text, cat in rows if cat in lookup]
        self.texts: List[str] = [text for text, _ in kept]
        self.labels: torch.Tensor = torch.tensor([label for _, label in kept], dtype=torch.long)

    @staticmethod
    def _split_intents(categories: List[str], split: str, num_val: int, seed: int) -> List[str]:
        if split == "test":
            return categories[NUM_TRAIN_INTENTS:]
        perm = torch.randperm(NUM_TRAIN_INTENTS, generator=torch.Generator().manual_seed(seed))
        held_out = set(perm[:num_val].tolist())
        wanted = (lambda i: i in held_out) if split == "val" else (lambda i: i not in held_out)
        return [c for i, c in enumerate(categories[:NUM_TRAIN_INTENTS]) if wanted(i)]

    @property
    def num_classes(self) -> int:
        """Number of intents C in the split."""
        return len(self.intents)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, idx: int) -> Tuple[str, int]:
        """Returns ``(text, label)`` with label an int in [0, C)."""
        return self.texts[idx], int(self.labels[idx])

    def __repr__(self) -> str:
        return f"Banking77(split={self.split!r}, num_classes={self.num_classes}, num_samples={len(self)})"
