"""PML's DistributedLossWrapper for teacher-fed losses, exact in both modes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .. import _validation as v
from .._pairs import anchors_in_rows, drop_self_pairs, zero_self_pairs
from .._teacher import takes_keyword, teacher_kwargs
from ..losses import BaseRelaxedLoss, BaseTransferLoss
from ._collectives import (
    GatheredBatch,
    all_gather_rows,
    all_gather_rows_with_grad,
    check_same_on_every_rank,
    gather_batch,
    gather_counts,
    is_distributed,
)
from ._teacher_passthrough import _TeacherPassthrough

_REDUCTION_TYPES = ("element", "pos_pair", "neg_pair", "triplet", "already_reduced")
_NUM_INDEX_TENSORS = {"element": 1, "pos_pair": 2, "neg_pair": 2, "triplet": 3}


class DistributedTransferLossWrapper(_TeacherPassthrough):
    r"""Runs a pml_relaxed (or PML) loss on the global batch of all DistributedDataParallel ranks.

    Each rank passes its local batch; the wrapper all-gathers the student embeddings, labels (may be
    None) and teacher embeddings (no gradient) in rank order, so the global batch is the
    concatenation ``[rank 0's rows, rank 1's rows, ...]``, the same on every rank. Uneven local batch
    sizes (the last batch) are allowed: the row counts are gathered first, the rows padded and trimmed.

    **Gradient convention.** The student embeddings are gathered with an autograd-aware all-gather:
    the gradients w.r.t. every rank's rows, wherever they are computed, are sent back to that rank and
    summed. Every rank returns the single-process loss value ``L`` on the global batch, and the
    gradient each rank's model ends up with *after DistributedDataParallel's all-reduce average* is the
    single-process gradient ``dL/dtheta`` on the global batch, exactly (rounding aside). With W ranks,
    each rank's backward gives W times its own rows' share of ``dL/dtheta``, and DDP divides the sum by
    W. PML's DistributedLossWrapper reaches the same end by multiplying the loss by W (its gathered
    rows carry no gradient); here the returned value stays L, so it can be logged as is. Parameters of
    the loss itself (if any) follow the same convention: average them over ranks (wrap the loss in DDP
    too, or all-reduce-average their gradients).

    **Modes.**

    - ``efficient=False``: every rank computes the loss on the whole global batch (N queries against N
      references): ``loss(all_emb, all_labels, indices_tuple, teacher_emb=all_teacher_emb)``. Works with
      any loss that takes PML's arguments, cross-batch memories included.
    - ``efficient=True``: each rank computes only its n local queries against the N gathered references
      (an (n, N) distance matrix instead of (N, N); memory and time divided by the world size). The
      self pairs (a query and its own row among the references) are excluded through the indices
      tuple and their distance is set to exactly 0 (a forward hook on the loss's distance), so the row
      means of the relaxed losses and every pair term are the single-process ones. The per-query or
      per-pair losses of all ranks are then all-gathered (autograd-aware) and reduced by the loss's own
      reducer on the global loss dict, so the value and the gradient are again exactly the
      single-process ones, for every PML reducer (MeanReducer, AvgNonZeroReducer, ThresholdReducer,
      DivisorReducer with its divisors summed over ranks). Unlike PML's efficient mode, no gradient is
      lost: the rows of other ranks used as references send their gradients home. Supported for the
      relaxed losses (:class:`~pml_relaxed.losses.BaseRelaxedLoss`) and PML's losses that take a
      reference set (pair losses such as ContrastiveLoss, MultiSimilarityLoss); not for the other
      transfer baselines (TypeError) or cross-batch memories (ValueError); use ``efficient=False``.

    **Pairs from a miner.** ``indices_tuple`` always indexes the *global* batch (its rows in rank
    order), which is what :class:`DistributedTransferMinerWrapper` returns in both of its modes; pass
    the same tuple on every rank. Wrap the miner and the loss and combine them as on one process::

        miner = DistributedTransferMinerWrapper(TeacherSimilarityMiner(pos_topk=3))
        loss_fn = DistributedTransferLossWrapper(ContrastiveLoss())
        pairs = miner(emb, teacher_emb=t)      # pairs of the global batch, same on every rank
        loss = loss_fn(emb, None, pairs)       # a plain PML loss takes no teacher

    In efficient mode each rank keeps the pairs whose anchor is one of its rows. Without
    ``indices_tuple`` the loss uses all pairs, as on one process.

    **Cross-batch memory.** ``DistributedTransferLossWrapper(TransferCrossBatchMemory(...))`` (or PML's
    ``CrossBatchMemory``), with ``efficient=False``, is the supported order: the memory receives the
    global batch, so every rank holds the same queue. ``enqueue_mask`` is gathered like the labels.

    **Without a process group** (or with world size 1) the wrapper calls the bare loss with the same
    arguments, so the same script runs on one process.

    The teacher follows pml_relaxed's one routing rule (:func:`pml_relaxed._teacher.teacher_kwargs`): a loss
    that takes no teacher (a plain PML loss) is called without teacher arguments, ``teacher_emb`` and
    ``teacher_ref_emb`` being then accepted and ignored (the teacher reaches such a loss through the miner's
    pairs); a ``teacher_ref_emb`` for a loss that reads the teacher but takes no ``teacher_ref_emb`` (a
    cross-batch memory, whose reference set is its queue) or without ``ref_emb`` raises.

    Args:
        loss: the loss, e.g. :class:`~pml_relaxed.losses.RelaxedContrastiveLoss`, a PML loss or a
            cross-batch memory.
        efficient: compute local queries against the global reference set (see above).

    Shape:
        embeddings (n_r, d) and teacher_emb (n_r, D) on rank r; the global batch has N = sum_r n_r rows.
        Output: the scalar loss on the global batch, the same on every rank.

    Raises:
        TypeError: a loss that is not an nn.Module, a non-bool ``efficient``, ``efficient=True`` for a loss
            type it does not support, a malformed indices_tuple.
        ValueError: ``efficient=True`` for a cross-batch memory; ``ref_emb`` or ``teacher_ref_emb`` with a
            cross-batch memory, ``enqueue_mask`` without one; ``teacher_ref_emb`` without ``ref_emb``; arguments
            given on some ranks and None on others, or embedding dimensions differing across ranks (raised on
            every rank).
        IndexError: with ``efficient=True``, an ``indices_tuple`` entry outside the global batch (without a
            process group, the loss's own check).

    Examples:
        >>> import torch
        >>> from pml_relaxed.distributed import DistributedTransferLossWrapper
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> loss_fn = DistributedTransferLossWrapper(RelaxedContrastiveLoss(), efficient=True)
        >>> student = torch.randn(8, 16, requires_grad=True)
        >>> teacher = torch.randn(8, 32)
        >>> loss = loss_fn(student, teacher_emb=teacher)  # no process group here: the bare loss
        >>> loss.backward()
    """

    wrapped_name = "loss"
    loss_takes_teacher = _TeacherPassthrough.wrapped_takes_teacher  # True if the wrapped loss reads teacher_emb=

    def __init__(self, loss: torch.nn.Module, efficient: bool = False) -> None:
        super().__init__()
        if not isinstance(loss, torch.nn.Module):
            raise TypeError(f"loss must be a loss module (an nn.Module, e.g. a PML loss); got {type(loss).__name__}")
        self.efficient = v.check_bool("efficient", efficient)
        self.loss = loss
        self.is_cross_batch_memory = takes_keyword(loss, "enqueue_mask")
        if self.efficient:
            self._check_efficient_support(loss)

    def _check_efficient_support(self, loss: torch.nn.Module) -> None:
        name = type(loss).__name__
        if self.is_cross_batch_memory:
            raise ValueError(
                f"efficient=True is not supported for a cross-batch memory ({name}): its reference set is its "
                "queue; use efficient=False (the memory then receives the global batch)"
            )
        if not isinstance(loss, BaseMetricLossFunction):
            raise TypeError(
                "efficient=True needs a PML BaseMetricLossFunction computing per-query or per-pair losses; "
                f"got {name}; use efficient=False"
            )
        if isinstance(loss, BaseTransferLoss) and not isinstance(loss, BaseRelaxedLoss):
            raise TypeError(
                f"efficient=True supports the relaxed losses and PML's reference-set losses, not {name} (its "
                "terms are not per (query, reference) pair); use efficient=False"
            )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: Sequence[torch.Tensor] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        enqueue_mask: torch.Tensor | None = None,
        *,
        teacher_emb: torch.Tensor | None = None,
        teacher_ref_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Computes the loss on the global batch.

        Args:
            embeddings: (n_r, d) this rank's student embeddings.
            labels: (n_r,) this rank's labels, or None (on every rank).
            indices_tuple: PML pairs or triplets indexing the global batch, the same on every rank.
            ref_emb: (m_r, d) this rank's part of a separate reference set, or None for the batch itself.
            ref_labels: (m_r,) its labels.
            enqueue_mask: (n_r,) bool, for a cross-batch memory: which rows to enqueue.
            teacher_emb: (n_r, D) teacher embeddings of this rank's rows (for a loss that takes them).
            teacher_ref_emb: (m_r, D) teacher embeddings of this rank's reference rows.

        Returns:
            The loss on the global batch (the same value on every rank).
        """
        if self.is_cross_batch_memory and (ref_emb is not None or ref_labels is not None):
            raise ValueError(
                f"{type(self.loss).__name__} is a cross-batch memory: its reference set is its queue, so ref_emb and "
                "ref_labels must be None; got "
                + ", ".join(n for n, x in (("ref_emb", ref_emb), ("ref_labels", ref_labels)) if x is not None)
            )
        if not self.is_cross_batch_memory and enqueue_mask is not None:
            raise ValueError(
                f"enqueue_mask is for cross-batch memories; {type(self.loss).__name__} takes none; got a tensor"
            )
        if indices_tuple is not None:
            v.check_indices_tuple(indices_tuple)
        # the teacher-routing rule, before any collective: what the loss reads is gathered, the rest refused or ignored
        teacher = teacher_kwargs(self.loss, teacher_emb, teacher_ref_emb, ref_emb)
        teacher_emb, teacher_ref_emb = teacher.get("teacher_emb"), teacher.get("teacher_ref_emb")
        if not is_distributed():
            return self._call_loss(
                embeddings, labels, indices_tuple, ref_emb, ref_labels, enqueue_mask, teacher_emb, teacher_ref_emb
            )
        batch = gather_batch(embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, enqueue_mask)
        if self.efficient:
            return self._efficient_loss(embeddings, labels, indices_tuple, teacher_emb, batch)
        return self._call_loss(
            batch.embeddings,
            batch.labels,
            indices_tuple,
            batch.ref_emb,
            batch.ref_labels,
            batch.enqueue_mask,
            batch.teacher_emb,
            batch.teacher_ref_emb,
        )

    def _call_loss(
        self, embeddings, labels, indices_tuple, ref_emb, ref_labels, enqueue_mask, teacher_emb, teacher_ref_emb
    ):
        teacher = teacher_kwargs(self.loss, teacher_emb, teacher_ref_emb, ref_emb)
        if self.is_cross_batch_memory:
            return self.loss(embeddings, labels, indices_tuple, enqueue_mask, **teacher)
        return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels, **teacher)

    def _efficient_loss(self, embeddings, labels, indices_tuple, teacher_emb, batch: GatheredBatch) -> torch.Tensor:
        self_reference = batch.ref_emb is None
        if self_reference:
            ref_emb, ref_labels, teacher_ref_emb = batch.embeddings, batch.labels, batch.teacher_emb
        else:
            ref_emb, ref_labels, teacher_ref_emb = batch.ref_emb, batch.ref_labels, batch.teacher_ref_emb
        local_tuple = self._local_indices_tuple(indices_tuple, embeddings, labels, ref_labels, batch, self_reference)
        captured = {}

        def capture_loss_dict(module, args, kwargs):
            captured["loss_dict"] = args[0] if args else kwargs["loss_dict"]

        def zero_self_distances(module, args, kwargs, output):
            query = args[0] if args else kwargs.get("query_emb")
            ref = args[1] if len(args) > 1 else kwargs.get("ref_emb")
            if query is not embeddings or ref is not ref_emb:
                return None
            return zero_self_pairs(output, batch.offset)

        hooks = [self.loss.reducer.register_forward_pre_hook(capture_loss_dict, with_kwargs=True)]
        if self_reference and not self.loss.distance.is_inverted:
            hooks.append(self.loss.distance.register_forward_hook(zero_self_distances, with_kwargs=True))
        try:
            self._call_loss(embeddings, labels, local_tuple, ref_emb, ref_labels, None, teacher_emb, teacher_ref_emb)
        finally:
            for hook in hooks:
                hook.remove()
        # Every rank must run the same backward collectives: tie the gathered student rows to the local
        # losses (with weight 0) even where a rank's loss does not depend on them (e.g. it has no pairs).
        tie = batch.embeddings.sum() * 0
        if not self_reference:
            tie = tie + batch.ref_emb.sum() * 0
        global_dict = _gather_loss_dict(captured["loss_dict"], batch.offset, batch.embeddings, tie, self.loss)
        return self.loss.reducer(global_dict, batch.embeddings, batch.labels)

    def _local_indices_tuple(self, indices_tuple, embeddings, labels, ref_labels, batch, self_reference):
        """The pairs of this rank's queries, in local query indices; self pairs removed."""
        n, offset = embeddings.shape[0], batch.offset
        device = embeddings.device
        if indices_tuple is None:
            if not self_reference:
                return None
            if labels is not None:
                local = lmu.get_all_pairs_indices(labels.to(device), ref_labels)
            elif self.loss_takes_teacher:
                # the relaxed losses use the union of the pairs: every (query, other row) pair once
                anchors, others = torch.where(torch.ones(n, batch.embeddings.shape[0], dtype=torch.bool, device=device))
                empty = torch.zeros(0, dtype=torch.long, device=device)
                local = (anchors, others, empty, empty)
            else:
                return None  # the loss raises its own "labels and indices_tuple cannot both be None"
        else:
            num_refs = (batch.embeddings if self_reference else batch.ref_emb).shape[0]
            # anchors outside this rank's rows are left to the other ranks: check the global bounds first
            v.check_indices_tuple(indices_tuple, batch.embeddings.shape[0], num_refs, refs="the global reference set")
            local = anchors_in_rows(indices_tuple, offset, n, device)
        return drop_self_pairs(local, offset) if self_reference else local


def _gather_loss_dict(
    loss_dict: dict, offset: int, all_emb: torch.Tensor, tie: torch.Tensor, loss: BaseMetricLossFunction
) -> dict:
    """The global PML loss dict: every rank's per-query / per-pair losses (autograd-aware) and indices.

    Anchor indices are made global (+ offset); divisors (DivisorReducer) are summed over ranks. PML's
    regularizers come already reduced: the embedding regularizer is recomputed on the global batch, the
    weight regularizer (of the loss's own parameters) is the same on every rank and kept as is.
    """
    loss_name = type(loss).__name__
    names = list(loss_dict)
    meta = [len(names)]
    for name in names:
        info = loss_dict[name]
        losses = info["losses"]
        present = torch.is_tensor(losses)
        divisor = info.get("divisor")
        meta += [
            _REDUCTION_TYPES.index(info["reduction_type"]) if present else -1,
            losses.numel() if present else 0,
            divisor is not None,
            0.0 if divisor is None else float(divisor),
        ]
    table = gather_counts(meta, all_emb.device)
    check_same_on_every_rank(table, [(0, f"the number of sub-losses of {loss_name}")])
    out = {}
    for k, name in enumerate(names):
        if name == "embedding_reg_loss" and getattr(loss, "embedding_regularizer", None) is not None:
            out[name] = loss.embedding_regularization_loss(all_emb)
            continue
        if name == "weight_reg_loss":
            out[name] = loss_dict[name]
            continue
        codes, counts, has_divisor, divisors = (table[:, 1 + 4 * k + j] for j in range(4))
        types = sorted({int(c) for c in codes.tolist() if c >= 0})
        if not types:
            out[name] = {"losses": 0, "indices": None, "reduction_type": "already_reduced"}
            continue
        if len(types) > 1 or _REDUCTION_TYPES[types[0]] == "already_reduced":
            got = ", ".join(
                f"rank {r}: {_REDUCTION_TYPES[int(c)] if c >= 0 else 'zero'}" for r, c in enumerate(codes.tolist())
            )
            raise ValueError(
                f"efficient=True combines per-query or per-pair losses across ranks; {loss_name}'s sub-loss {name!r} "
                f"has reduction types {got}; use efficient=False"
            )
        reduction_type = _REDUCTION_TYPES[types[0]]
        out[name] = _gather_sub_loss(loss_dict[name], reduction_type, [int(c) for c in counts], offset, all_emb, tie)
        if bool(has_divisor.any()):
            out[name]["divisor"] = float(divisors[has_divisor.bool()].sum())
    return out


def _gather_sub_loss(
    info: dict, reduction_type: str, counts, offset: int, all_emb: torch.Tensor, tie: torch.Tensor
) -> dict:
    device, dtype = all_emb.device, all_emb.dtype
    num_index = _NUM_INDEX_TENSORS[reduction_type]
    if torch.is_tensor(info["losses"]):
        losses = info["losses"].reshape(-1).to(dtype)
        indices = info["indices"]
        indices = [indices] if num_index == 1 else list(indices)
        indices = [t.to(device=device, dtype=torch.long) for t in indices]
    else:
        losses = torch.zeros(0, dtype=dtype, device=device)
        indices = [torch.zeros(0, dtype=torch.long, device=device) for _ in range(num_index)]
    indices[0] = indices[0] + offset
    all_losses = all_gather_rows_with_grad(losses + tie, counts)
    all_indices = [all_gather_rows(t, counts) for t in indices]
    return {
        "losses": all_losses,
        "indices": all_indices[0] if num_index == 1 else tuple(all_indices),
        "reduction_type": reduction_type,
    }
