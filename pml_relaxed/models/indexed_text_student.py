"""Packed text rows ``[index, hashed ids...]`` and the student that reads them.

Column 0 of a packed row indexes a table of cached teacher embeddings (:class:`~pml_relaxed.models.CachedTeacher`),
the other columns are the text's padded hashed n-gram ids; PML's trainers and samplers move a batch of such rows
like any tensor batch, the student reads the ids (:class:`IndexedTextStudent`) and the teacher looks its
embeddings up by index.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import _validation as v


class IndexedTextStudent(torch.nn.Module):
    """Feeds the id columns of each packed row (all but the index column 0) to a text model.

    Shapes: rows ``(B, 1 + L)`` int64 -> ``model(rows[:, 1:])``, e.g. ``(B, embedding_dim)``.

    Args:
        model: a text model taking a padded ``(B, L)`` id matrix, e.g. :class:`HashedNgramEmbedder`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Examples:
        >>> from pml_relaxed.models import HashedNgramEmbedder
        >>> student = HashedNgramEmbedder(embedding_dim=4, num_buckets=2**10)
        >>> IndexedTextStudent(student)(pack_text_rows(student, ["top up", "card"])).shape
        torch.Size([2, 4])
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module taking (B, L) ids; got {type(model).__name__}")
        self.model = model

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Args: rows: ``(B, 1 + L)`` packed rows. Returns: the model's output on ``rows[:, 1:]``."""
        if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.shape[1] < 2:
            got = f"shape {tuple(rows.shape)}" if isinstance(rows, torch.Tensor) else type(rows).__name__
            raise ValueError(f"rows must be a (batch, 1 + ids) tensor of packed rows (pack_text_rows); got {got}")
        return self.model(rows[:, 1:])


def pack_text_rows(student, texts: Sequence[str], first_index: int = 0, width: int = 0) -> torch.Tensor:
    """Packs texts into ``(N, 1 + L)`` LongTensor rows: ``[index, hashed ids..., 0 padding]``.

    Row ``i`` holds ``first_index + i`` in column 0 (its row in the teacher's embedding table), then the
    ``L = max(ids width, width)`` id columns of ``student.encode_batch(texts)``, zero-padded.

    Args:
        student: a model with ``encode_batch(texts) -> (N, L)`` ids, e.g. :class:`HashedNgramEmbedder`.
        texts: N strings.
        first_index: index of the first text in the teacher's embedding table, >= 0.
        width: pad the ids to at least this many columns (use one width for every split), >= 0.

    Returns:
        ``(N, 1 + max(L, width))`` int64 tensor.

    Raises:
        TypeError: ``texts`` is a single string or not a sequence of strings; ``student`` has no
            ``encode_batch``; a non-int ``first_index`` or ``width``.
        ValueError: ``first_index`` or ``width`` below 0.

    Examples:
        >>> from pml_relaxed.models import HashedNgramEmbedder
        >>> rows = pack_text_rows(HashedNgramEmbedder(embedding_dim=4, num_buckets=2**10), ["a b", "c"], first_index=3)
        >>> rows[:, 0].tolist()
        [3, 4]
    """
    if not callable(getattr(student, "encode_batch", None)):
        raise TypeError(
            f"student must have encode_batch(texts) -> (N, L) ids (HashedNgramEmbedder); got {type(student).__name__}"
        )
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts must be a sequence of strings; got {type(texts).__name__}")
    v.check_int("first_index", first_index, 0)
    v.check_int("width", width, 0)
    ids = student.encode_batch(list(texts))
    rows = torch.zeros(len(texts), 1 + max(int(ids.shape[1]), width), dtype=torch.long)
    rows[:, 0] = torch.arange(first_index, first_index + len(texts))
    rows[:, 1 : 1 + ids.shape[1]] = ids
    return rows
