"""Row-wise all-gathers for the distributed wrappers: uneven row counts, and an autograd-aware variant.

Every rank's rows are concatenated in rank order (rank 0's rows first), so every rank sees the same
global batch, the concatenation of the local batches. Uneven row counts are handled by gathering the
counts first, padding every rank's rows to the largest count and trimming after the gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import _validation as v


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_counts(values: Sequence[float], device: torch.device) -> torch.Tensor:
    """All-gathers a few numbers per rank; returns a (world_size, len(values)) float64 tensor."""
    local = torch.tensor([float(x) for x in values], dtype=torch.float64, device=device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    if max(sizes) == 0:
        return tensor.new_zeros((0,) + tuple(tensor.shape[1:]))
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([chunk[:size] for chunk, size in zip(out, sizes)], dim=0)


def all_gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenation in rank order of every rank's ``tensor`` (rank r has ``sizes[r]`` rows); no gradient."""
    with torch.no_grad():
        return _gather_padded(tensor.detach(), sizes)


class _AllGatherRowsWithGrad(torch.autograd.Function):
    """Forward: the rank-order concatenation. Backward: each rank gets the sum over ranks of the
    gradients w.r.t. its own rows (an all-reduce of the full gradient, then this rank's slice; one code
    path for every backend, gloo included)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def all_gather_rows_with_grad(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """As :func:`all_gather_rows`, differentiable: gradients w.r.t. every rank's rows are sent home and summed.

    If each of the W ranks back-propagates the same function of the gathered rows, every rank receives
    W times the gradient w.r.t. its own rows, which DistributedDataParallel's averaging divides by W.
    """
    if not tensor.requires_grad:
        return all_gather_rows(tensor, sizes)
    return _AllGatherRowsWithGrad.apply(tensor, sizes)


def rank_offset(sizes: list[int]) -> int:
    """Index of this rank's first row in the rank-order concatenation."""
    return sum(sizes[: dist.get_rank()])


def gather_index_tuple(indices_tuple: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Concatenates, in rank order, every rank's index tensors (one all-gather per tensor of the tuple)."""
    indices_tuple = [t.to(device=device, dtype=torch.long) for t in indices_tuple]
    counts = gather_counts([len(t) for t in indices_tuple], device)
    return tuple(all_gather_rows(t, [int(c) for c in counts[:, k]]) for k, t in enumerate(indices_tuple))


def check_same_on_every_rank(table: torch.Tensor, columns: Sequence[tuple[int, str]]) -> None:
    """Raises the same ValueError on every rank when a column of the gathered table differs across ranks.

    Args:
        table: (world_size, k) from :func:`gather_counts`.
        columns: ``(column, what)`` pairs, e.g. ``(1, "labels given (1) or None (0)")``.
    """
    for column, what in columns:
        values = table[:, column]
        if not bool((values == values[0]).all()):
            per_rank = ", ".join(f"rank {r}: {_as_number(v)}" for r, v in enumerate(values.tolist()))
            raise ValueError(f"{what} must be the same on every rank; got {per_rank}")


def _as_number(value: float) -> float | None:
    return int(value) if float(value).is_integer() else value


@dataclass
class GatheredBatch:
    """The global batch: every tensor is the rank-order concatenation of the local ones (None if not given)."""

    sizes: list[int]
    offset: int
    embeddings: torch.Tensor
    labels: torch.Tensor | None
    teacher_emb: torch.Tensor | None
    ref_emb: torch.Tensor | None
    ref_labels: torch.Tensor | None
    teacher_ref_emb: torch.Tensor | None
    enqueue_mask: torch.Tensor | None


def _check_local(embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, enqueue_mask) -> None:
    v.check_embeddings("embeddings", embeddings, "(batch_size, dim)")
    n = embeddings.shape[0]
    if labels is not None:
        v.check_labels("labels", labels, n, "embeddings")
    if teacher_emb is not None:
        v.check_embeddings("teacher_emb", teacher_emb, "(batch_size, teacher_dim)")
        v.check_same_rows("teacher_emb", teacher_emb, "embeddings", embeddings)
    if enqueue_mask is not None:
        v.check_labels("enqueue_mask", enqueue_mask, n, "embeddings")
    if ref_emb is not None:
        v.check_embeddings("ref_emb", ref_emb, "(num_refs, dim)")
        if ref_labels is not None:
            v.check_labels("ref_labels", ref_labels, ref_emb.shape[0], "ref_emb")
        if teacher_ref_emb is not None:
            v.check_embeddings("teacher_ref_emb", teacher_ref_emb, "(num_refs, teacher_dim)")
            v.check_same_rows("teacher_ref_emb", teacher_ref_emb, "ref_emb", ref_emb)


def gather_batch(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None = None,
    ref_emb: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    teacher_emb: torch.Tensor | None = None,
    teacher_ref_emb: torch.Tensor | None = None,
    enqueue_mask: torch.Tensor | None = None,
    with_grad: bool = True,
) -> GatheredBatch:
    """All-gathers a batch. Student rows keep their gradient path when ``with_grad`` (see
    :func:`all_gather_rows_with_grad`); labels, teacher rows and the enqueue mask carry none.

    First one small all-gather of every rank's row counts and of which arguments it passes, so that
    a mismatch (labels on one rank, None on another) raises the same ValueError on every rank
    instead of hanging in a collective.
    """
    _check_local(embeddings, labels, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, enqueue_mask)
    device = embeddings.device
    has_ref = ref_emb is not None
    table = gather_counts(
        [
            embeddings.shape[0],
            embeddings.shape[1],
            labels is not None,
            teacher_emb is not None,
            -1 if teacher_emb is None else teacher_emb.shape[1],
            has_ref,
            ref_emb.shape[0] if has_ref else 0,
            ref_labels is not None and has_ref,
            teacher_ref_emb is not None and has_ref,
            enqueue_mask is not None,
            bool(with_grad and embeddings.requires_grad),
            bool(with_grad and has_ref and ref_emb.requires_grad),
        ],
        device,
    )
    check_same_on_every_rank(
        table,
        [
            (1, "the embedding dimension (embeddings.shape[1])"),
            (2, "whether labels are given (1) or None (0)"),
            (3, "whether teacher_emb is given (1) or None (0)"),
            (4, "the teacher dimension (teacher_emb.shape[1])"),
            (5, "whether ref_emb is given (1) or None (0)"),
            (7, "whether ref_labels are given (1) or None (0)"),
            (8, "whether teacher_ref_emb is given (1) or None (0)"),
            (9, "whether enqueue_mask is given (1) or None (0)"),
            (10, "whether embeddings require grad (1) or not (0)"),
            (11, "whether ref_emb requires grad (1) or not (0)"),
        ],
    )
    sizes = [int(x) for x in table[:, 0]]
    gather_student = all_gather_rows_with_grad if with_grad else all_gather_rows

    def gather_other(tensor, rows):
        return None if tensor is None else all_gather_rows(tensor.to(device), rows)

    ref_sizes = [int(x) for x in table[:, 6]]
    mask = None
    if enqueue_mask is not None:
        mask = all_gather_rows(enqueue_mask.to(device=device, dtype=torch.uint8), sizes).bool()
    return GatheredBatch(
        sizes=sizes,
        offset=rank_offset(sizes),
        embeddings=gather_student(embeddings, sizes),
        labels=gather_other(labels, sizes),
        teacher_emb=gather_other(teacher_emb, sizes),
        ref_emb=gather_student(ref_emb, ref_sizes) if has_ref else None,
        ref_labels=gather_other(ref_labels, ref_sizes) if has_ref else None,
        teacher_ref_emb=gather_other(teacher_ref_emb, ref_sizes) if has_ref else None,
        enqueue_mask=mask,
    )
