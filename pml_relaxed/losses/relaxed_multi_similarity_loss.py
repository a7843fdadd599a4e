"""The relaxed multi-similarity loss (Kim et al., CVPR 2021, the relaxed variant of Wang et al. 2019)."""

from __future__ import annotations

from typing import Optional

from .. import _relaxed_engine as _bw
from .. import _validation as v
from ..similarities import BaseSimilarity
from .base_relaxed_loss import BaseRelaxedLoss


class RelaxedMultiSimilarityLoss(BaseRelaxedLoss):
    r"""Multi-similarity loss with relaxed labels on relative distances. Per anchor i::

        (1/alpha) log(1 + sum_{j != i} w_ij exp(alpha d_ij))
          + (1/beta) log(1 + sum_{j != i} (1 - w_ij) exp(beta (delta - d_ij)))

    averaged over anchors, with the relaxed labels w and relative distances d of
    :class:`RelaxedContrastiveLoss`. Written from the formula (log-sum-exp, no overflow).

    Args:
        sigma: Gaussian kernel bandwidth, > 0.
        delta: margin on relative distances, >= 0.
        alpha: scale of the pull term, > 0 (paper: 1).
        beta: scale of the push term, > 0 (paper: 2).
        normalize_teacher: L2-normalise teacher embeddings.
        similarity: replaces the Gaussian kernel.
        **kwargs: PML's ``distance``, ``reducer``, ``embedding_regularizer``, ``collect_stats``.

    Raises:
        ValueError, TypeError: as :class:`RelaxedContrastiveLoss`, plus alpha <= 0 or beta <= 0.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        delta: float = 1.0,
        alpha: float = 1.0,
        beta: float = 2.0,
        normalize_teacher: bool = True,
        similarity: Optional[BaseSimilarity] = None,
        **kwargs,
    ) -> None:
        super().__init__(sigma=sigma, delta=delta, normalize_teacher=normalize_teacher, similarity=similarity, **kwargs)
        self.alpha = v.check_positive("alpha", alpha)
        self.beta = v.check_positive("beta", beta)
        self.add_to_recordable_attributes(list_of_names=["alpha", "beta"], is_stat=False)

    def row_function(self):
        return _bw.MultiSimilarityRows(self.delta, self.alpha, self.beta)
