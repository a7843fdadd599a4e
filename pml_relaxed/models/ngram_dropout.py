"""N-gram dropout: the text analogue of an image augmentation, for hashed n-gram students."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _validation as v


class NgramDropout:
    """Drops each hashed n-gram id of a text with probability ``p`` (sets it to the padding id 0).

    Two calls on the same batch give two different views of each text, as two crops give two views
    of an image; the student sees the views, while a cached teacher still sees the whole text (its
    cache stays exact). A row whose ids would all be dropped keeps all of them, so no text becomes
    empty. The student's pooling is a (weighted) mean over the ids a row keeps.

    Args:
        p: drop probability of each id, in [0, 1).
        skip_columns: leading columns left as they are (1 for packed rows ``[index, ids...]`` whose
            column 0 indexes a :class:`~pml_relaxed.models.CachedTeacher`).
        generator: an optional ``torch.Generator`` for reproducible masks.

    Shape:
        Input: ``(B, skip_columns + L)`` integer ids, 0 = padding. Output: the same shape and dtype.

    Raises:
        TypeError: ``p`` not a real number, ``skip_columns`` not an int, or (on call) a non-integer
            tensor.
        ValueError: ``p`` outside [0, 1), ``skip_columns`` < 0, or (on call) a tensor that is not 2D
            or has no id column after ``skip_columns``.

    Examples:
        >>> import torch
        >>> from pml_relaxed.models import NgramDropout
        >>> rows = torch.tensor([[0, 5, 7, 9, 0], [1, 3, 4, 0, 0]])  # [cache index, ids..., padding]
        >>> NgramDropout(p=0.5, skip_columns=1)(rows).shape
        torch.Size([2, 5])
    """

    def __init__(self, p: float, skip_columns: int = 0, generator: Optional[torch.Generator] = None) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise TypeError(f"p must be a real number in [0, 1); got {type(p).__name__} ({p!r})")
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1); got {p!r}")
        v.check_int("skip_columns", skip_columns, 0)
        self.p, self.skip_columns, self.generator = float(p), skip_columns, generator

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        integer = isinstance(rows, torch.Tensor) and not (
            rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool
        )
        if not integer:
            kind = type(rows).__name__ if not isinstance(rows, torch.Tensor) else f"tensor of dtype {rows.dtype}"
            raise TypeError(f"NgramDropout takes an integer id tensor; got a {kind}")
        if rows.ndim != 2 or rows.shape[1] <= self.skip_columns:
            raise ValueError(
                f"NgramDropout takes a 2D (batch, {self.skip_columns} + length) id tensor with at least one id "
                f"column; got shape {tuple(rows.shape)}"
            )
        if self.p == 0:
            return rows.clone()
        ids = rows[:, self.skip_columns :]
        present = ids != 0
        keep = torch.rand(ids.shape, generator=self.generator, device=ids.device) >= self.p
        kept = present & keep
        emptied = present.any(dim=1) & ~kept.any(dim=1)
        kept[emptied] = present[emptied]
        out = rows.clone()
        out[:, self.skip_columns :] = torch.where(kept, ids, torch.zeros_like(ids))
        return out

    def __repr__(self) -> str:
        return f"NgramDropout(p={self.p}, skip_columns={self.skip_columns})"
