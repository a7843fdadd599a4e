"""A PML miner that picks positive and negative pairs from a frozen teacher's similarities."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.utils import common_functions as c_f

from .. import _validation as v
from .._pairs import fill_self_pairs_, self_pair_mask
from .._teacher import check_teacher_reached
from ..similarities import BaseSimilarity, resolve_similarity


class TeacherSimilarityMiner(BaseMiner):
    """Mines PML pairs ``(a1, p, a2, n)`` from the teacher: label-free transfer for any PML pair loss.

    Teacher similarities ``w_ij`` come from ``similarity`` (default: the paper's
    ``GaussianKernel(sigma)`` on L2-normalised teacher embeddings, monotone in cosine similarity).
    For each anchor i and reference j (never i itself when the reference set is the batch):

    - j is a positive if it is among the ``pos_topk`` most teacher-similar references of i (when
      ``pos_topk`` is set) and ``w_ij >= pos_threshold`` (when ``pos_threshold`` is set);
    - j is a negative if it is not a positive and ``w_ij <= neg_threshold`` (when set; otherwise
      every non-positive is a negative).

    With it, ``ContrastiveLoss``, ``MultiSimilarityLoss`` and any other PML pair loss become transfer
    losses, and ``RelaxedContrastiveLoss`` can be restricted through ``indices_tuple``.

    Args:
        pos_topk: number of teacher nearest neighbours that are positives, or None for no top-k rule.
        pos_threshold: minimum teacher similarity of a positive in [0, 1], or None.
        neg_threshold: maximum teacher similarity of a negative in [0, 1], or None for all non-positives.
        sigma: bandwidth of the default Gaussian kernel, > 0.
        normalize_teacher: L2-normalise teacher embeddings in the default kernel.
        similarity: replaces the Gaussian kernel (leave sigma/normalize_teacher at their defaults).
        **kwargs: PML's BaseMiner argument ``collect_stats``. PML's ``distance`` is refused: the miner
            compares teacher embeddings with ``similarity``, never student embeddings.

    Raises:
        ValueError: neither pos_topk nor pos_threshold set, thresholds outside [0, 1], pos_topk < 1,
            sigma <= 0, sigma set together with similarity, a ``distance`` argument; bad inputs as in the
            losses.
        TypeError: a similarity that is not a BaseSimilarity; a non-number sigma or threshold, a non-int
            pos_topk, a non-bool normalize_teacher; an unknown keyword argument; non-tensor inputs.
    """

    def __init__(
        self,
        pos_topk: Optional[int] = 3,
        pos_threshold: Optional[float] = None,
        neg_threshold: Optional[float] = None,
        sigma: float = 1.0,
        normalize_teacher: bool = True,
        similarity: Optional[BaseSimilarity] = None,
        **kwargs,
    ) -> None:
        if "distance" in kwargs:
            raise ValueError(
                "TeacherSimilarityMiner mines on the teacher's similarities, not on student distances, so distance "
                "cannot be set; to change how teacher embeddings are compared pass similarity= (e.g. "
                f"GaussianKernel(sigma=0.5), ContextualSimilarity()) or sigma=; got distance={kwargs['distance']!r}"
            )
        v.check_keywords(self, kwargs, BaseMiner)
        super().__init__(**kwargs)
        self.pos_topk = v.check_optional_positive_int("pos_topk", pos_topk)
        self.pos_threshold = None if pos_threshold is None else v.check_in_unit_interval("pos_threshold", pos_threshold)
        self.neg_threshold = None if neg_threshold is None else v.check_in_unit_interval("neg_threshold", neg_threshold)
        if self.pos_topk is None and self.pos_threshold is None:
            raise ValueError(
                "TeacherSimilarityMiner needs a positive rule: set pos_topk and/or pos_threshold; got neither"
            )
        self.similarity = resolve_similarity(similarity, sigma, normalize_teacher)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        ref_emb: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
        *,
        teacher_emb: Optional[torch.Tensor] = None,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        query_offset: Optional[int] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mines pairs. Labels are optional (used only by label-based similarities).

        Args:
            embeddings: (n, d) student embeddings (only their device and row count are used).
            labels: (n,) labels or None.
            ref_emb: (m, d) reference student embeddings, or None for the batch.
            ref_labels: (m,) reference labels or None.
            teacher_emb: (n, D) teacher embeddings of the same samples (required).
            teacher_ref_emb: (m, D) teacher embeddings of the references (required with ref_emb).
            query_offset: with ref_emb, says that the queries are rows ``[query_offset, query_offset + n)``
                of the reference set (a slice of a larger batch, as in
                :class:`~pml_relaxed.distributed.DistributedTransferMinerWrapper`'s efficient mode): the
                pairs ``(i, query_offset + i)`` are then self pairs and never candidates, so the result is
                the slice of rows of ``miner(reference set)``. None (default): the queries are not in ref_emb.

        Returns:
            ``(a1, p, a2, n)`` LongTensors: anchor-positive and anchor-negative pairs.

        Raises:
            ValueError: query_offset without ref_emb, or one that does not fit (``query_offset + n > m``).
            TypeError: a query_offset that is not an int.
        """
        self.reset_stats()
        check_teacher_reached(teacher_emb, self)
        v.check_teacher_pair(embeddings, ref_emb, teacher_emb, teacher_ref_emb)
        if query_offset is not None:
            self._check_query_offset(query_offset, embeddings, ref_emb)
        if labels is not None:
            v.check_labels("labels", labels, embeddings.shape[0], "embeddings")
            labels = c_f.to_device(labels, embeddings)
        with torch.no_grad():
            teacher_emb = c_f.to_device(teacher_emb.detach(), embeddings)
            if ref_emb is None:  # the batch is its own reference set
                teacher_ref_emb, ref_labels = None, None
            else:
                teacher_ref_emb = c_f.to_device(teacher_ref_emb.detach(), embeddings)
            weights = self.similarity(teacher_emb, teacher_ref_emb, labels, ref_labels)
            # query_offset only when given: subclasses written for mine_from_weights(weights, self_reference) work
            offset = {} if query_offset is None else {"query_offset": query_offset}
            mining_output = self.mine_from_weights(weights, self_reference=ref_emb is None, **offset)
        self.output_assertion(mining_output)
        num_refs = embeddings.shape[0] if ref_emb is None else ref_emb.shape[0]
        v.check_indices_tuple(mining_output, embeddings.shape[0], num_refs)  # a subclass's mine_from_weights too
        return mining_output

    @staticmethod
    def _check_query_offset(query_offset: object, embeddings: torch.Tensor, ref_emb: Optional[torch.Tensor]) -> None:
        if ref_emb is None:
            raise ValueError(
                "query_offset says where the queries sit in ref_emb, so it needs ref_emb; got ref_emb=None"
            )
        v.check_int("query_offset", query_offset, allow_none=True)
        if query_offset < 0 or query_offset + embeddings.shape[0] > ref_emb.shape[0]:
            raise ValueError(
                f"query_offset must satisfy 0 <= query_offset and query_offset + {embeddings.shape[0]} (queries) <= "
                f"{ref_emb.shape[0]} (rows of ref_emb); got query_offset={query_offset}"
            )

    def mine_from_weights(
        self, weights: torch.Tensor, self_reference: bool, query_offset: Optional[int] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Applies the positive/negative rules to an (n, m) teacher similarity matrix.

        The self pairs ``(i, i)`` (``self_reference``) or ``(i, query_offset + i)`` are never candidates.
        """
        n, m = weights.shape
        device = weights.device
        candidates = torch.ones(n, m, dtype=torch.bool, device=device)
        if self_reference:
            candidates &= ~self_pair_mask(n, m, device=device)
        elif query_offset is not None:
            fill_self_pairs_(candidates, query_offset, False)
        positive = candidates.clone()
        if self.pos_topk is not None:
            k = min(self.pos_topk, int(candidates.sum(dim=1).max()) if n > 0 else 0)
            in_topk = torch.zeros_like(candidates)
            if k > 0:
                ranked = weights.masked_fill(~candidates, float("-inf"))
                top_idx = ranked.topk(k, dim=1).indices
                in_topk.scatter_(1, top_idx, True)
            positive &= in_topk
        if self.pos_threshold is not None:
            positive &= weights >= self.pos_threshold
        negative = candidates & ~positive
        if self.neg_threshold is not None:
            negative &= weights <= self.neg_threshold
        a1, p = torch.where(positive)
        a2, neg = torch.where(negative)
        return a1, p, a2, neg

    def mine(self, embeddings, labels, ref_emb, ref_labels):  # pragma: no cover - forward overrides
        raise NotImplementedError(
            "TeacherSimilarityMiner needs teacher_emb: call it as miner(embeddings, teacher_emb=...)"
        )
