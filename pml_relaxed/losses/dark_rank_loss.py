"""DarkRank: Chen, Wang & Zhang, "DarkRank: Accelerating Deep Metric Learning via Cross Sample
Similarities Transfer" (AAAI 2018), hard-rank variant."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.reducers import AvgNonZeroReducer, BaseReducer, MeanReducer, MultipleReducers

from .. import _validation as v
from .. import functional_baselines as fb
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class DarkRankLoss(BaseTransferLoss):
    r"""Transfers the teacher's ranking of each anchor's partners (ListMLE), plus a triplet loss on labels.

    For student embeddings s (n, d) and teacher embeddings t (n, D), used as given, or L2-normalised
    first with ``normalize_embeddings=True``::

        S_ij   = -alpha ||x_i - x_j||^beta                       similarity score (each network)
        pi^i   = partners j != i sorted by descending S^t_ij     teacher's ranking (ties: index order)
        rank_i = -sum_{l=1..L} [ S^s_{i,pi_l} - log sum_{q=l..L} exp(S^s_{i,pi_q}) ]
        L      = rank_weight * mean_i rank_i + triplet_weight * triplet

    ``rank_i`` is the negative log-likelihood of the teacher's permutation under the student's
    Plackett-Luce model (the paper's "hard rank" transfer, Eq. 3-6). ``L`` is every partner, or the
    teacher's top ``list_length`` ones with the normalisers over that truncated list (as the RKD
    reference code's ``permute_len``). ``triplet`` is PML's :class:`TripletMarginLoss` (all triplets,
    ``margin=triplet_margin``, this loss's ``distance``, averaged over the non-zero triplets), the
    metric-learning loss the paper trains the student with besides the transfer loss. It uses
    ``labels`` (or ``indices_tuple`` from a miner, as TripletMarginLoss does); when both are None the
    triplet term is skipped and only the rank term remains. ``indices_tuple`` never restricts the rank
    term.

    The loss dict has two sub-losses: ``rank_loss`` (per anchor, ``"element"``) and ``triplet_loss``
    (``"triplet"``). By default they are reduced by ``MeanReducer`` and ``AvgNonZeroReducer``
    respectively and summed; a ``reducer`` argument is copied to both. With raw (unnormalised)
    embeddings and beta = 3 the scores scale as ||x||^3: L2-normalise the embeddings beforehand if they
    are large (the RKD reference code does, through its embedding heads).

    With ``ref_emb`` each query ranks the m reference samples (the triplet term then needs ``ref_labels``
    or ``indices_tuple``).

    Args:
        alpha: score scale, > 0 (paper: 3).
        beta: distance exponent, > 0 (paper: 3).
        list_length: rank only the teacher's top ``list_length`` partners, >= 1, or None for all.
        rank_weight: weight of the rank-transfer term, >= 0.
        triplet_weight: weight of the triplet term, >= 0 (0 disables it).
        triplet_margin: margin of the triplet term, >= 0 (PML's TripletMarginLoss default: 0.05).
        normalize_embeddings: L2-normalise student and teacher embeddings (and references) before the
            rank term's scores (the triplet term uses ``distance``, normalised by default).
        **kwargs: PML's ``distance`` (of the triplet term only; default ``LpDistance()``, normalised
            embeddings, as TripletMarginLoss), ``reducer``, ``embedding_regularizer``,
            ``embedding_reg_weight``, ``collect_stats``.

    Shape:
        embeddings (n, d), teacher_emb (n, D), labels (n,); ref_emb (m, d) with teacher_ref_emb (m, D).

    Raises:
        ValueError: alpha or beta <= 0, list_length < 1, negative weights or margin, both weights 0,
            labels with ref_emb but no ref_labels, and the bad inputs of :class:`BaseTransferLoss`.
        TypeError: non-tensor or non-float inputs, a non-int list_length, a non-bool
            normalize_embeddings.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses.dark_rank_loss import DarkRankLoss
        >>> student, labels = torch.randn(8, 16, requires_grad=True), torch.arange(4).repeat(2)
        >>> loss = DarkRankLoss()(student, labels, teacher_emb=torch.randn(8, 64))
        >>> loss.backward()
    """

    def __init__(
        self,
        alpha: float = 3.0,
        beta: float = 3.0,
        list_length: Optional[int] = None,
        rank_weight: float = 1.0,
        triplet_weight: float = 1.0,
        triplet_margin: float = 0.05,
        normalize_embeddings: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = v.check_positive("alpha", alpha)
        self.beta = v.check_positive("beta", beta)
        self.list_length = v.check_optional_positive_int("list_length", list_length)
        self.rank_weight = v.check_non_negative("rank_weight", rank_weight)
        self.triplet_weight = v.check_non_negative("triplet_weight", triplet_weight)
        self.triplet_margin = v.check_non_negative("triplet_margin", triplet_margin)
        self.normalize_embeddings = v.check_bool("normalize_embeddings", normalize_embeddings)
        if self.rank_weight == 0 and self.triplet_weight == 0:
            raise ValueError("rank_weight and triplet_weight are both 0, so the loss would be 0; got 0 and 0")
        self.triplet_loss_fn = TripletMarginLoss(margin=self.triplet_margin, distance=self.distance)
        self.add_to_recordable_attributes(
            list_of_names=["alpha", "beta", "rank_weight", "triplet_weight", "triplet_margin"], is_stat=False
        )

    def set_reducer(self, reducer: Optional[BaseReducer]) -> None:
        """Defaults to MeanReducer for rank_loss and AvgNonZeroReducer (TripletMarginLoss's) for triplet_loss."""
        if reducer is None:
            reducer = MultipleReducers({"rank_loss": MeanReducer(), "triplet_loss": AvgNonZeroReducer()})
        super().set_reducer(reducer)

    def _sub_loss_names(self) -> list:
        return ["rank_loss", "triplet_loss"]

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        embeddings = batch.embeddings
        if self.rank_weight == 0:
            loss_dict = {"rank_loss": self.zero_loss()}
        else:
            tensors = [embeddings, batch.teacher_emb, *batch.explicit_reference()]
            if self.normalize_embeddings:
                tensors = [None if t is None else F.normalize(t.to(embeddings.dtype), dim=1) for t in tensors]
            rank = fb.dark_rank_per_anchor(*tensors, self.alpha, self.beta, self.list_length)
            loss_dict = self.element_loss_dict(rank * self.rank_weight, embeddings, name="rank_loss")
        loss_dict["triplet_loss"] = self._triplet_loss(batch)
        return loss_dict

    def _triplet_loss(self, batch: TransferBatch) -> dict:
        """PML's TripletMarginLoss dict scaled by triplet_weight, or a zero loss when it does not apply."""
        if self.triplet_weight == 0 or (batch.labels is None and batch.indices_tuple is None):
            return self.zero_loss()
        if batch.indices_tuple is None and not batch.self_reference and batch.ref_labels is None:
            raise ValueError(
                "DarkRankLoss's triplet term compares labels with ref_labels when ref_emb is given; "
                "pass ref_labels (or indices_tuple, or triplet_weight=0); got ref_labels=None"
            )
        triplet = self.triplet_loss_fn.compute_loss(
            batch.embeddings, batch.labels, batch.indices_tuple, batch.ref_emb, batch.ref_labels
        )["loss"]
        if torch.is_tensor(triplet["losses"]):
            triplet = dict(triplet, losses=triplet["losses"] * self.triplet_weight)
        return triplet
