"""Reproducible augmented views: view v of sample i is the same image every time it is drawn."""

from __future__ import annotations

import hashlib
import random
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import _validation as v

_SEED_MASK = (1 << 63) - 1


def view_seed(seed: int, index: int, view: int) -> int:
    """The seed of view ``view`` of sample ``index``: the first 8 bytes of SHA-256(``"seed:index:view"``), < 2**63.

    Examples:
        >>> view_seed(0, 3, 1) == view_seed(0, 3, 1) != view_seed(0, 3, 0)
        True
    """
    digest = hashlib.sha256(f"{seed}:{index}:{view}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MASK


def _transform_parts(transform: Any) -> List[Any]:
    parts = [transform]
    for inner in getattr(transform, "transforms", None) or []:
        parts.extend(_transform_parts(inner))
    return parts


def transform_fingerprint(transform: Optional[Callable]) -> str:
    """SHA-256 of the transform's class and ``repr`` (its parameters), of a function's module and name, or ``"none"``.

    A ``repr`` that holds an address (the default ``<... object at 0x...>``) says nothing of the parameters and
    changes between runs; only the class name is used then, so two such transforms of the same class compare equal
    (as do two lambdas of one module): give a transform class a ``repr`` that states its parameters.
    """
    if transform is None:
        return "none"
    kind = f"{type(transform).__module__}.{type(transform).__qualname__}"
    text = repr(transform)
    if isinstance(transform, (types.FunctionType, types.BuiltinFunctionType)):
        kind, text = f"{transform.__module__}.{transform.__qualname__}", ""
    elif " at 0x" in text:
        text = ""
    return hashlib.sha256(f"{kind}:{text}".encode("utf-8")).hexdigest()


def split_item(item: Any) -> Tuple[Any, Any]:
    """``(x, label)`` of a dataset item: a ``(x, label, ...)`` tuple, a ``(x,)`` tuple (label None) or a bare x."""
    if isinstance(item, (tuple, list)):
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


class SeededViewDataset(Dataset):
    """Wraps a dataset of ``(x, label)`` into items ``(views (k, ...), label, view_ids (k, 2))``, each view seeded.

    View ``v`` of sample ``i`` is ``transform(x_i)`` run with torch's (CPU), numpy's and Python's global generators
    seeded with :func:`view_seed` ``(seed, i, v)`` (their states are restored afterwards), so it is the same
    image in every epoch, every worker and every process: the image whose teacher embedding
    :class:`~pml_relaxed.models.TeacherCache` stored. ``view_ids`` holds the rows ``[i, v]``; with
    :func:`seeded_view_collate` a batch of B items is ``(inputs (B*k, ...), labels (B*k,), view_ids (B*k, 2))``
    (the k views of an item adjacent), which :class:`~pml_relaxed.trainers.EmbeddingTransfer` reads to look the
    teacher's embeddings up.

    Which views an item carries: with ``view_pool = P`` (default ``num_views``), epoch ``e`` (:meth:`set_epoch`)
    gives views ``(e * k + j) mod P`` for ``j < k``: over the epochs the student sees P augmentations of each
    sample, all of them in a cache built with ``views=P``.

    A transform that draws from its own ``torch.Generator`` (e.g. ``RandomAffine(generator=g)``) is refused: its
    draws would not follow the seed.

    Args:
        dataset: a map-style dataset returning ``(x, label)``, ``(x,)`` or ``x``.
        transform: the augmentation (None: every view is ``x``).
        num_views: k >= 1 views per item.
        seed: the seed of the views.
        view_pool: P >= k views drawn from over the epochs, or None (k).

    Raises:
        TypeError: a non-int ``num_views``, ``seed`` or ``view_pool``.
        ValueError: ``num_views < 1``, ``view_pool < num_views``, a transform with its own generator.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Optional[Callable[[Any], Any]] = None,
        num_views: int = 2,
        seed: int = 0,
        view_pool: Optional[int] = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.num_views = v.check_int("num_views", num_views, minimum=1)
        self.seed = v.check_int("seed", seed)
        self.view_pool = v.check_int("view_pool", self.num_views if view_pool is None else view_pool, minimum=1)
        if self.view_pool < self.num_views:
            raise ValueError(f"view_pool must be >= num_views ({self.num_views}); got {self.view_pool}")
        for part in _transform_parts(transform):
            if isinstance(getattr(part, "generator", None), torch.Generator):
                raise ValueError(
                    f"transform {type(part).__name__} draws from its own generator, which the view seed does not "
                    "control; build it with generator=None (SeededViewDataset seeds the global generators per view)"
                )
        self.epoch = 0

    @property
    def labels(self):
        """Labels of the wrapped dataset (for PML's MPerClassSampler)."""
        return self.dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Picks the views of epoch ``epoch`` (see the class docstring); a DataLoader sees it on its next iterator."""
        self.epoch = v.check_int("epoch", epoch, minimum=0)

    def state_dict(self) -> Dict[str, int]:
        """``{"epoch": ...}``: which views the items carry."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Restores :meth:`state_dict`."""
        self.set_epoch(state["epoch"])

    def view_numbers(self) -> List[int]:
        """The view numbers the items carry in the current epoch."""
        return [(self.epoch * self.num_views + j) % self.view_pool for j in range(self.num_views)]

    def view(self, index: int, view: int) -> torch.Tensor:
        """View ``view`` of sample ``index``: ``transform(x)`` under the generators seeded by (seed, index, view)."""
        x, _ = split_item(self.dataset[index])
        if self.transform is None:
            return torch.as_tensor(x)
        seed = view_seed(self.seed, index, view)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed & 0xFFFFFFFF)
                return torch.as_tensor(self.transform(x))
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Any, torch.Tensor]:
        _, label = split_item(self.dataset[index])
        numbers = self.view_numbers()
        views = torch.stack([self.view(index, number) for number in numbers])
        ids = torch.tensor([[index, number] for number in numbers], dtype=torch.long)
        return views, label, ids

    def fingerprint(self) -> Dict[str, Any]:
        """What a teacher cache built from this dataset records of it: size, transform, seed and two probe views.

        ``probe`` is a SHA-256 of the bytes of view 0 of the first and the last sample: another dataset of the
        same size, or the same one in another order, gives another probe.
        """
        digest = hashlib.sha256()
        for index in sorted({0, len(self) - 1}) if len(self) else []:
            digest.update(self.view(index, 0).detach().cpu().contiguous().numpy().tobytes())
        return {
            "size": len(self),
            "transform": transform_fingerprint(self.transform),
            "seed": self.seed,
            "probe": digest.hexdigest(),
        }


def seeded_view_collate(
    batch: Sequence[Tuple[torch.Tensor, Any, torch.Tensor]],
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Collates :class:`SeededViewDataset` items into ``(inputs (B*k, ...), labels (B*k,) or None, view_ids (B*k, 2))``.

    The k views of item b are rows ``b*k .. b*k + k - 1``; labels are None when the items have none.
    """
    inputs = torch.cat([item[0] for item in batch], dim=0)
    ids = torch.cat([item[2] for item in batch], dim=0)
    if any(item[1] is None for item in batch):
        return inputs, None, ids
    num_views = batch[0][0].shape[0]
    labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
    return inputs, labels.repeat_interleave(num_views), ids
