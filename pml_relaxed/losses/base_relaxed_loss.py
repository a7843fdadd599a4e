"""Shared machinery of the relaxed losses: relaxed labels, relative distances, pair mask."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from pytorch_metric_learning.distances import LpDistance

from .. import _validation as v
from .. import functional as fn
from ..similarities import BaseSimilarity, GaussianKernel
from .base_transfer_loss import BaseTransferLoss


class BaseRelaxedLoss(BaseTransferLoss):
    """Computes relaxed labels w (teacher), relative distances d (student) and the pair mask, then
    calls :meth:`per_anchor_losses`.

    Args:
        sigma: bandwidth of the default :class:`~pml_relaxed.similarities.GaussianKernel`, > 0.
        delta: margin on relative distances, >= 0.
        normalize_teacher: L2-normalise teacher embeddings in the default kernel.
        similarity: a :class:`~pml_relaxed.similarities.BaseSimilarity` replacing the Gaussian kernel;
            then leave ``sigma`` and ``normalize_teacher`` at their defaults.
        **kwargs: PML's ``distance``, ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``,
            ``collect_stats``. The default distance is the unnormalised Euclidean distance.

    Raises:
        TypeError: a similarity that is not a BaseSimilarity.
        ValueError: sigma <= 0, delta < 0, or sigma/normalize_teacher set together with similarity.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        delta: float = 1.0,
        normalize_teacher: bool = True,
        similarity: Optional[BaseSimilarity] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.delta = v.check_non_negative("delta", delta)
        if similarity is None:
            similarity = GaussianKernel(sigma=sigma, normalize=normalize_teacher)
        else:
            if not isinstance(similarity, BaseSimilarity):
                raise TypeError(
                    f"similarity must be a pml_relaxed similarity (BaseSimilarity); got {type(similarity).__name__}"
                )
            if sigma != 1.0 or normalize_teacher is not True:
                raise ValueError(
                    "sigma and normalize_teacher configure the default GaussianKernel; with similarity="
                    f"{type(similarity).__name__}(...) set them there instead; got sigma={sigma!r}, "
                    f"normalize_teacher={normalize_teacher!r}"
                )
        self.similarity = similarity
        self.add_to_recordable_attributes(list_of_names=["delta"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["avg_relaxed_label", "avg_relative_dist", "num_pairs"], is_stat=True
        )

    @property
    def sigma(self) -> Optional[float]:
        """Bandwidth of the Gaussian kernel, or None for another similarity."""
        return getattr(self.similarity, "sigma", None)

    def get_default_distance(self) -> LpDistance:
        return LpDistance(normalize_embeddings=False, p=2, power=1)

    def relaxed_labels(self, teacher_emb, teacher_ref_emb, labels, ref_labels, self_reference) -> torch.Tensor:
        if self_reference:
            return self.similarity(teacher_emb, None, labels, None)
        return self.similarity(teacher_emb, teacher_ref_emb, labels, ref_labels)

    def relative_distances(self, embeddings: torch.Tensor, ref_emb: torch.Tensor, self_reference: bool):
        dist = self.distance(embeddings, ref_emb)
        if self_reference:
            eye = torch.eye(dist.shape[0], dtype=torch.bool, device=dist.device)
            dist = dist.masked_fill(eye, 0)
        return fn.relative_distance(dist)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor],
        indices_tuple: Optional[Sequence[torch.Tensor]],
        ref_emb: torch.Tensor,
        ref_labels: Optional[torch.Tensor],
        teacher_emb: torch.Tensor = None,
        teacher_ref_emb: torch.Tensor = None,
    ) -> dict:
        self_reference = ref_emb is embeddings
        w = self.relaxed_labels(teacher_emb, teacher_ref_emb, labels, ref_labels, self_reference)
        d = self.relative_distances(embeddings, ref_emb, self_reference)
        mask = fn.pair_mask(d.shape[0], d.shape[1], indices_tuple, self_reference, d.device)
        per_anchor = self.per_anchor_losses(d, w.to(d.device), mask)
        if self.collect_stats:
            with torch.no_grad():
                num_pairs = int(mask.sum())
                self.num_pairs = num_pairs
                if num_pairs > 0:
                    self.avg_relaxed_label = float(w.to(d.device)[mask].float().mean())
                    self.avg_relative_dist = float(d[mask].float().mean())
        return self.element_loss_dict(per_anchor, embeddings)

    def per_anchor_losses(self, relative_dist: torch.Tensor, relaxed_labels: torch.Tensor, mask: torch.Tensor):
        raise NotImplementedError
