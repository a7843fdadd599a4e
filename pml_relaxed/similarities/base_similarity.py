"""Base class of the teacher kernels that turn teacher embeddings into relaxed labels."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .. import _validation as v


class BaseSimilarity(torch.nn.Module):
    """Maps teacher embeddings of queries (n, D) and references (m, D) to weights in [0, 1], shape (n, m).

    Subclasses implement :meth:`compute_mat`. Weights carry no gradient: the teacher is frozen.
    ``requires_labels`` says whether the similarity reads class labels instead of (or besides)
    the teacher embeddings.
    """

    requires_labels: bool = False
    supports_blocks: bool = True
    """Row blocks of the relaxed labels can be computed on their own (see :meth:`rows`). A similarity whose
    rows depend on the whole batch (e.g. neighbourhood-based ones) sets this to False; the relaxed losses
    then refuse ``block_size > 0`` instead of silently computing the full matrix."""
    rows_from_whole_matrix: bool = False
    """:meth:`rows` computes the whole matrix once and hands out a copy of each row block (the blockwise losses
    overwrite it): for a similarity that cannot compute a block on its own, or that holds the matrix."""

    def forward(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Relaxed labels w (n, m) in [0, 1].

        Args:
            teacher_emb: (n, D) teacher embeddings of the queries.
            teacher_ref_emb: (m, D) teacher embeddings of the references, or None for the queries.
            labels: (n,) class labels, for similarities with ``requires_labels``.
            ref_labels: (m,) reference labels, or None for ``labels``.

        Raises:
            TypeError, ValueError: a non-2D or non-float teacher tensor, or missing/mis-sized labels.
        """
        self.check_inputs(teacher_emb, teacher_ref_emb, labels, ref_labels)
        with torch.no_grad():
            return self.compute_mat(teacher_emb.detach(), teacher_ref_emb, labels, ref_labels)

    def check_inputs(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        ref_labels: Optional[torch.Tensor],
    ) -> None:
        """Shape, dtype and label checks of :meth:`forward` (no host synchronisation)."""
        v.check_embeddings("teacher_emb", teacher_emb, "(batch_size, teacher_dim)")
        if teacher_ref_emb is not None:
            v.check_embeddings("teacher_ref_emb", teacher_ref_emb, "(num_ref, teacher_dim)")
            v.check_same_cols("teacher_ref_emb", teacher_ref_emb, "teacher_emb", teacher_emb)
        if self.requires_labels:
            v.check_required("labels", labels, f"{type(self).__name__} builds relaxed labels from class labels")
            v.check_labels("labels", labels, teacher_emb.shape[0], "teacher_emb")
            if ref_labels is not None:
                num_ref = teacher_emb.shape[0] if teacher_ref_emb is None else teacher_ref_emb.shape[0]
                v.check_labels("ref_labels", ref_labels, num_ref, "teacher_ref_emb")

    def rows(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
    ) -> Callable[[int, int], torch.Tensor]:
        """Relaxed labels one row block at a time: ``rows(start, end)`` equals ``self(...)[start:end]``.

        The blockwise losses call it; the default slices the queries and calls :meth:`forward` against the
        whole reference set (with ``rows_from_whole_matrix``: slices the whole matrix, computed once). Subclasses
        may override it to prepare the teacher once (see GaussianKernel).
        """
        if self.rows_from_whole_matrix:
            full = self(teacher_emb, teacher_ref_emb, labels, ref_labels)
            return lambda start, end: full[start:end].clone()
        full_ref = teacher_emb if teacher_ref_emb is None else teacher_ref_emb
        full_ref_labels = labels if ref_labels is None else ref_labels

        def block(start: int, end: int) -> torch.Tensor:
            if start == 0 and end == teacher_emb.shape[0]:
                return self(teacher_emb, teacher_ref_emb, labels, ref_labels)
            block_labels = None if labels is None else labels[start:end]
            return self(teacher_emb[start:end], full_ref, block_labels, full_ref_labels)

        return block

    def compute_mat(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        ref_labels: Optional[torch.Tensor],
    ) -> torch.Tensor:
        raise NotImplementedError
