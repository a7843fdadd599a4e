"""A teacher whose embeddings were computed once: inputs carry their row index in column 0."""

from __future__ import annotations

import torch

from .. import _validation as v


class CachedTeacher(torch.nn.Module):
    """Looks teacher embeddings up by the sample index stored in column 0 of each input row.

    For data without augmentation (texts, precomputed features) the teacher's embeddings can be
    computed once, e.g. with :meth:`SentenceTransformerTeacher.encode`, and this module then serves
    them to :class:`~pml_relaxed.trainers.EmbeddingTransfer` at no cost. Each input row starts with the
    sample's index into ``embeddings`` (column 0), followed by whatever the student reads (e.g. a text's
    hashed n-gram ids, which the student then takes as ``rows[:, 1:]``).

    It is the in-memory, one-view case of :class:`~pml_relaxed.models.TeacherCache`, which keeps the embeddings
    on disk (memory-mapped), holds several seeded augmented views per sample, checks the teacher and the dataset
    it was built from, and survives a killed build; :class:`~pml_relaxed.trainers.EmbeddingTransfer` takes it as
    ``teacher_cache=`` and reads the (index, view) ids from the batch instead of column 0. A one-view
    ``TeacherCache`` becomes a ``CachedTeacher`` with ``CachedTeacher(cache.lookup(torch.arange(len(cache))))``.

    Args:
        embeddings: (N, D) teacher embeddings of every sample that can appear in a batch.

    Shape:
        Input (B, 1 + L) integer rows; output (B, D).

    Raises:
        TypeError, ValueError: embeddings that are not a finite 2D float tensor.
    """

    def __init__(self, embeddings: torch.Tensor) -> None:
        super().__init__()
        v.check_embeddings("embeddings", embeddings, "(num_samples, teacher_dim)")
        v.check_finite("embeddings", embeddings)
        self.register_buffer("embeddings", embeddings.detach().float())

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        index = rows[:, 0].long()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.embeddings.shape[0]):
            raise ValueError(
                f"rows[:, 0] must hold sample indices in [0, {self.embeddings.shape[0]}); "
                f"got values in [{int(index.min())}, {int(index.max())}]"
            )
        return self.embeddings[index]
