"""Base class of the teacher kernels that turn teacher embeddings into relaxed labels."""
from __future__ import annotations

from typing import Optional

import torch

from .. import _validation as v


class BaseSimilarity(torch.nn.Module):
    """Maps teacher embeddings of queries (n, D) and references (m, D) to weights in [0, 1], shape (n, m).

    Subclasses implement :meth:`compute_mat`. Weights carry no gradient: the teacher is frozen.
    ``requires_labels`` says whether the similarity reads class labels instead of (or besides)
    the teacher embeddings.
    """

    requires_labels: bool = False

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
        v.check_embeddings("teacher_emb", teacher_emb, "(batch_size, teacher_dim)")
        if teacher_ref_emb is not None:
            v.check_embeddings("teacher_ref_emb", teacher_ref_emb, "(num_ref, teacher_dim)")
            v.check_same_cols("teacher_ref_emb", teacher_ref_emb, "teacher_emb", teacher_emb)
        if self.requires_labels:
            v.check_required(
                "labels", labels, f"{type(self).__name__} builds relaxed labels from class labels"
            )
            v.check_labels("labels", labels, teacher_emb.shape[0], "teacher_emb")
            if ref_labels is not None:
                num_ref = teacher_emb.shape[0] if teacher_ref_emb is None else teacher_ref_emb.shape[0]
                v.check_labels("ref_labels", ref_labels, num_ref, "teacher_ref_emb")
        with torch.no_grad():
            return self.compute_mat(teacher_emb.detach(), teacher_ref_emb, labels, ref_labels)

    def compute_mat(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        ref_labels: Optional[torch.Tensor],
    ) -> torch.Tensor:
        raise NotImplementedError
