"""Shared machinery of the relaxed losses: relaxed labels, relative distances, pair mask."""

from __future__ import annotations

from typing import Optional

import torch
from pytorch_metric_learning.distances import LpDistance

from .. import _relaxed_engine as _bw
from .. import _validation as v
from .. import functional as fn
from ..similarities import BaseSimilarity, TeacherInputs, resolve_similarity
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class BaseRelaxedLoss(BaseTransferLoss):
    """Computes relaxed labels w (teacher), relative distances d (student) and the pair mask, then
    calls :meth:`per_anchor_losses`.

    Args:
        sigma: bandwidth of the default :class:`~pml_relaxed.similarities.GaussianKernel`, > 0.
        delta: margin on relative distances, >= 0.
        normalize_teacher: L2-normalise teacher embeddings in the default kernel.
        similarity: a :class:`~pml_relaxed.similarities.BaseSimilarity` replacing the Gaussian kernel;
            then leave ``sigma`` and ``normalize_teacher`` at their defaults.
        block_size: query rows per block. None (auto): dense up to ``2**16`` pairs (n * m), above that
            blocks of about ``2**20`` pairs; 0: always dense; k > 0: blocks of k rows. Blockwise gives the
            same values and gradients with peak memory O(block * m + (n + m) * dims) instead of O(n * m),
            and is faster on large batches (benchmarks/loss_speed.py): its forward pass also computes the
            gradient, which the backward pass only scales when the reducer's upstream gradient is one constant
            (MeanReducer, SumReducer), else recomputes (docs/scale.md). The dense path alone supports
            forward-mode AD and vmap; double backward works on both (dense memory when used).
        **kwargs: PML's ``distance``, ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``,
            ``collect_stats``. The default distance is the unnormalised Euclidean distance.

    A batch the loss cannot learn from warns once per process
    (:class:`~pml_relaxed._validation.DegenerateBatchWarning`): a reference set of fewer than 3 rows
    (constant relative distances), or, with ``validate=True``, student embeddings that are all equal (a
    collapsed or zero-initialised student; all distances 0). Either way the loss is constant and its
    gradient 0 (up to rounding).

    Raises:
        TypeError: a similarity that is not a BaseSimilarity; a non-number sigma or delta (Python or numpy
            scalars and 0-d tensors are numbers, bools are not); a non-bool normalize_teacher; an unknown
            keyword argument (named with the loss's class).
        ValueError: sigma <= 0, delta < 0, block_size < 0, sigma/normalize_teacher set together with
            similarity, or block_size > 0 with a similarity that cannot be computed in blocks.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        delta: float = 1.0,
        normalize_teacher: bool = True,
        similarity: Optional[BaseSimilarity] = None,
        block_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.delta = v.check_non_negative("delta", delta)
        self.block_size = v.check_block_size("block_size", block_size)
        similarity = resolve_similarity(similarity, sigma, normalize_teacher)
        if self.block_size and not similarity.supports_blocks:
            raise ValueError(
                f"similarity {type(similarity).__name__} needs the whole batch at once (supports_blocks=False), "
                f"so it cannot be computed in row blocks: use block_size=0 (dense); got block_size={self.block_size}"
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

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        relaxed_labels = self.batch_relaxed_labels(batch)
        per_anchor = self.relaxed_per_anchor(batch.embeddings, batch, relaxed_labels)
        return self.element_loss_dict(per_anchor, batch.embeddings)

    def batch_relaxed_labels(self, batch: TransferBatch):
        """The relaxed labels of ``batch``: ``rows(start, end)`` of the (n, m) matrix w, from the teacher."""
        if batch.self_reference:
            return self.similarity.rows(TeacherInputs(batch.teacher_emb, labels=batch.labels))
        return self.similarity.rows(
            TeacherInputs(batch.teacher_emb, batch.teacher_ref_emb, batch.labels, batch.ref_labels)
        )

    def relaxed_per_anchor(
        self, embeddings: torch.Tensor, batch: TransferBatch, relaxed_labels, record_stats: bool = True
    ) -> torch.Tensor:
        """(n,) per-anchor losses of student ``embeddings`` (``batch.embeddings`` or another head of the same n
        samples) against ``batch``'s reference set, pair mask and the given relaxed labels; with
        ``record_stats`` (and ``collect_stats``) the loss's stats are this call's."""
        self_reference = batch.self_reference
        queries = self.distance.maybe_normalize(embeddings)
        refs = None if self_reference else self.distance.maybe_normalize(batch.ref_emb)
        v.warn_if_degenerate(type(self).__name__, queries, refs, check_values=self.validate)
        mask = None  # every pair but the self pairs
        if batch.indices_tuple is not None:
            mask = fn.pair_mask_rows(
                embeddings.shape[0], batch.ref_emb.shape[0], batch.indices_tuple, self_reference, embeddings.device
            )
        stats = {} if self.collect_stats and record_stats else None
        problem = _bw.RelaxedProblem(
            self.block_distance(), self.row_function(), relaxed_labels, mask, self_reference, stats
        )
        block_size = self.block_size if self.similarity.supports_blocks else 0  # auto: dense for such kernels
        per_anchor = _bw.relaxed_per_anchor(queries, refs, problem, block_size)
        if stats is not None:  # the engine's stats are tensors: read back once per call
            self.num_pairs = int(stats["num_pairs"])
            if self.num_pairs > 0:
                self.avg_relaxed_label = float(stats["sum_relaxed_label"]) / self.num_pairs
                self.avg_relative_dist = float(stats["sum_relative_dist"]) / self.num_pairs
        return per_anchor

    def block_distance(self):
        """The engine's distance: matrix products for PML's LpDistance(p=2) at any power, else autograd."""
        if type(self.distance) is LpDistance and self.distance.p == 2:
            return _bw.EuclideanDistance(self.distance.power)
        return _bw.ModuleDistance(self.distance)

    def row_function(self):
        """The engine's row function (see :mod:`pml_relaxed._relaxed_engine`).

        The default wraps :meth:`per_anchor_losses` and differentiates it with autograd one block at a time,
        so a subclass only writes ``per_anchor_losses``; the built-in losses return closed-form row functions.
        """
        return _bw.AutogradRows(self.per_anchor_losses)

    def per_anchor_losses(
        self, relative_dist: torch.Tensor, relaxed_labels: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """(b,) losses of b anchors from their (b, m) relative distances, relaxed labels and bool pair mask."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_anchor_losses or row_function")
