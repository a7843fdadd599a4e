"""PML's DistributedMinerWrapper for teacher-fed miners: pairs of the global batch, the same on every rank."""

from __future__ import annotations

import torch
from pytorch_metric_learning.miners import BaseMiner

from .. import _validation as v
from .._pairs import drop_self_pairs, shift_anchors
from .._teacher import takes_keyword, teacher_kwargs
from ._collectives import (
    gather_batch,
    gather_index_tuple,
    is_distributed,
)
from ._teacher_passthrough import _TeacherPassthrough


class DistributedTransferMinerWrapper(_TeacherPassthrough):
    """Runs a miner (e.g. :class:`~pml_relaxed.miners.TeacherSimilarityMiner`) on the global batch of all ranks.

    Each rank passes its local batch; embeddings, labels (may be None) and teacher embeddings are
    all-gathered in rank order (no gradient: mining needs none), uneven local batch sizes included.
    The result indexes the *global* batch ``[rank 0's rows, rank 1's rows, ...]`` and is the same on
    every rank, in both modes: feed it to :class:`DistributedTransferLossWrapper` (either mode), which
    takes indices into that same global batch.

    - ``efficient=False``: the miner runs on the whole global batch on every rank.
    - ``efficient=True``: each rank mines only its own queries against the global reference set (an
      (n, N) teacher similarity matrix instead of (N, N)), then the pairs are all-gathered. The self
      pairs are excluded: a miner that takes ``query_offset=`` (TeacherSimilarityMiner) is told where
      its queries sit among the references, so it never considers them and the pairs are exactly the
      single-process ones (for any miner deciding row by row); other miners are mined against the
      global batch and their self pairs removed afterwards (PML's efficient mode), which equals the
      single-process pairs only when the miner's decisions for other pairs do not depend on the self
      pair.

    Without a process group (or world size 1) the wrapper calls the bare miner. The teacher follows
    pml_relaxed's one routing rule (:func:`pml_relaxed._teacher.teacher_kwargs`): a miner that takes no
    teacher (a PML miner) is called without teacher arguments, which are then accepted and ignored; a
    ``teacher_ref_emb`` without ``ref_emb`` raises.

    Args:
        miner: a PML ``BaseMiner``, e.g. TeacherSimilarityMiner or MultiSimilarityMiner.
        efficient: mine local queries against the global references (see above).

    Raises:
        TypeError: a miner that is not a PML BaseMiner, a non-bool ``efficient``.
        ValueError: ``teacher_ref_emb`` without ``ref_emb`` for a miner that reads the teacher; arguments
            given on some ranks and None on others (raised on every rank).

    Examples:
        >>> import torch
        >>> from pml_relaxed.distributed import DistributedTransferMinerWrapper
        >>> from pml_relaxed.miners import TeacherSimilarityMiner
        >>> miner = DistributedTransferMinerWrapper(TeacherSimilarityMiner(pos_topk=2), efficient=True)
        >>> a1, p, a2, n = miner(torch.randn(6, 4), teacher_emb=torch.randn(6, 8))  # no group: the bare miner
        >>> len(a1)
        12
    """

    wrapped_name = "miner"
    miner_takes_teacher = _TeacherPassthrough.wrapped_takes_teacher  # True if the wrapped miner reads teacher_emb=

    def __init__(self, miner: BaseMiner, efficient: bool = False) -> None:
        super().__init__()
        if not isinstance(miner, BaseMiner):
            raise TypeError(f"miner must be a PML BaseMiner (e.g. TeacherSimilarityMiner); got {type(miner).__name__}")
        self.efficient = v.check_bool("efficient", efficient)
        self.miner = miner

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        *,
        teacher_emb: torch.Tensor | None = None,
        teacher_ref_emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Mines the global batch.

        Args:
            embeddings: (n_r, d) this rank's student embeddings.
            labels: (n_r,) this rank's labels, or None (on every rank).
            ref_emb: (m_r, d) this rank's part of a separate reference set, or None for the batch itself.
            ref_labels: (m_r,) its labels.
            teacher_emb: (n_r, D) teacher embeddings of this rank's rows (for a miner that takes them).
            teacher_ref_emb: (m_r, D) teacher embeddings of this rank's reference rows.

        Returns:
            The miner's tuple, indexing the global batch (and the global reference set), on every rank.
        """
        # the teacher-routing rule, before any collective: what the miner reads is gathered, the rest refused or ignored
        teacher = teacher_kwargs(self.miner, teacher_emb, teacher_ref_emb, ref_emb)
        teacher_emb, teacher_ref_emb = teacher.get("teacher_emb"), teacher.get("teacher_ref_emb")
        if not is_distributed():
            return self._call_miner(embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb)
        batch = gather_batch(embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, with_grad=False)
        if not self.efficient:
            return self._call_miner(
                batch.embeddings,
                batch.labels,
                batch.ref_emb,
                batch.ref_labels,
                batch.teacher_emb,
                batch.teacher_ref_emb,
            )
        if batch.ref_emb is not None:
            local = self._call_miner(
                embeddings, labels, batch.ref_emb, batch.ref_labels, teacher_emb, batch.teacher_ref_emb
            )
        elif takes_keyword(self.miner, "query_offset"):
            local = self._call_miner(
                embeddings,
                labels,
                batch.embeddings,
                batch.labels,
                teacher_emb,
                batch.teacher_emb,
                query_offset=batch.offset,
            )
        else:
            local = drop_self_pairs(
                self._call_miner(embeddings, labels, batch.embeddings, batch.labels, teacher_emb, batch.teacher_emb),
                batch.offset,
            )
        return gather_index_tuple(shift_anchors(local, batch.offset), embeddings.device)

    def _call_miner(self, embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, **extra):
        teacher = teacher_kwargs(self.miner, teacher_emb, teacher_ref_emb, ref_emb)
        return self.miner(embeddings, labels, ref_emb, ref_labels, **teacher, **extra)
