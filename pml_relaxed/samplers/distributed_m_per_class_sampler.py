"""PML's MPerClassSampler for DistributedDataParallel: class-balanced global batches split across ranks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class DistributedMPerClassSampler(Sampler):
    """m samples per class in every batch, as PML's ``MPerClassSampler``, shared out among DDP ranks.

    Every pass draws one *global* index list with PML's MPerClassSampler rules, for global batches of
    ``batch_size * num_replicas`` samples: each global batch takes ``batch_size * num_replicas // m``
    distinct classes (shuffled) and m samples of each (without replacement when the class has m,
    with replacement otherwise). Rank r gets rows ``[r * batch_size, (r + 1) * batch_size)`` of every
    global batch, so each local batch is class-balanced (``batch_size // m`` classes, m samples each),
    the ranks' shares are disjoint and of equal length, and the concatenation of the local batches in
    rank order (what :mod:`pml_relaxed.distributed`'s wrappers gather) is exactly the global batch of
    ``DistributedMPerClassSampler(labels, m, batch_size * num_replicas, num_replicas=1)``. With
    ``batch_size=None`` the global list is PML's sequence of m-sample class blocks (all classes
    shuffled per pass), and rank r gets the blocks r, r + num_replicas, ...

    The list depends only on ``seed`` and the epoch, never on global random state, so every rank draws
    the same list. Like DistributedSampler, ``set_epoch(epoch)`` selects the epoch of the next pass;
    each pass then advances the epoch by one, so that without calls to ``set_epoch`` (PML's trainers
    make none) every pass still draws a new list, identically on every rank. ``state_dict()`` /
    ``load_state_dict()`` save and restore that epoch, so a run resumed from a checkpoint (see
    :func:`pml_relaxed.trainers.register_training_state`) draws the lists the uninterrupted run would have.

    Args:
        labels: (num_samples,) labels of the dataset, a sequence or 1D tensor/array.
        m: samples per class in a batch, >= 1.
        batch_size: the per-rank batch size (what each rank's DataLoader uses), a multiple of m; or None.
        length_before_new_iter: length of the global list per pass (as PML's), rounded down to a
            multiple of the global batch size (or of ``m * num_replicas``); each rank gets
            ``length // num_replicas`` indices.
        num_replicas: number of ranks; default: the process group's world size, or 1 without one.
        rank: this rank; default: the process group's rank, or 0 without one.
        seed: base seed of the per-epoch random generator.

    Raises:
        TypeError: non-integer m, batch_size, length_before_new_iter, num_replicas, rank or seed.
        ValueError: m or batch_size < 1, batch_size not a multiple of m, fewer than
            ``batch_size * num_replicas // m`` classes, a length shorter than one global batch,
            rank outside ``[0, num_replicas)``, labels that are not 1D.

    Examples:
        >>> from pml_relaxed.samplers import DistributedMPerClassSampler
        >>> labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        >>> shares = [DistributedMPerClassSampler(labels, m=2, batch_size=4, length_before_new_iter=16,
        ...                                       num_replicas=2, rank=r) for r in range(2)]
        >>> [len(s) for s in shares]
        [8, 8]
        >>> local = list(shares[0])[:4]  # rank 0's first batch: 2 classes, 2 samples each
        >>> sorted(labels[i] for i in local)[0::2] == sorted({labels[i] for i in local})
        True
    """

    def __init__(
        self,
        labels: Sequence[int],
        m: int,
        batch_size: int | None = None,
        length_before_new_iter: int = 100000,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1D (one label per sample); got shape {labels.shape}")
        self.m_per_class = _check_int("m", m, minimum=1)
        self.batch_size = None if batch_size is None else _check_int("batch_size", batch_size, minimum=1)
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.num_replicas = _check_int("num_replicas", num_replicas, minimum=1)
        self.rank = _check_int("rank", rank, minimum=0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas) = [0, {self.num_replicas}); got {self.rank}")
        self.seed = _check_int("seed", seed, minimum=0)
        self.epoch = 0
        classes, inverse = np.unique(labels, return_inverse=True)
        self.classes = classes
        self.indices_per_class: list[np.ndarray] = [np.flatnonzero(inverse == c) for c in range(len(classes))]
        length = _check_int("length_before_new_iter", length_before_new_iter, minimum=1)
        if self.batch_size is None:
            unit = self.m_per_class * self.num_replicas
        else:
            unit = self.global_batch_size
            if self.batch_size % self.m_per_class != 0:
                raise ValueError(
                    f"batch_size must be a multiple of m (each batch holds batch_size // m whole classes); got "
                    f"batch_size={self.batch_size}, m={self.m_per_class}"
                )
            if self.m_per_class * len(classes) < unit:
                raise ValueError(
                    f"m * number of classes must be >= batch_size * num_replicas (the classes of a global batch are "
                    f"distinct); got {self.m_per_class} * {len(classes)} < {self.batch_size} * {self.num_replicas}"
                )
        if length < unit:
            raise ValueError(
                f"length_before_new_iter must hold at least one global batch of {unit} samples; got {length}"
            )
        self.list_size = length - length % unit

    @property
    def global_batch_size(self) -> int | None:
        """``batch_size * num_replicas``: the batch the ranks see together (None without batch_size)."""
        return None if self.batch_size is None else self.batch_size * self.num_replicas

    def __len__(self) -> int:
        return self.list_size // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (hence the random list) of the next pass, as DistributedSampler.set_epoch."""
        self.epoch = _check_int("epoch", epoch, minimum=0)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e}``: the epoch of the next pass, all a resumed run needs to draw the same lists."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (the epoch of the next pass), as ``set_epoch``."""
        self.set_epoch(int(state_dict["epoch"]))

    def global_indices(self, epoch: int) -> np.ndarray:
        """The global index list of a pass (the same on every rank)."""
        rng = np.random.default_rng([self.seed, epoch])
        classes_per_draw = len(self.classes) if self.batch_size is None else self.global_batch_size // self.m_per_class
        chunks, total = [], 0
        while total < self.list_size:
            for c in rng.permutation(len(self.classes))[:classes_per_draw]:
                pool = self.indices_per_class[c]
                chunks.append(rng.choice(pool, size=self.m_per_class, replace=len(pool) < self.m_per_class))
                total += self.m_per_class
        return np.concatenate(chunks)[: self.list_size]

    def local_indices(self, epoch: int) -> np.ndarray:
        """This rank's share of the pass of ``epoch``."""
        indices = self.global_indices(epoch)
        block = self.m_per_class if self.batch_size is None else self.batch_size
        return indices.reshape(-1, self.num_replicas, block)[:, self.rank].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        indices = self.local_indices(self.epoch)
        self.epoch += 1
        return iter(indices.tolist())


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)
