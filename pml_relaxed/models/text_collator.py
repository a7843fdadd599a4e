"""A DataLoader collate function that hashes texts into one tensor PML trainers can move."""

from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

import torch
from torch.utils.data import default_collate

from .ngram_hasher import NgramHasher


class TextCollator:
    """Collates ``(text, label, ...)`` samples into ``(id_matrix, labels, ...)`` tensors.

    PML trainers and testers call ``models["trunk"](c_f.to_device(data, ...))``, which fails on a
    list of strings. This collator replaces the texts of a batch by the padded ``(B, L)`` int64 id
    matrix of :meth:`NgramHasher.encode_batch`, which :class:`HashedNgramEmbedder` accepts
    directly. The remaining fields of each sample (labels, indices, ...) are collated by
    PyTorch's ``default_collate``. Samples that are bare strings give just the id matrix.

    Args:
        hasher: an :class:`NgramHasher`, or a model with a ``hasher`` attribute (e.g. a
            :class:`HashedNgramEmbedder`), whose hashing configuration must match the model's.

    Raises:
        TypeError: ``hasher`` is neither an :class:`NgramHasher` nor has one; when called, a batch
            that is not a non-empty list of str or of tuples whose first item is a str.

    Examples:
        >>> from pml_relaxed.models import HashedNgramEmbedder
        >>> model = HashedNgramEmbedder(num_buckets=2**16)
        >>> collate = TextCollator(model)
        >>> ids, labels = collate([("lost card", 3), ("card stolen", 3)])
        >>> model(ids).shape, labels.tolist()
        (torch.Size([2, 32]), [3, 3])
    """

    def __init__(self, hasher: Union[NgramHasher, Any]) -> None:
        if not isinstance(hasher, NgramHasher):
            hasher = getattr(hasher, "hasher", None)
            if not isinstance(hasher, NgramHasher):
                raise TypeError(
                    "hasher must be an NgramHasher or a model with an NgramHasher `hasher` attribute "
                    f"(e.g. HashedNgramEmbedder); got {type(hasher).__name__}"
                )
        self.hasher = hasher

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hasher!r})"

    def __call__(self, batch: Sequence[Any]) -> Union[torch.Tensor, Tuple[Any, ...]]:
        """Collates a list of samples.

        Args:
            batch: B samples, each a str or a tuple/list ``(text, label, ...)``.

        Returns:
            ``(B, L)`` id matrix for bare strings, else a tuple ``(ids, labels, ...)`` with the other
            fields collated by ``default_collate`` (labels become a ``(B,)`` tensor).

        Raises:
            TypeError: an empty or malformed batch.
        """
        if not isinstance(batch, (list, tuple)) or len(batch) == 0:
            raise TypeError(f"batch must be a non-empty list of samples; got {batch!r:.80}")
        if all(isinstance(sample, str) for sample in batch):
            return self.hasher.encode_batch(list(batch))
        for i, sample in enumerate(batch):
            if not isinstance(sample, (tuple, list)) or len(sample) == 0 or not isinstance(sample[0], str):
                raise TypeError(f"batch[{i}] must be a str or a tuple (text: str, label, ...); got {sample!r:.80}")
        width = len(batch[0])
        if any(len(sample) != width for sample in batch):
            raise TypeError(f"all samples must have the same number of fields; batch[0] has {width}")
        ids = self.hasher.encode_batch([sample[0] for sample in batch])
        rest = [default_collate([sample[j] for sample in batch]) for j in range(1, width)]
        return (ids, *rest)
