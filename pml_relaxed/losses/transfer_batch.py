"""The inputs of a transfer loss, as :class:`BaseTransferLoss` hands them to ``compute_transfer_loss``."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import torch


class TransferBatch(NamedTuple):
    """Student and teacher embeddings of one call, checked, on the student's device, the teacher detached.

    When the call had no reference set, ``ref_emb is embeddings``, ``ref_labels is labels`` and
    ``teacher_ref_emb is teacher_emb`` (PML's convention), and :attr:`self_reference` is True.

    Attributes:
        embeddings: (n, d) student embeddings.
        labels: (n,) labels or None.
        indices_tuple: PML pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``, or None for every pair.
        ref_emb: (m, d) student embeddings of the reference set (``embeddings`` when there is none).
        ref_labels: (m,) reference labels or None.
        teacher_emb: (n, D) teacher embeddings of the same samples.
        teacher_ref_emb: (m, D) teacher embeddings of the reference set (``teacher_emb`` when there is none).
        aux_embeddings: (n, d') embeddings of the same samples from the student's second head, or None (only
            :class:`~pml_relaxed.losses.STMLLoss` reads them).

    Examples:
        >>> import torch
        >>> student, teacher = torch.randn(4, 2), torch.randn(4, 3)
        >>> batch = TransferBatch(student, None, None, student, None, teacher, teacher)
        >>> batch.self_reference, batch.explicit_reference()
        (True, (None, None))
    """

    embeddings: torch.Tensor
    labels: Optional[torch.Tensor]
    indices_tuple: Optional[Sequence[torch.Tensor]]
    ref_emb: torch.Tensor
    ref_labels: Optional[torch.Tensor]
    teacher_emb: torch.Tensor
    teacher_ref_emb: torch.Tensor
    aux_embeddings: Optional[torch.Tensor] = None

    @property
    def self_reference(self) -> bool:
        """True when the reference set is the batch itself (self pairs are then excluded)."""
        return self.ref_emb is self.embeddings

    def explicit_reference(self) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(ref_emb, teacher_ref_emb)`` for a separate reference set, ``(None, None)`` for the batch itself.

        The functional core (:mod:`pml_relaxed.functional`) takes None for "the batch itself".
        """
        return (None, None) if self.self_reference else (self.ref_emb, self.teacher_ref_emb)
