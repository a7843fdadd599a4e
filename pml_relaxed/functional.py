r"""Pure tensor math of embedding transfer with label relaxation (Kim et al., CVPR 2021).

No PML objects here: every function maps tensors to tensors, so it can be gradchecked, benchmarked and
used in any training loop. The classes in :mod:`pml_relaxed.losses` are thin wrappers around it.

Notation (shapes): ``n`` queries, ``m`` reference samples, ``d`` student dim, ``D`` teacher dim.

    w_ij = exp(-||f_i - f_j||^2 / sigma)                  relaxed label (teacher, no gradient)
    d_ij = ||g_i - g_j|| / ((1/m) sum_k ||g_i - g_k||)     relative distance (student)
    L    = (1/n) sum_i sum_{j != i} [ w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2 ]
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import _validation as v

__all__ = [
    "euclidean_distance",
    "squared_euclidean_distance",
    "gaussian_kernel",
    "relative_distance",
    "pair_mask",
    "relaxed_contrastive_per_anchor",
    "relaxed_multi_similarity_per_anchor",
    "relaxed_contrastive_loss",
    "relaxed_multi_similarity_loss",
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
    if self_reference:
        sq = sq.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0)
    return sq


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
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


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
    sigma = v.check_positive("sigma", sigma)
    with torch.no_grad():
        f = teacher_emb.detach()
        f_ref = None if teacher_ref_emb is None else teacher_ref_emb.detach()
        if f.dtype in (torch.float16, torch.bfloat16):
            f = f.float()
            f_ref = None if f_ref is None else f_ref.float()
        if normalize:
            f = F.normalize(f, p=2, dim=1)
            f_ref = None if f_ref is None else F.normalize(f_ref, p=2, dim=1)
        return torch.exp(-squared_euclidean_distance(f, f_ref) / sigma)


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


def pair_mask(
    num_queries: int,
    num_refs: int,
    indices_tuple: Optional[Sequence[torch.Tensor]] = None,
    self_reference: bool = True,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Boolean (n, m) mask of the pairs that contribute to the loss.

    Args:
        num_queries: n.
        num_refs: m.
        indices_tuple: None for all pairs, or PML's pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``;
            the union of the (anchor, other) pairs is used, each pair once.
        self_reference: the reference set is the batch itself; pairs (i, i) never contribute.
        device: device of the mask.

    Returns:
        (n, m) bool tensor.

    Raises:
        TypeError: if indices_tuple is not a tuple/list of 3 or 4 tensors.
    """
    if indices_tuple is None:
        mask = torch.ones(num_queries, num_refs, dtype=torch.bool, device=device)
    else:
        if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
            got = type(indices_tuple).__name__
            if isinstance(indices_tuple, (tuple, list)):
                got = f"a {got} of length {len(indices_tuple)}"
            raise TypeError(
                "indices_tuple must be PML pairs (a1, p, a2, n) or triplets (a, p, n) of index tensors; "
                f"got {got}"
            )
        if len(indices_tuple) == 3:
            a, p, n = indices_tuple
            anchors, others = (a, a), (p, n)
        else:
            a1, p, a2, n = indices_tuple
            anchors, others = (a1, a2), (p, n)
        mask = torch.zeros(num_queries, num_refs, dtype=torch.bool, device=device)
        for anchor, other in zip(anchors, others):
            if len(anchor) > 0:
                mask[anchor.to(device=device, dtype=torch.long), other.to(device=device, dtype=torch.long)] = True
    if self_reference:
        mask &= ~torch.eye(num_queries, num_refs, dtype=torch.bool, device=device)
    return mask


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
    w = relaxed_labels.to(relative_dist.dtype)
    pull = w * relative_dist.pow(2)
    push = (1 - w) * F.relu(delta - relative_dist).pow(2)
    per_pair = torch.where(mask, pull + push, torch.zeros_like(pull))
    return per_pair.sum(dim=1)


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
    d = relative_dist
    w = relaxed_labels.to(d.dtype)
    neg_inf = torch.full_like(d, float("-inf"))
    zero_col = torch.zeros(d.shape[0], 1, dtype=d.dtype, device=d.device)

    def log_one_plus_weighted_sum(weight: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
        keep = mask & (weight > 0)
        log_weight = torch.log(torch.where(keep, weight, torch.ones_like(weight)))
        terms = torch.where(keep, exponent + log_weight, neg_inf)
        return torch.logsumexp(torch.cat([zero_col, terms], dim=1), dim=1)

    pos = log_one_plus_weighted_sum(w, alpha * d) / alpha
    neg = log_one_plus_weighted_sum(1 - w, beta * (delta - d)) / beta
    return pos + neg


def _student_relative_distance(
    student_emb: torch.Tensor, student_ref_emb: Optional[torch.Tensor]
) -> torch.Tensor:
    return relative_distance(euclidean_distance(student_emb, student_ref_emb))


def relaxed_contrastive_loss(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    sigma: float = 1.0,
    delta: float = 1.0,
    normalize_teacher: bool = True,
) -> torch.Tensor:
    r"""The relaxed contrastive loss of Kim et al. (CVPR 2021) as one function.

    ``L = (1/n) sum_i sum_{j != i} [w_ij d_ij^2 + (1 - w_ij) max(0, delta - d_ij)^2]`` with Gaussian
    relaxed labels w from the teacher and relative Euclidean distances d of the student.

    Args:
        student_emb: (n, d) student embeddings g (not normalised).
        teacher_emb: (n, D) teacher embeddings f.
        student_ref_emb: (m, d) reference student embeddings, or None for the batch.
        teacher_ref_emb: (m, D) reference teacher embeddings; required exactly with student_ref_emb.
        sigma: Gaussian kernel bandwidth, > 0.
        delta: margin, >= 0.
        normalize_teacher: L2-normalise teacher embeddings.

    Returns:
        Scalar tensor.

    Raises:
        TypeError, ValueError: bad shapes, dtypes, missing or non-finite teacher values, bad sigma/delta.
    """
    v.check_teacher_pair(student_emb, student_ref_emb, teacher_emb, teacher_ref_emb)
    delta = v.check_non_negative("delta", delta)
    w = gaussian_kernel(teacher_emb, teacher_ref_emb, sigma, normalize_teacher)
    d = _student_relative_distance(student_emb, student_ref_emb)
    mask = pair_mask(d.shape[0], d.shape[1], None, student_ref_emb is None, d.device)
    return relaxed_contrastive_per_anchor(d, w, mask, delta).mean()


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
) -> torch.Tensor:
    """The relaxed multi-similarity loss as one function (see :func:`relaxed_multi_similarity_per_anchor`).

    Args and Raises: as :func:`relaxed_contrastive_loss`, plus ``alpha``, ``beta`` > 0.

    Returns:
        Scalar tensor: the mean over anchors.
    """
    v.check_teacher_pair(student_emb, student_ref_emb, teacher_emb, teacher_ref_emb)
    delta = v.check_non_negative("delta", delta)
    alpha = v.check_positive("alpha", alpha)
    beta = v.check_positive("beta", beta)
    w = gaussian_kernel(teacher_emb, teacher_ref_emb, sigma, normalize_teacher)
    d = _student_relative_distance(student_emb, student_ref_emb)
    mask = pair_mask(d.shape[0], d.shape[1], None, student_ref_emb is None, d.device)
    return relaxed_multi_similarity_per_anchor(d, w, mask, delta, alpha, beta).mean()
