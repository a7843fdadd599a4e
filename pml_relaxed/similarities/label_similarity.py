"""Hard labels as relaxed labels: 1 for the same class, else 0."""

from __future__ import annotations

import torch

from .base_similarity import BaseSimilarity
from .teacher_inputs import TeacherInputs


class LabelSimilarity(BaseSimilarity):
    """``w_ij = 1`` if ``labels_i == ref_labels_j`` else ``0``; the teacher embeddings only give the shape.

    With it, :class:`~pml_relaxed.losses.RelaxedContrastiveLoss` becomes a classic contrastive loss
    on relative distances (positives pulled to 0, negatives pushed beyond delta): a sanity check,
    and a way to mix hard labels in (see :class:`MixedSimilarity`).
    """

    requires_labels = True

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        teacher_emb = inputs.teacher_emb
        dtype = teacher_emb.dtype if teacher_emb.dtype not in (torch.float16, torch.bfloat16) else torch.float32
        labels = inputs.labels.to(teacher_emb.device)
        same = labels.unsqueeze(1) == inputs.reference_labels.to(teacher_emb.device).unsqueeze(0)
        return same.to(dtype)
