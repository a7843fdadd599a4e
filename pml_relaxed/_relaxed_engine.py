r"""The engine behind the relaxed losses: per-anchor losses over row blocks, exact and memory-bounded.

Every relaxed loss is a sum over anchors i of a row function of the relative distances
``d_ij = D_ij / mu_i`` (``mu_i`` the mean of row i of the student distance matrix D over all m reference
columns) and the relaxed labels ``w_ij``. A row of D needs only anchor i and the reference set, so rows
can be computed a block at a time: peak memory is O(block * m + (n + m) * dims) instead of O(n * m).

The gradient is closed-form. With ``phi_ij`` the derivative of the row loss with respect to ``d_ij`` (zero
outside the pair mask) and ``u_i`` the upstream gradient of anchor i::

    dL/dD_ij = (u_i / mu_i) * (phi_ij - (1/m) sum_k phi_ik d_ik)        (every column j: mu_i uses them all)

and, for the Euclidean distance raised to ``power``, ``dD_ij/dsq_ij * 2 (g_i - r_j)`` with
``sq_ij = ||g_i - r_j||^2``, which becomes two matrix products per block. Other distances go through
autograd, one block at a time.

One pass: when a gradient will be needed, the forward pass computes it block by block for ``u = 1`` (each
block's relaxed labels computed once) and the backward pass returns ``c`` times it when its upstream gradient
is one constant ``c`` (a mean, a sum, a fixed weight); any other upstream gradient recomputes every block
(two passes). A block's elementwise work is in-place torch operations on a few reused buffers
(:class:`Workspace`); masks are 0/1 tensors of the float dtype (vectorised), not bool masks.

Not public API: use :mod:`pml_relaxed.functional` or the loss classes.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._pairs import fill_self_pairs_, zero_self_pairs

BLOCK_ELEMENTS = 1 << 20
"""Auto mode: a block holds about this many (query, reference) pairs (4 MiB per float32 temporary).

Measured at n = m = 4096, student 128, teacher 512, one thread of a 2-core AMD EPYC (1 MiB L2 per core, 32 MiB
L3; benchmarks/loss_speed.py): blocks of 256 rows (2**20 pairs) beat 128 and 512 rows for both relaxed losses
(about 1.3x / 1.4x their four matrix products, against 1.4x / 1.6x at 128 rows and 1.5x / 1.4x at 512); smaller
blocks make skinnier, slower matrix products, larger ones spill the elementwise passes out of cache.
"""

MIN_AUTO_BLOCK_ROWS = 64
"""Auto mode: at least this many rows per block (skinny blocks make slow matrix products)."""

AUTO_DENSE_MAX_PAIRS = 1 << 16
"""Auto mode: batches of at most this many pairs (n * m, e.g. 256 x 256) take the dense path."""

RowsFn = Callable[[int, int], Optional[torch.Tensor]]


def resolve_block_size(block_size: Optional[int], num_queries: int, num_refs: int) -> int:
    """The number of query rows per block: 0 for the dense path.

    ``None`` (auto) gives 0 up to :data:`AUTO_DENSE_MAX_PAIRS` pairs, else about
    :data:`BLOCK_ELEMENTS` pairs per block (at least :data:`MIN_AUTO_BLOCK_ROWS` rows). A positive value is
    used as given (capped at n).
    """
    if block_size is None:
        if num_queries * num_refs <= AUTO_DENSE_MAX_PAIRS:
            return 0
        return min(num_queries, max(MIN_AUTO_BLOCK_ROWS, BLOCK_ELEMENTS // max(num_refs, 1)))
    return min(block_size, num_queries) if block_size > 0 else 0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32 (no overflow in squared distances or exponentials)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class Workspace:
    """The (b, m) temporaries of one blockwise sweep, allocated once and reused by every block.

    A fresh multi-MiB tensor per operation costs the CPU page faults on first touch (the allocator returns large
    blocks to the system); reusing a handful of named buffers keeps the block loop in cache-warm memory.
    ``None`` in place of a workspace allocates afresh (the same values).
    """

    def __init__(self) -> None:
        self._buffers: dict = {}

    def get(self, name: str, shape: Tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """A contiguous buffer of ``shape`` with ``like``'s dtype and device, the same memory for every call with
        this name (contents undefined)."""
        buf = self._buffers.get(name)
        numel = shape[0] * shape[1]
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
            return buf
        return buf.view(-1)[:numel].view(shape)


def _buffer(workspace: Optional[Workspace], name: str, like: torch.Tensor, shape=None) -> torch.Tensor:
    """``workspace``'s buffer ``name`` of ``shape`` (default: like's), or a fresh tensor when workspace is None."""
    shape = tuple(like.shape) if shape is None else shape
    if workspace is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return workspace.get(name, shape, like)


# ----------------------------------------------------------------------------------------- distances
# Each piece has a differentiable form (the dense path, autograd) and an in-place form for the blockwise
# path, which runs without autograd and rewrites its own temporaries to save memory passes.


class EuclideanDistance:
    """``D = ||g_i - r_j||^power`` through matrix products (no cdist: any float dtype, double backward).

    The engine centres the inputs first (the reference set's mean subtracted, a constant), which leaves D
    unchanged and reduces cancellation in ``||g||^2 + ||r||^2 - 2 g.r``.
    """

    closed_form = True

    def __init__(self, power: float = 1.0) -> None:
        self.power = float(power)

    def matrix(self, queries: torch.Tensor, refs: torch.Tensor, diag_offset: Optional[int]) -> torch.Tensor:
        """(b, m) distances, differentiable; ``diag_offset`` (self reference) zeroes the pairs (i, i + offset)."""
        query_sq, ref_sq = (queries * queries).sum(1, keepdim=True), (refs * refs).sum(1).unsqueeze(0)
        sq = torch.addmm(ref_sq, queries, refs.t(), alpha=-2.0) + query_sq
        sq = torch.where(sq <= self.noise_floor(query_sq, ref_sq), torch.zeros_like(sq), sq)  # NaN stays NaN
        if diag_offset is not None:
            sq = zero_self_pairs(sq, diag_offset)
        zero = sq == 0  # NaN stays NaN
        safe = torch.where(zero, torch.ones_like(sq), sq)
        root = safe.sqrt() if self.power == 1.0 else safe.pow(self.power / 2)
        return torch.where(zero, torch.zeros_like(sq), root)

    def matrix_(
        self,
        queries: torch.Tensor,
        refs: torch.Tensor,
        diag_offset: Optional[int],
        ref_sq_norms: torch.Tensor,
        workspace: Optional[Workspace] = None,
    ) -> torch.Tensor:
        """:meth:`matrix` without autograd, in place (``ref_sq_norms``: the (1, m) squared norms of refs).

        The noise floor is applied by multiplying with a 0/1 mask of the dtype (vectorised; a bool mask and
        ``masked_fill_`` take a scalar loop), which keeps NaN as NaN (``NaN * 0``).
        """
        query_sq = (queries * queries).sum(1, keepdim=True)
        dist = _buffer(workspace, "dist", queries, (queries.shape[0], refs.shape[0]))
        torch.addmm(ref_sq_norms, queries, refs.t(), alpha=-2.0, out=dist).add_(query_sq)
        above_floor = torch.gt(dist, self.noise_floor(query_sq, ref_sq_norms), out=_buffer(workspace, "mask", dist))
        dist.mul_(above_floor)
        if diag_offset is not None:
            self_pairs_view(dist, diag_offset).fill_(0)
        return dist.sqrt_() if self.power == 1.0 else dist.pow_(self.power / 2)

    @staticmethod
    def noise_floor(query_sq: torch.Tensor, ref_sq: torch.Tensor) -> torch.Tensor:
        """(b, 1) rounding-error bound of ``||g||^2 + ||r||^2 - 2 g.r``: squared distances at or below it are 0.

        Measured: identical rows come out within 6 eps (||g||^2 + ||r||^2) of 0 (float32 and float64, 4 to
        512 dims); taking ``32 eps`` of the row's and the largest reference norm makes duplicated rows exactly
        0 apart (as the self pairs are), whatever the summation order. Its square root (about 2e-3 of the
        norm in float32, 1e-7 in float64) is the resolution of any matrix-product distance, cdist's included.
        """
        eps = torch.finfo(query_sq.dtype).eps
        return (query_sq + ref_sq.amax(dim=1, keepdim=True)) * (32 * eps)

    def pullback_(
        self,
        queries: torch.Tensor,
        refs: torch.Tensor,
        dist: torch.Tensor,
        grad_dist: torch.Tensor,
        grad_queries: torch.Tensor,
        grad_refs: torch.Tensor,
        workspace: Optional[Workspace] = None,
    ) -> None:
        """Adds the gradients w.r.t. (queries, refs) of ``sum(grad_dist * D)`` to ``grad_queries`` and
        ``grad_refs`` (in place); overwrites ``grad_dist``.

        ``dD/dg_i = power * D / sq * (g_i - r_j)``, 0 where D = 0 (the subgradient at a zero distance). With
        ``C = grad_dist * dD/dsq * 2``: ``grad_queries += rowsum(C) g - C r`` and ``grad_refs += colsum(C) r - C^T g``.
        """
        # C = grad_dist * power * D / sq where D > 0, else 0: with nonzero = [D > 0] (0/1 in the dtype),
        # sq + 1 - nonzero is never 0, and NaN stays NaN.
        nonzero = torch.gt(dist, 0, out=_buffer(workspace, "mask", dist))
        if self.power == 1.0:  # D / sq = 1 / D
            safe_dist = torch.sub(dist, nonzero, out=_buffer(workspace, "tmp", dist)).add_(1)
            scale = grad_dist.mul_(nonzero).div_(safe_dist)
        else:
            sq = dist.pow(2.0 / self.power)
            scale = grad_dist.mul_(nonzero).div_(sq.sub_(nonzero).add_(1)).mul_(dist).mul_(self.power)
        grad_queries.addcmul_(queries, scale.sum(1, keepdim=True)).addmm_(scale, refs, alpha=-1.0)
        grad_refs.addcmul_(refs, scale.sum(0).unsqueeze(1)).addmm_(scale.t(), queries, alpha=-1.0)


class ModuleDistance:
    """Any PML distance (``compute_mat`` then ``** power``) on already normalised inputs, via autograd."""

    closed_form = False

    def __init__(self, distance: torch.nn.Module) -> None:
        self.distance = distance

    def matrix(self, queries: torch.Tensor, refs: torch.Tensor, diag_offset: Optional[int]) -> torch.Tensor:
        mat = self.distance.compute_mat(queries, refs)
        if self.distance.power != 1:
            mat = mat**self.distance.power
        if diag_offset is not None:
            mat = zero_self_pairs(mat, diag_offset)
        return mat

    def matrix_(self, queries, refs, diag_offset, ref_sq_norms, workspace=None):
        return self.matrix(queries, refs, diag_offset)


# ----------------------------------------------------------------------------------------- row losses


class BlockRows:
    """The engine's view of a row function: per-anchor losses and their derivative, one block at a time."""

    def losses_and_derivative_(
        self,
        d: Tensor,
        w: Tensor,
        mask: Optional[Tensor],
        diag_offset: Optional[int],
        workspace: Optional[Workspace] = None,
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """(b,) losses, (b, m) derivative ``phi = d loss_i / d d_ij`` (0 off the pairs) and (b,) row sums
        ``sum_j phi_ij d_ij`` (or None: the engine computes them) of a block, without autograd. ``d`` and ``w``
        are only read; ``mask`` None means every pair but the self pairs at ``diag_offset`` (None: no self
        pairs); ``workspace`` lends reusable buffers (the derivative may be one)."""
        return self._losses_and_derivative_(d, w, mask, diag_offset, workspace)

    def losses_(self, d: Tensor, w: Tensor, mask: Optional[Tensor], diag_offset: Optional[int]) -> Tensor:
        """The (b,) losses alone (a forward pass without gradient)."""
        return self.losses_and_derivative_(d, w, mask, diag_offset)[0]

    def _losses_and_derivative_(self, d, w, mask, diag_offset, workspace):
        raise NotImplementedError


class ContrastiveRows(BlockRows):
    """Row function of the relaxed contrastive loss: ``sum_j M_ij [w d^2 + (1 - w) relu(delta - d)^2]``."""

    def __init__(self, delta: float) -> None:
        self.delta = delta

    def losses(self, d: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        push = F.relu(self.delta - d).pow(2)
        per_pair = push + w * (d.pow(2) - push)
        return torch.where(mask, per_pair, torch.zeros_like(per_pair)).sum(1)

    def losses_(
        self, d: torch.Tensor, w: torch.Tensor, mask: Optional[torch.Tensor], diag_offset: Optional[int]
    ) -> torch.Tensor:
        """:meth:`losses` without autograd (``w`` is only read). ``mask`` None: every pair but the diagonal."""
        push = (self.delta - d).clamp_min_(0).square_()
        per_pair = d.square().sub_(push).mul_(w).add_(push)
        return _masked_row_sum_(per_pair, mask, diag_offset)

    def derivative_(
        self, d: torch.Tensor, w: torch.Tensor, mask: Optional[torch.Tensor], diag_offset: Optional[int]
    ) -> torch.Tensor:
        """``phi = d loss / d d = 2 [w d - (1 - w) relu(delta - d)]`` on the pairs, 0 elsewhere (w only read)."""
        push = (self.delta - d).clamp_min_(0)
        phi = (push + d).mul_(w).sub_(push).mul_(2)
        return _mask_(phi, mask, diag_offset)

    def _losses_and_derivative_(self, d: Tensor, w: Tensor, mask: Optional[Tensor], diag_offset, workspace):
        """:meth:`losses_` and :meth:`derivative_` of one block, sharing their terms (``d`` and ``w`` only read).

        With ``q = min(d - delta, 0) = -relu(delta - d)`` (0 on the self pairs, where d = 0 too) and
        ``h = q + w (d - q) = phi / 2``: the pair's loss ``w d^2 + (1 - w) q^2 = h d + q (h - d)``, and
        ``sum_j phi_j d_j = 2 sum_j h_j d_j`` comes with it.
        """
        if mask is not None:
            return self.losses_(d, w, mask, diag_offset), self.derivative_(d, w, mask, diag_offset), None
        q = torch.sub(d, self.delta, out=_buffer(workspace, "q", d)).clamp_max_(0)
        if diag_offset is not None:
            self_pairs_view(q, diag_offset).fill_(0)
        h = torch.sub(d, q, out=_buffer(workspace, "h", d))
        h = torch.addcmul(q, h, w, out=h)
        tmp = _buffer(workspace, "tmp", d)
        h_dot_d = torch.mul(h, d, out=tmp).sum(1)
        losses = torch.sub(h, d, out=tmp).mul_(q).sum(1).add_(h_dot_d)
        return losses, h.mul_(2), h_dot_d.mul_(2)


class MultiSimilarityRows(BlockRows):
    """Row function of the relaxed multi-similarity loss, evaluated with log-sum-exp."""

    def __init__(self, delta: float, alpha: float, beta: float) -> None:
        self.delta, self.alpha, self.beta = delta, alpha, beta

    def _log_terms(self, d, w, mask):
        neg_inf = torch.full_like(d, float("-inf"))
        keep_pos = mask & (w > 0)
        keep_neg = mask & (w < 1)
        pos = torch.where(keep_pos, self.alpha * d + torch.log(torch.where(keep_pos, w, torch.ones_like(w))), neg_inf)
        neg = torch.where(
            keep_neg,
            self.beta * (self.delta - d) + torch.log(torch.where(keep_neg, 1 - w, torch.ones_like(w))),
            neg_inf,
        )
        return pos, neg

    @staticmethod
    def _log_one_plus(terms: torch.Tensor) -> torch.Tensor:
        """``log(1 + sum_j exp(terms_j))`` per row, stable for any magnitude."""
        top = terms.amax(1, keepdim=True).clamp_min(0)
        return top.squeeze(1) + torch.log(torch.exp(-top.squeeze(1)) + torch.exp(terms - top).sum(1))

    def losses(self, d: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos, neg = self._log_terms(d, w, mask)
        return self._log_one_plus(pos) / self.alpha + self._log_one_plus(neg) / self.beta

    def _losses_and_derivative_(self, d: Tensor, w: Tensor, mask: Optional[Tensor], diag_offset, workspace):
        """:meth:`losses` and the derivative of one block from one set of exponentials (d, w only read).

        The log terms ``alpha d + log w`` and ``beta (delta - d) + log(1 - w)`` (-inf off the mask, where w = 0
        and where w = 1 respectively) are shifted by their row's ``max(0, max_j term)`` before ``exp``, as in
        :meth:`_log_one_plus`; the derivative is each term's share ``exp(term - log(1 + sum))``.
        """
        pos = torch.clamp_min(w, 0, out=_buffer(workspace, "q", d)).log_().add_(d, alpha=self.alpha)
        neg = torch.neg(w, out=_buffer(workspace, "h", d)).clamp_min_(-1).log1p_()
        neg.sub_(d, alpha=self.beta).add_(self.beta * self.delta)
        for terms in (pos, neg):
            if mask is not None:
                terms.masked_fill_(~mask, float("-inf"))
            elif diag_offset is not None:
                self_pairs_view(terms, diag_offset).fill_(float("-inf"))
        pull_losses, pull, pull_total = self._shifted_exps_(pos)
        push_losses, push, push_total = self._shifted_exps_(neg)
        phi = pull.div_(pull_total).addcmul_(push, push_total.reciprocal_(), value=-1)
        return pull_losses.div_(self.alpha).add_(push_losses, alpha=1 / self.beta), phi, None

    @staticmethod
    def _shifted_exps_(terms: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log(1 + sum_j exp(terms_j))`` per row, ``exp(terms_j - top)`` (overwriting terms) and the (b, 1)
        ``exp(-top) + sum_j exp(terms_j - top)``, with ``top = max(0, max_j terms_j)`` (each term's share of
        ``1 + sum`` is its shifted exponential over that total)."""
        top = terms.amax(1, keepdim=True).clamp_min_(0)
        exps = terms.sub_(top).exp_()
        total = exps.sum(1, keepdim=True).add_(torch.exp(-top))
        return total.log().add_(top).squeeze(1), exps, total


class AutogradRows(BlockRows):
    """Any differentiable per-anchor function ``(d, w, mask) -> (b,)``; its derivative comes from autograd."""

    def __init__(self, per_anchor: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.per_anchor = per_anchor

    def losses(self, d, w, mask):
        return self.per_anchor(d, w, mask)

    def losses_(self, d, w, mask, diag_offset):
        return self.per_anchor(d, w, _full_mask(d, mask, diag_offset))

    def _losses_and_derivative_(self, d, w, mask, diag_offset, workspace):
        return self.losses_(d, w, mask, diag_offset), self.derivative_(d, w, mask, diag_offset), None

    def derivative_(self, d, w, mask, diag_offset):
        mask = _full_mask(d, mask, diag_offset)
        with torch.enable_grad():
            leaf = d.detach().requires_grad_()
            (phi,) = torch.autograd.grad(self.per_anchor(leaf, w, mask).sum(), leaf)
        return phi


def self_pairs_view(mat: torch.Tensor, offset: int) -> torch.Tensor:
    """The self pairs ``(i, offset + i)`` of a (b, m) block as a writable view (its diagonal at ``offset``)."""
    return torch.diagonal(mat, offset)


def _full_mask(d: torch.Tensor, mask: Optional[torch.Tensor], diag_offset: Optional[int]) -> torch.Tensor:
    if mask is not None:
        return mask
    full = torch.ones(d.shape, dtype=torch.bool, device=d.device)
    return full if diag_offset is None else fill_self_pairs_(full, diag_offset, 0)


def _mask_(values: torch.Tensor, mask: Optional[torch.Tensor], diag_offset: Optional[int]) -> torch.Tensor:
    if mask is not None:
        return values.masked_fill_(~mask, 0)
    if diag_offset is not None:
        self_pairs_view(values, diag_offset).fill_(0)
    return values


def _masked_row_sum_(values: torch.Tensor, mask: Optional[torch.Tensor], diag_offset: Optional[int]) -> torch.Tensor:
    return _mask_(values, mask, diag_offset).sum(1)


# ----------------------------------------------------------------------------------------- the engine


class RelaxedProblem:
    """What one call needs: distance, row function, relaxed labels and pair mask for any row block.

    Args:
        distance: :class:`EuclideanDistance` or :class:`ModuleDistance`.
        rows: :class:`ContrastiveRows` or :class:`MultiSimilarityRows`.
        relaxed_labels: ``(start, end) -> (end - start, m)`` relaxed labels of those query rows.
        pair_mask: ``(start, end) -> (end - start, m)`` bool mask of the contributing pairs (self pairs
            excluded), or None for every pair (but the self pairs when ``self_reference``).
        self_reference: the reference set is the batch itself.
        stats: a dict to fill with ``num_pairs``, ``sum_relaxed_label`` and ``sum_relative_dist``, or None.
        one_pass: blockwise, compute the gradient in the forward pass when the backward will need it (the
            backward then only scales it if its upstream gradient is constant, else recomputes the blocks);
            False: always two passes (forward, then a backward that recomputes every block).
    """

    def __init__(
        self,
        distance,
        rows,
        relaxed_labels: RowsFn,
        pair_mask: Optional[RowsFn],
        self_reference: bool,
        stats: Optional[dict] = None,
        one_pass: bool = True,
    ) -> None:
        self.distance = distance
        self.rows = rows
        self.relaxed_labels = relaxed_labels
        self.pair_mask = pair_mask
        self.self_reference = self_reference
        self.stats = stats
        self.one_pass = one_pass

    def offset(self, start: int) -> Optional[int]:
        return start if self.self_reference else None

    def labels(self, start: int, end: int, like: torch.Tensor) -> torch.Tensor:
        return self.relaxed_labels(start, end).to(device=like.device, dtype=like.dtype)

    def mask(self, start: int, end: int) -> Optional[torch.Tensor]:
        return None if self.pair_mask is None else self.pair_mask(start, end)

    def per_anchor_dense(self, queries: torch.Tensor, refs: torch.Tensor, record: bool = True) -> torch.Tensor:
        """All rows in one differentiable block (autograd)."""
        dist = self.distance.matrix(queries, refs, self.offset(0))
        rel = dist / dist.mean(dim=1, keepdim=True).clamp_min(torch.finfo(dist.dtype).tiny)
        w = self.labels(0, queries.shape[0], rel)
        mask = _full_mask(rel, self.mask(0, queries.shape[0]), self.offset(0))
        if record:
            self.record(rel, w, mask, None)
        return self.rows.losses(rel, w, mask)

    def block_(
        self,
        queries: torch.Tensor,
        refs: torch.Tensor,
        start: int,
        end: int,
        ref_sq_norms: torch.Tensor,
        workspace: Optional[Workspace] = None,
    ):
        """Without autograd: relative distances, row means, relaxed labels and mask of rows [start, end)."""
        rel = self.distance.matrix_(queries[start:end], refs, self.offset(start), ref_sq_norms, workspace)
        row_mean = rel.mean(dim=1, keepdim=True).clamp_min_(torch.finfo(rel.dtype).tiny)
        rel.div_(row_mean)
        return rel, row_mean, self.labels(start, end, rel), self.mask(start, end)

    def record(self, rel, w, mask, diag_offset) -> None:
        if self.stats is None:
            return
        with torch.no_grad():  # tensors, summed on the device: no host synchronisation per block
            mask = _full_mask(rel, mask, diag_offset)
            totals = (mask.sum(), torch.where(mask, w, 0).sum(), torch.where(mask, rel, 0).sum())
            for key, total in zip(("num_pairs", "sum_relaxed_label", "sum_relative_dist"), totals):
                self.stats[key] = self.stats[key] + total if key in self.stats else total


def _blocks(num_rows: int, block_size: int):
    for start in range(0, num_rows, block_size):
        yield start, min(start + block_size, num_rows)


def accumulate_block_gradient_(
    problem: RelaxedProblem,
    queries: torch.Tensor,
    refs: torch.Tensor,
    start: int,
    end: int,
    block: tuple,
    phi: torch.Tensor,
    phi_dot_rel: Optional[torch.Tensor],
    upstream: Optional[torch.Tensor],
    grads: Tuple[torch.Tensor, torch.Tensor],
    workspace: Optional[Workspace] = None,
) -> None:
    """Adds block [start, end)'s gradient to ``grads = (grad_queries, grad_refs)`` (rows [start, end) of the first).

    ``block`` is :meth:`RelaxedProblem.block_`'s (rel, row_mean, w, mask), ``phi`` the row function's derivative
    there, both consumed (overwritten), and ``phi_dot_rel`` its row sums ``sum_j phi_ij rel_ij`` (None: computed
    here); ``upstream`` the (n,) upstream gradient of the per-anchor losses, None for all ones; ``workspace`` the
    sweep's buffers (``tmp`` and ``mask`` are used here).
    """
    rel, row_mean, _, _ = block
    # dL/dD = (u / mu) (phi - (1/m) sum_k phi_k d_k), written into phi's memory.
    if phi_dot_rel is None:
        phi_dot_rel = torch.mul(phi, rel, out=_buffer(workspace, "tmp", rel)).sum(1)
    mean_term = phi_dot_rel.unsqueeze(1).div_(refs.shape[0])
    scale = row_mean.reciprocal() if upstream is None else upstream[start:end].unsqueeze(1) / row_mean
    distance = problem.distance
    if isinstance(distance, EuclideanDistance) and distance.power == 1.0:
        # D = mu d is linear in d: dL/dD / D = (dL/dD / mu) / d, so rel stands in for D (one pass fewer). A
        # collapsed row (mu at its floor: every D = 0) has no gradient, and 1 / mu^2 would overflow there.
        collapsed = row_mean <= torch.finfo(rel.dtype).tiny
        dist, scale = rel, torch.where(collapsed, 0, scale / row_mean)
    else:
        dist = rel.mul_(row_mean)
    grad_dist = phi.sub_(mean_term).mul_(scale)
    if distance.closed_form:
        distance.pullback_(queries[start:end], refs, dist, grad_dist, grads[0][start:end], grads[1], workspace)
    else:
        gq, gr = _autograd_pullback(problem, queries, refs, start, end, grad_dist)
        grads[0][start:end] += gq
        grads[1].add_(gr)


def recompute_gradient(problem, queries, refs, block_size, upstream):
    """The two-pass backward: every block recomputed, its gradient weighted by ``upstream`` (n,)."""
    grads = (torch.zeros_like(queries), torch.zeros_like(refs))
    ref_sq_norms = (refs * refs).sum(1).unsqueeze(0)
    workspace = Workspace()
    for start, end in _blocks(queries.shape[0], block_size):
        block = problem.block_(queries, refs, start, end, ref_sq_norms, workspace)
        rel, _, w, mask = block
        _, phi, phi_dot_rel = problem.rows.losses_and_derivative_(rel, w, mask, problem.offset(start), workspace)
        accumulate_block_gradient_(
            problem, queries, refs, start, end, block, phi, phi_dot_rel, upstream, grads, workspace
        )
    return grads


def is_constant(values: torch.Tensor) -> bool:
    """Whether every entry of a 1-D tensor is equal (an expanded scalar is, without reading its values)."""
    if values.shape[0] <= 1 or values.stride(0) == 0:
        return True
    return bool((values == values[0]).all())  # one host synchronisation per backward on CUDA


class _BlockwiseRelaxed(torch.autograd.Function):
    """Per-anchor relaxed losses over row blocks, with a closed-form gradient.

    One pass (``one_pass``): the forward also accumulates the gradient for an all-ones upstream gradient,
    block by block; a backward whose upstream gradient is one constant c (MeanReducer, SumReducer, any fixed
    weight) returns c times it. Any other upstream gradient recomputes every block (two passes).
    """

    @staticmethod
    def forward(ctx, queries, refs, problem: RelaxedProblem, block_size: int, one_pass: bool):
        ref_tensor = queries if refs is None else refs
        ref_sq_norms = (ref_tensor * ref_tensor).sum(1).unsqueeze(0)
        losses = queries.new_empty(queries.shape[0])
        grads = (torch.zeros_like(queries), torch.zeros_like(ref_tensor)) if one_pass else None
        workspace = Workspace()
        for start, end in _blocks(queries.shape[0], block_size):
            block = problem.block_(queries, ref_tensor, start, end, ref_sq_norms, workspace)
            rel, _, w, mask = block
            offset = problem.offset(start)
            problem.record(rel, w, mask, offset)
            if grads is None:
                losses[start:end] = problem.rows.losses_(rel, w, mask, offset)
            else:
                block_losses, phi, phi_dot_rel = problem.rows.losses_and_derivative_(rel, w, mask, offset, workspace)
                losses[start:end] = block_losses
                accumulate_block_gradient_(
                    problem, queries, ref_tensor, start, end, block, phi, phi_dot_rel, None, grads, workspace
                )
        ctx.problem, ctx.block_size, ctx.self_reference = problem, block_size, refs is None
        ctx.one_pass_grads = grads
        ctx.save_for_backward(queries, ref_tensor)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        queries, refs = ctx.saved_tensors
        problem = ctx.problem
        if torch.is_grad_enabled():  # create_graph=True: differentiate the dense graph instead
            return _dense_backward(problem, queries, refs, grad_losses, ctx.self_reference)
        if ctx.one_pass_grads is not None and is_constant(grad_losses):
            scale = grad_losses[:1]
            grad_queries, grad_refs = (g * scale for g in ctx.one_pass_grads)
        else:
            grad_queries, grad_refs = recompute_gradient(problem, queries, refs, ctx.block_size, grad_losses)
        if ctx.self_reference:
            return grad_queries.add_(grad_refs), None, None, None, None
        return grad_queries, grad_refs, None, None, None


def _autograd_pullback(problem, queries, refs, start, end, grad_dist):
    with torch.enable_grad():
        q = queries[start:end].detach().requires_grad_()
        r = refs.detach().requires_grad_()
        dist = problem.distance.matrix(q, r, problem.offset(start))
        return torch.autograd.grad(dist, (q, r), grad_dist)


def _dense_backward(problem, queries, refs, grad_losses, self_reference):
    inputs = (queries,) if self_reference else (queries, refs)
    losses = problem.per_anchor_dense(queries, refs, record=False)
    grads = torch.autograd.grad(losses, inputs, grad_losses, create_graph=True, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs))
    if self_reference:
        return grads[0], None, None, None, None
    return grads[0], grads[1], None, None, None


def relaxed_per_anchor(
    embeddings: torch.Tensor,
    ref_emb: Optional[torch.Tensor],
    problem: RelaxedProblem,
    block_size: Optional[int],
) -> torch.Tensor:
    """Per-anchor losses (n,), dense (autograd) or blockwise (custom backward), the same values.

    ``embeddings`` and ``ref_emb`` are the already normalised student embeddings (``ref_emb`` None: the
    batch). Half-precision inputs are computed in float32 with autocast off; the result is float32 then.
    """
    num_refs = embeddings.shape[0] if ref_emb is None else ref_emb.shape[0]
    block = resolve_block_size(block_size, embeddings.shape[0], num_refs)
    dtype = compute_dtype(embeddings.dtype)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        queries = embeddings.to(dtype)
        refs = None if ref_emb is None else ref_emb.to(dtype)
        if isinstance(problem.distance, EuclideanDistance):  # translation invariant: centring is exact
            centre = (queries if refs is None else refs).detach().mean(0)
            queries = queries - centre
            refs = None if refs is None else refs - centre
        if block == 0:
            return problem.per_anchor_dense(queries, queries if refs is None else refs)
        # torch.compile traces both passes ahead of time, so a backward that picks its path from the upstream
        # gradient's values cannot be captured: compiled, the loss takes two passes.
        one_pass = (
            problem.one_pass
            and torch.is_grad_enabled()
            and any(x is not None and x.requires_grad for x in (queries, refs))
            and not torch.compiler.is_compiling()
        )
        return _BlockwiseRelaxed.apply(queries, refs, problem, block, one_pass)
