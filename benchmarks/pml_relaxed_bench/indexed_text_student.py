"""The benchmark's text inputs: packed rows ``[index, hashed ids...]`` and the student that reads them.

Column 0 indexes the cached teacher embeddings (:class:`~pml_relaxed.models.CachedTeacher`), the other
columns are a text's hashed n-gram ids, so PML's trainers move a text batch like any tensor batch.
"""

from __future__ import annotations

from typing import Sequence

import torch


class IndexedTextStudent(torch.nn.Module):
    """Feeds the id columns of each packed row (all but the index column 0) to a text model.

    Args:
        model: a text model taking a padded (B, L) id matrix, e.g. ``HashedNgramEmbedder``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.model(rows[:, 1:])


def pack_text_rows(student, texts: Sequence[str], first_index: int = 0, width: int = 0) -> torch.Tensor:
    """Packs texts into (N, 1 + L) LongTensor rows: ``[index, hashed ids..., 0 padding]``.

    Args:
        student: a model with ``encode_batch(texts) -> (N, L)`` ids, e.g. ``HashedNgramEmbedder``.
        texts: N strings.
        first_index: index of the first text in the teacher's embedding table.
        width: pad the ids to at least this many columns (use one width for every split).

    Returns:
        (N, 1 + max(L, width)) int64 tensor.
    """
    ids = student.encode_batch(list(texts))
    rows = torch.zeros(len(texts), 1 + max(int(ids.shape[1]), width), dtype=torch.long)
    rows[:, 0] = torch.arange(first_index, first_index + len(texts))
    rows[:, 1 : 1 + ids.shape[1]] = ids
    return rows
