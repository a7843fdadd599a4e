r"""Pure tensor math of the embedding-transfer baselines compared in Kim et al. (CVPR 2021).

Each ``*_per_anchor`` function maps (student, teacher) embeddings to one loss per query row; the
mean over rows is the loss. The teacher gets no gradient and is cast to the student's dtype.
``*_ref_emb`` = None means the batch itself is the reference set, and then pairs (i, i) are excluded.
Shapes: ``n`` queries, ``m`` references, ``d`` student dim, ``D`` teacher dim.

    RKD       (Park et al., CVPR 2019)        Huber of mean-normalised distances and of triplet angles
    PKT       (Passalis & Tefas, ECCV 2018)   KL(teacher || student) of cosine-kernel conditionals
    DarkRank  (Chen et al., AAAI 2018)        ListMLE of the teacher's ranking under the student
    FitNet    (Romero et al., ICLR 2015)      MSE of a linear regressor of the student vs the teacher
    Hinton KD (Hinton et al., 2015)           T^2 KL(teacher || student) of temperature-softened class logits
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import _validation as v
from ._pairs import pair_mask, self_pair_mask
from .functional import euclidean_distance, squared_euclidean_distance

__all__ = [
    "rkd_distance_per_anchor",
    "rkd_angle_per_anchor",
    "rkd_per_anchor",
    "pkt_per_anchor",
    "dark_rank_per_anchor",
    "fitnet_per_sample",
    "hinton_kd_per_sample",
]


def _prepare(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor],
    teacher_ref_emb: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resolves the reference set, detaches the teacher and builds the (n, m) mask of valid pairs."""
    self_reference = student_ref_emb is None
    teacher = teacher_emb.detach().to(student_emb.dtype)
    student_ref = student_emb if self_reference else student_ref_emb
    teacher_ref = teacher if self_reference else teacher_ref_emb.detach().to(student_emb.dtype)
    mask = pair_mask(student_emb.shape[0], student_ref.shape[0], None, self_reference, student_emb.device)
    return student_ref, teacher, teacher_ref, mask


def _ones_where_zero(values: torch.Tensor) -> torch.Tensor:
    """``values`` with its non-positive entries replaced by 1: a safe divisor / sqrt / pow base."""
    return torch.where(values > 0, values, torch.ones_like(values))


def _masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the True entries of each row (all trailing dims), 0 for a row with none."""
    flat_values = torch.where(mask, values, torch.zeros_like(values)).flatten(1)
    counts = mask.flatten(1).sum(1).clamp_min(1)
    return flat_values.sum(1) / counts.to(values.dtype)


def _global_mean_normalised(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``dist / mu`` with ``mu`` the mean of dist over the masked pairs; zeros when mu is 0."""
    count = mask.sum().clamp_min(1).to(dist.dtype)
    mu = torch.where(mask, dist, torch.zeros_like(dist)).sum() / count
    return dist / mu.clamp_min(torch.finfo(dist.dtype).tiny)


def _unit_differences(queries: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """(n, m, dim) unit vectors ``(r_k - q_i) / ||r_k - q_i||``; exactly 0 (finite gradient) where r_k = q_i."""
    diff = refs.unsqueeze(0) - queries.unsqueeze(1)
    return diff / torch.sqrt(_ones_where_zero(diff.pow(2).sum(-1, keepdim=True)))


def rkd_distance_per_anchor(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""RKD distance-wise loss per anchor (Park et al., CVPR 2019, Eq. 3-4).

    ``psi_D(i, k) = ||x_i - x_k|| / mu`` with ``mu`` the mean distance over all valid pairs (i != k);
    ``loss_i = mean_{k != i} huber(psi_D^t(i, k) - psi_D^s(i, k))``, ``huber`` = smooth L1 with threshold 1.

    Args:
        student_emb: (n, d). teacher_emb: (n, D). student_ref_emb: (m, d) or None. teacher_ref_emb: (m, D) or None.

    Returns:
        (n,) tensor; 0 for an anchor without partner (batch of one).
    """
    student_ref, teacher, teacher_ref, mask = _prepare(student_emb, teacher_emb, student_ref_emb, teacher_ref_emb)
    student_rel = _global_mean_normalised(euclidean_distance(student_emb, student_ref_emb), mask)
    with torch.no_grad():
        teacher_rel = _global_mean_normalised(euclidean_distance(teacher, teacher_ref), mask)
    return _masked_row_mean(F.smooth_l1_loss(student_rel, teacher_rel, reduction="none", beta=1.0), mask)


def rkd_angle_per_anchor(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""RKD angle-wise loss per vertex (Park et al., CVPR 2019, Eq. 5-6).

    ``psi_A(j, k, i) = <e_ij, e_ik>`` with ``e_ij = (x_j - x_i) / ||x_j - x_i||``: the cosine of the
    angle at vertex i. ``loss_i = mean over j != k (both != i) of huber(psi_A^t - psi_A^s)``.
    Memory: O(n m max(m, d)).

    Returns:
        (n,) tensor; 0 for a vertex with fewer than two partners (n < 3).
    """
    student_ref, teacher, teacher_ref, mask = _prepare(student_emb, teacher_emb, student_ref_emb, teacher_ref_emb)
    distinct = ~self_pair_mask(student_ref.shape[0], student_ref.shape[0], device=mask.device)
    triplet_mask = mask.unsqueeze(2) & mask.unsqueeze(1) & distinct.unsqueeze(0)
    student_unit = _unit_differences(student_emb, student_ref)
    student_cos = student_unit @ student_unit.transpose(1, 2)
    with torch.no_grad():
        teacher_unit = _unit_differences(teacher, teacher_ref)
        teacher_cos = teacher_unit @ teacher_unit.transpose(1, 2)
    return _masked_row_mean(F.smooth_l1_loss(student_cos, teacher_cos, reduction="none", beta=1.0), triplet_mask)


def rkd_per_anchor(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    distance_weight: float = 1.0,
    angle_weight: float = 2.0,
) -> torch.Tensor:
    """``distance_weight * rkd_distance_per_anchor + angle_weight * rkd_angle_per_anchor`` (a 0 weight skips its term).

    Raises:
        ValueError: a negative weight, or both weights 0.
    """
    distance_weight = v.check_non_negative("distance_weight", distance_weight)
    angle_weight = v.check_non_negative("angle_weight", angle_weight)
    if distance_weight == 0 and angle_weight == 0:
        raise ValueError("distance_weight and angle_weight are both 0, so the RKD loss would be 0; got 0 and 0")
    args = (student_emb, teacher_emb, student_ref_emb, teacher_ref_emb)
    total = student_emb.sum(1) * 0
    if distance_weight > 0:
        total = total + distance_weight * rkd_distance_per_anchor(*args)
    if angle_weight > 0:
        total = total + angle_weight * rkd_angle_per_anchor(*args)
    return total


def _cosine_conditionals(emb: torch.Tensor, ref_emb: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """``p_{k|i} = K_ik / sum_l K_il`` over masked pairs (0 if the sum is 0), K = (cos + 1) / 2 of eps-normalised x."""
    emb_unit = emb / (torch.linalg.vector_norm(emb, dim=1, keepdim=True) + eps)
    ref_unit = ref_emb / (torch.linalg.vector_norm(ref_emb, dim=1, keepdim=True) + eps)
    kernel = ((emb_unit @ ref_unit.t() + 1) / 2).clamp_min(0)
    kernel = torch.where(mask, kernel, torch.zeros_like(kernel))
    return kernel / _ones_where_zero(kernel.sum(1, keepdim=True))


def pkt_per_anchor(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    r"""PKT per anchor (Passalis & Tefas, ECCV 2018, Eq. 5-10 with the cosine kernel).

    ``x -> x / (||x|| + eps)``, ``K_ik = (cos(x_i, x_k) + 1) / 2``, ``p_{k|i} = K_ik / sum_{l != i} K_il``,
    ``loss_i = sum_{k != i} p^t_{k|i} log((p^t_{k|i} + eps) / (p^s_{k|i} + eps))`` (KL(teacher || student)).

    Returns:
        (n,) tensor, >= 0 up to the eps terms; 0 for a batch of one.

    Raises:
        ValueError: eps <= 0.
    """
    eps = v.check_positive("eps", eps)
    student_ref, teacher, teacher_ref, mask = _prepare(student_emb, teacher_emb, student_ref_emb, teacher_ref_emb)
    student_prob = _cosine_conditionals(student_emb, student_ref, mask, eps)
    with torch.no_grad():
        teacher_prob = _cosine_conditionals(teacher, teacher_ref, mask, eps)
    kl = teacher_prob * (torch.log(teacher_prob + eps) - torch.log(student_prob + eps))
    return torch.where(mask, kl, torch.zeros_like(kl)).sum(1)


def _powered_distance(emb: torch.Tensor, ref_emb: Optional[torch.Tensor], beta: float) -> torch.Tensor:
    """``||x_i - r_k||^beta`` computed as ``sq^(beta/2)``, with gradient 0 at distance 0."""
    sq = squared_euclidean_distance(emb, ref_emb)
    return torch.where(sq > 0, _ones_where_zero(sq).pow(beta / 2), torch.zeros_like(sq))


def dark_rank_per_anchor(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    student_ref_emb: Optional[torch.Tensor] = None,
    teacher_ref_emb: Optional[torch.Tensor] = None,
    alpha: float = 3.0,
    beta: float = 3.0,
    list_length: Optional[int] = None,
) -> torch.Tensor:
    r"""DarkRank "hard rank" loss per anchor (Chen et al., AAAI 2018, Eq. 3-6): ListMLE of the teacher's ranking.

    Scores ``S_ik = -alpha ||x_i - x_k||^beta``. The teacher ranks anchor i's partners by descending
    score (ascending distance; ties keep index order): ``pi_1, ..., pi_L``. The loss is the negative
    log-likelihood of that permutation under the student's Plackett-Luce model::

        loss_i = -sum_{l=1..L} [ S^s_{i,pi_l} - log sum_{q=l..L} exp(S^s_{i,pi_q}) ]

    ``L`` = all partners (m - 1 for the batch, m for a reference set), or the teacher's top
    ``list_length`` partners, the normalisers then running over that truncated list only.

    Returns:
        (n,) tensor, >= 0; 0 for a batch of one.

    Raises:
        ValueError: alpha or beta <= 0, list_length < 1.
    """
    alpha = v.check_positive("alpha", alpha)
    beta = v.check_positive("beta", beta)
    list_length = v.check_optional_positive_int("list_length", list_length)
    student_ref, teacher, teacher_ref, mask = _prepare(student_emb, teacher_emb, student_ref_emb, teacher_ref_emb)
    num_partners = min(max(mask.shape[1] - int(student_ref_emb is None), 0), list_length or mask.shape[1])
    with torch.no_grad():
        teacher_sq = squared_euclidean_distance(teacher, teacher_ref).masked_fill(~mask, float("inf"))
        order = torch.sort(teacher_sq, dim=1, stable=True).indices[:, :num_partners]
    student_score = -alpha * _powered_distance(student_emb, student_ref_emb, beta)
    ordered = student_score.gather(1, order)
    log_normalisers = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)
    return (log_normalisers - ordered).sum(1)


def fitnet_per_sample(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, regressor_weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    r"""FitNet hint loss per sample (Romero et al., ICLR 2015, Eq. 3, on final embeddings, as an MSE).

    ``loss_i = (1/D) ||W g_i - f_i||^2`` with ``W`` the (D, d) regressor weight (identity when None).

    Returns:
        (n,) tensor; its mean is ``F.mse_loss(g W^T, f)``.

    Raises:
        ValueError: the projected student dimension differs from the teacher's.
    """
    projected = student_emb if regressor_weight is None else student_emb @ regressor_weight.to(student_emb).t()
    if projected.shape[1] != teacher_emb.shape[1]:
        raise ValueError(
            f"the (projected) student embeddings have dimension {projected.shape[1]} but teacher_emb has "
            f"{teacher_emb.shape[1]}: pass a regressor_weight of shape ({teacher_emb.shape[1]}, {student_emb.shape[1]})"
        )
    return (projected - teacher_emb.detach().to(student_emb.dtype)).pow(2).mean(1)


def hinton_kd_per_sample(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    r"""Hinton et al.'s soft-target term per sample: ``T^2 KL(softmax(z^t_i / T) || softmax(z^s_i / T))``.

    Args:
        student_logits: (n, C) student logits z^s.
        teacher_logits: (n, C) teacher logits z^t (no gradient; cast to the student's dtype).
        temperature: T > 0.

    Returns:
        (n,) tensor; its mean is ``F.kl_div(log_softmax(z^s / T), softmax(z^t / T), reduction="batchmean") * T^2``.

    Examples:
        >>> import torch
        >>> z = torch.randn(4, 10)
        >>> float(hinton_kd_per_sample(z, z).abs().max()) < 1e-6  # equal logits: no divergence
        True
    """
    t = float(temperature)
    log_q = F.log_softmax(student_logits / t, dim=1)
    log_p = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / t, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1) * (t * t)
