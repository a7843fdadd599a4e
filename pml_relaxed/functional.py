r"""Pure tensor math of embedding transfer with label relaxation (Kim et al., CVPR 2021).

No PML objects here: every function maps tensors to tensors, so it can be gradchecked, benchmarked and
used in any training loop. The classes in :mod:`pml_relaxed.losses` are thin wrappers around it.

Notation (shapes): ``n`` queries, ``m`` reference samples, ``d`` student dim, ``D`` teacher dim.

    w_ij = exp(-||f_i - f_j||^2 / sigma)                  relaxed label (teacher, no gradient)
    d_ij = ||g_i - g_j|| / ((1/m) sum_k ||g_i - g_k||)     relative distance (student)
    L    = (1/n) sum_i sum_{j != i} [ w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2 ]
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import _relaxed_engine as _bw
from . import _validation as v
from ._pairs import pair_mask, pair_mask_rows, zero_self_pairs

__all__ = [
    "euclidean_distance",
    "squared_euclidean_distance",
    "gaussian_kernel",
    "relative_distance",
    "pair_mask",
    "pair_mask_rows",
    "gaussian_kernel_rows",
    "relaxed_contrastive_per_anchor",
    "relaxed_multi_similarity_per_anchor",
    "relaxed_contrastive_loss",
    "relaxed_multi_similarity_loss",
    "self_distillation_kl_per_anchor",
]


def squared_euclidean_distance(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``||x_i - y_j||^2``, clamped at 0.

    Args:
        x: (n, d) tensor.
        y: (m, d) tensor, or None for ``y = x`` (then the diagonal is exactly 0).

    Returns:
        (n, m) tensor.
    """
    self_reference = y is None
    y = x if y is None else y
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    sq = sq.clamp_min(0)
    return zero_self_pairs(sq, 0) if self_reference else sq


def euclidean_distance(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pairwise Euclidean distances with finite gradients everywhere.

    ``sqrt`` has an infinite derivative at 0; pairs at distance 0 (the diagonal, duplicated or
    collapsed rows) get the subgradient 0 instead.

    Args:
        x: (n, d) tensor.
        y: (m, d) tensor, or None for ``y = x`` (then the diagonal is exactly 0).

    Returns:
        (n, m) tensor.
    """
    sq = squared_euclidean_distance(x, y)
    zero = sq == 0  # NaN compares unequal to 0, so NaN inputs stay NaN (never hidden as a 0 distance)
    return torch.where(zero, torch.zeros_like(sq), torch.sqrt(torch.where(zero, torch.ones_like(sq), sq)))


def gaussian_kernel_rows(
    teacher_emb: torch.Tensor,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    normalize: bool = True,
) -> Callable[[int, int], torch.Tensor]:
    """Rows of :func:`gaussian_kernel` on demand: ``rows(start, end)`` is ``gaussian_kernel(...)[start:end]``.

    The teacher embeddings are prepared (detached, upcast from half precision, normalised) once; each
    call then costs one (end - start, m) block, which is how the blockwise losses use it.

    Raises:
        ValueError: if sigma <= 0.
    """
    sigma = v.check_positive("sigma", sigma)
    with torch.no_grad():
        f = _prepare_teacher(teacher_emb, normalize)
        f_ref = None if teacher_ref_emb is None else _prepare_teacher(teacher_ref_emb, normalize)

        refs = f if f_ref is None else f_ref
        # -||f_i - r_j||^2 / sigma = (2 f_i.r_j - ||f_i||^2 - ||r_j||^2) / sigma, the scale folded into the product
        ref_terms = (refs * refs).sum(1).unsqueeze(0).mul_(-1.0 / sigma)
        query_terms = (f * f).sum(1, keepdim=True).mul_(-1.0 / sigma)

    def rows(start: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            exponent = torch.addmm(ref_terms, f[start:end], refs.t(), alpha=2.0 / sigma)
            exponent.add_(query_terms[start:end]).clamp_max_(0)
            if f_ref is None:  # self pairs are exactly 0 apart
                torch.diagonal(exponent, start).fill_(0)
            return exponent.exp_()

    return rows


def _prepare_teacher(teacher_emb: torch.Tensor, normalize: bool) -> torch.Tensor:
    f = teacher_emb.detach()
    if f.dtype in (torch.float16, torch.bfloat16):
        f = f.float()
    return F.normalize(f, p=2, dim=1) if normalize else f


def gaussian_kernel(
    teacher_emb: torch.Tensor,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    normalize: bool = True,
) -> torch.Tensor:
    r"""Relaxed labels ``w_ij = exp(-||f_i - f_j||^2 / sigma)`` from teacher embeddings, in [0, 1].

    Computed without gradient (the teacher is frozen) and in at least float32.

    Args:
        teacher_emb: (n, D) teacher embeddings f.
        teacher_ref_emb: (m, D) teacher embeddings of the reference set, or None for the batch itself.
        sigma: kernel bandwidth, > 0. With L2-normalised f, ``||f_i - f_j||^2 = 2 - 2 cos`` lies in [0, 4].
        normalize: L2-normalise f first (the paper's setting).

    Returns:
        (n, m) tensor of relaxed labels.

    Raises:
        ValueError: if sigma <= 0.
    """
    return gaussian_kernel_rows(teacher_emb, teacher_ref_emb, sigma, normalize)(0, teacher_emb.shape[0])


def relative_distance(dist: torch.Tensor) -> torch.Tensor:
    """Divides each row of a distance matrix by its mean: ``d_ij = D_ij / ((1/m) sum_k D_ik)``.

    The mean runs over every reference column (the zero self-distance included when the reference
    set is the batch) and the gradient flows through it. A row whose mean is 0 (a batch of one, or a
    fully collapsed student) gives zeros, not NaN.

    Args:
        dist: (n, m) non-negative distances.

    Returns:
        (n, m) relative distances.
    """
    row_mean = dist.mean(dim=1, keepdim=True)
    return dist / row_mean.clamp_min(torch.finfo(dist.dtype).tiny)


def relaxed_contrastive_per_anchor(
    relative_dist: torch.Tensor,
    relaxed_labels: torch.Tensor,
    mask: torch.Tensor,
    delta: float = 1.0,
) -> torch.Tensor:
    r"""Per-anchor relaxed contrastive loss ``sum_j mask_ij [w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2]``.

    Args:
        relative_dist: (n, m) relative distances d.
        relaxed_labels: (n, m) relaxed labels w in [0, 1].
        mask: (n, m) bool mask of contributing pairs.
        delta: margin, >= 0.

    Returns:
        (n,) tensor; its mean is the paper's loss.
    """
    return _bw.ContrastiveRows(delta).losses(relative_dist, relaxed_labels.to(relative_dist.dtype), mask)


def relaxed_multi_similarity_per_anchor(
    relative_dist: torch.Tensor,
    relaxed_labels: torch.Tensor,
    mask: torch.Tensor,
    delta: float = 1.0,
    alpha: float = 1.0,
    beta: float = 2.0,
) -> torch.Tensor:
    r"""Per-anchor relaxed multi-similarity loss.

    ``(1/alpha) log(1 + sum_j w_ij exp(alpha d_ij)) + (1/beta) log(1 + sum_j (1 - w_ij) exp(beta (delta - d_ij)))``
    with the sums over the masked pairs, evaluated with log-sum-exp (no overflow).

    Args:
        relative_dist: (n, m) relative distances d.
        relaxed_labels: (n, m) relaxed labels w in [0, 1].
        mask: (n, m) bool mask of contributing pairs.
        delta: margin, >= 0.
        alpha: scale of the pull (positive) term, > 0.
        beta: scale of the push (negative) term, > 0.

    Returns:
        (n,) tensor; its mean is the loss.
    """
    rows = _bw.MultiSimilarityRows(delta, alpha, beta)
    return rows.losses(relative_dist, relaxed_labels.to(relative_dist.dtype), mask)


def _relaxed_loss(
    name: str,
    rows,
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor],
    teacher_ref_emb: Optional[torch.Tensor],
    sigma: float,
    normalize_teacher: bool,
    block_size: Optional[int],
    validate: bool,
) -> torch.Tensor:
    validate = v.check_bool("validate", validate)
    normalize_teacher = v.check_bool("normalize_teacher", normalize_teacher)
    v.check_teacher_pair(student_emb, student_ref_emb, teacher_emb, teacher_ref_emb, check_values=validate)
    block_size = v.check_block_size("block_size", block_size)
    self_reference = student_ref_emb is None
    num_queries = student_emb.shape[0]
    num_refs = num_queries if self_reference else student_ref_emb.shape[0]
    labels = gaussian_kernel_rows(teacher_emb, teacher_ref_emb, sigma, normalize_teacher)
    if num_queries == 0 or num_refs == 0:
        return _zero_loss(student_emb, student_ref_emb)
    v.warn_if_degenerate(name, student_emb, student_ref_emb, check_values=validate)
    problem = _bw.RelaxedProblem(_bw.EuclideanDistance(), rows, labels, None, self_reference)
    return _bw.relaxed_per_anchor(student_emb, student_ref_emb, problem, block_size).mean()


def _zero_loss(*tensors: Optional[torch.Tensor]) -> torch.Tensor:
    """A zero loss connected to the graph of every given tensor (PML's convention for empty batches)."""
    return sum(t.sum() * 0 for t in tensors if t is not None)


def relaxed_contrastive_loss(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    delta: float = 1.0,
    normalize_teacher: bool = True,
    block_size: Optional[int] = None,
    validate: bool = True,
) -> torch.Tensor:
    r"""The relaxed contrastive loss of Kim et al. (CVPR 2021) as one function.

    ``L = (1/n) sum_i sum_{j != i} [w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2]`` with Gaussian
    relaxed labels w from the teacher and relative Euclidean distances d of the student.

    Large batches are computed blockwise (see ``block_size``): the same values and gradients, peak
    memory O(block * m + (n + m) * dims) instead of O(n * m).

    Args:
        student_emb: (n, d) student embeddings g (not normalised).
        teacher_emb: (n, D) teacher embeddings f.
        student_ref_emb: (m, d) reference student embeddings, or None for the batch.
        teacher_ref_emb: (m, D) reference teacher embeddings; required exactly with student_ref_emb.
        sigma: Gaussian kernel bandwidth, > 0.
        delta: margin, >= 0.
        normalize_teacher: L2-normalise teacher embeddings.
        block_size: query rows per block; None (auto): dense up to ``2**16`` pairs (n * m), else blocks of
            about ``2**20`` pairs; 0: always dense (plain autograd: forward-mode AD and vmap work there).
        validate: check every input for NaN/inf (one host synchronisation each); False checks shapes only.

    Returns:
        Scalar tensor (float32 for half-precision inputs); an empty batch gives a zero connected to the graph.
        A batch it cannot learn from (fewer than 3 reference rows; with ``validate``, all student rows equal)
        warns once per process (``DegenerateBatchWarning``): the loss is then constant, its gradient 0.

    Raises:
        TypeError, ValueError: bad shapes, dtypes, missing teacher values, non-finite student or teacher
            rows (named in the message), bad sigma/delta/block_size, a non-bool normalize_teacher or validate.

    Examples:
        >>> import torch
        >>> from pml_relaxed import functional as fn
        >>> student = torch.randn(6, 4, requires_grad=True)
        >>> teacher = torch.randn(6, 16)
        >>> loss = fn.relaxed_contrastive_loss(student, teacher)
        >>> blockwise = fn.relaxed_contrastive_loss(student, teacher, block_size=4)
        >>> bool(torch.allclose(loss, blockwise))
        True
    """
    delta = v.check_non_negative("delta", delta)
    return _relaxed_loss(
        "relaxed_contrastive_loss",
        _bw.ContrastiveRows(delta),
        student_emb,
        teacher_emb,
        student_ref_emb,
        teacher_ref_emb,
        sigma,
        normalize_teacher,
        block_size,
        validate,
    )


def relaxed_multi_similarity_loss(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    delta: float = 1.0,
    alpha: float = 1.0,
    beta: float = 2.0,
    normalize_teacher: bool = True,
    block_size: Optional[int] = None,
    validate: bool = True,
) -> torch.Tensor:
    """The relaxed multi-similarity loss as one function (see :func:`relaxed_multi_similarity_per_anchor`).

    Args and Raises: as :func:`relaxed_contrastive_loss`, plus ``alpha``, ``beta`` > 0.

    Returns:
        Scalar tensor: the mean over anchors.
    """
    delta = v.check_non_negative("delta", delta)
    alpha = v.check_positive("alpha", alpha)
    beta = v.check_positive("beta", beta)
    return _relaxed_loss(
        "relaxed_multi_similarity_loss",
        _bw.MultiSimilarityRows(delta, alpha, beta),
        student_emb,
        teacher_emb,
        student_ref_emb,
        teacher_ref_emb,
        sigma,
        normalize_teacher,
        block_size,
        validate,
    )


def self_distillation_kl_per_anchor(embeddings: torch.Tensor, aux_embeddings: torch.Tensor) -> torch.Tensor:
    r"""STML's self-distillation term per anchor (Kim et al., CVPR 2022): ``KL(p_i || q_i)`` for each row i.

    ``q_i = softmax_j(-d^f_ij)`` and ``p_i = softmax_j(-d^g_ij)``, with ``d^f`` and ``d^g`` the relative
    Euclidean distances (:func:`relative_distance`, row means over the whole batch, self included) within the
    batch of ``embeddings`` f and of ``aux_embeddings`` g; the softmax runs over every column j, i's own zero
    distance included, as in the STML code. g is detached: the term moves f towards g's neighbourhoods.
    The mean over the n rows is STML's ``KL_STML`` term.

    Args:
        embeddings: (n, d_f) embeddings f (the gradient flows into them).
        aux_embeddings: (n, d_g) embeddings g of the same n samples (no gradient).

    Returns:
        (n,) tensor; its mean is STML's self-distillation loss.

    Raises:
        TypeError, ValueError: non-2D or non-float inputs, or a row count differing between them.

    Examples:
        >>> import torch
        >>> f, g = torch.randn(6, 4, requires_grad=True), torch.randn(6, 16)
        >>> kl = self_distillation_kl_per_anchor(f, g)
        >>> kl.shape, bool((kl >= 0).all())
        (torch.Size([6]), True)
        >>> float(self_distillation_kl_per_anchor(g, g).abs().max()) < 1e-6  # equal heads: no divergence
        True
    """
    v.check_embeddings("embeddings", embeddings)
    v.check_embeddings("aux_embeddings", aux_embeddings)
    v.check_same_rows("aux_embeddings", aux_embeddings, "embeddings", embeddings)
    log_q = F.log_softmax(-_batch_relative_distance(embeddings), dim=1)
    log_p = F.log_softmax(-_batch_relative_distance(aux_embeddings.detach()), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def _batch_relative_distance(emb: torch.Tensor) -> torch.Tensor:
    """(n, n) relative Euclidean distances within one batch (zero diagonal, subgradient 0 there)."""
    return relative_distance(_bw.EuclideanDistance().matrix(emb, emb, 0))
