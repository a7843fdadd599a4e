"""Slow explicit-loop implementations of the relaxed losses, straight from the formulas (float64)."""

import math

import torch


def _dist(a, b, same):
    if same:
        return torch.zeros((), dtype=a.dtype)
    return torch.sqrt(((a - b) ** 2).sum())


def _relaxed_terms(student, teacher, sigma, normalize, ref_student, ref_teacher):
    self_ref = ref_student is None
    if self_ref:
        ref_student, ref_teacher = student, teacher
    if normalize:
        teacher = teacher / teacher.norm(dim=1, keepdim=True)
        ref_teacher = ref_teacher / ref_teacher.norm(dim=1, keepdim=True)
    n, m = student.shape[0], ref_student.shape[0]
    rows = []
    for i in range(n):
        dists = [_dist(student[i], ref_student[k], self_ref and k == i) for k in range(m)]
        mean = sum(dists) / m
        row = []
        for j in range(m):
            w = math.exp(-float(((teacher[i] - ref_teacher[j]) ** 2).sum()) / sigma)
            d = dists[j] / mean if float(mean.detach()) > 0 else dists[j] * 0
            row.append((w, d))
        rows.append(row)
    return rows, self_ref


def loop_relaxed_contrastive(
    student, teacher, sigma=1.0, delta=1.0, normalize=True, ref_student=None, ref_teacher=None, pairs=None, weights=None
):
    rows, self_ref = _relaxed_terms(student, teacher, sigma, normalize, ref_student, ref_teacher)
    total = torch.zeros((), dtype=student.dtype)
    for i, row in enumerate(rows):
        for j, (w, d) in enumerate(row):
            if self_ref and i == j:
                continue
            if pairs is not None and (i, j) not in pairs:
                continue
            if weights is not None:
                w = float(weights[i][j])
            total = total + w * d**2 + (1 - w) * torch.clamp(delta - d, min=0) ** 2
    return total / student.shape[0]


def loop_relaxed_multi_similarity(
    student,
    teacher,
    sigma=1.0,
    delta=1.0,
    alpha=1.0,
    beta=2.0,
    normalize=True,
    ref_student=None,
    ref_teacher=None,
    pairs=None,
):
    rows, self_ref = _relaxed_terms(student, teacher, sigma, normalize, ref_student, ref_teacher)
    total = torch.zeros((), dtype=student.dtype)
    for i, row in enumerate(rows):
        pos_sum = torch.zeros((), dtype=student.dtype)
        neg_sum = torch.zeros((), dtype=student.dtype)
        for j, (w, d) in enumerate(row):
            if self_ref and i == j:
                continue
            if pairs is not None and (i, j) not in pairs:
                continue
            pos_sum = pos_sum + w * torch.exp(alpha * d)
            neg_sum = neg_sum + (1 - w) * torch.exp(beta * (delta - d))
        total = total + torch.log(1 + pos_sum) / alpha + torch.log(1 + neg_sum) / beta
    return total / student.shape[0]


def loop_stml(f, g, teacher_g, weights, delta=1.0, kl_weight=1.0):
    """STML's objective (CVPR 2022, ``code/loss.py``) from its formula: ``(RC(f) + RC(g)) / 2 + kl_weight KL(f, g)``
    with ``RC(x) = 1 / (n (n - 1)) sum_{i != j} [w d^2 + (1 - w) max(0, delta - d)^2]`` on the given relaxed
    labels ``weights[i][j]``, ``d`` row-mean-normalised distances, and
    ``KL = (1/n) sum_i sum_j p_ij log(p_ij / q_ij)``, ``p_i = softmax_j(-d^g_ij)`` (g detached),
    ``q_i = softmax_j(-d^f_ij)``. ``g=None``: ``RC(f)`` alone."""
    n = f.shape[0]

    def relative(x):
        rows = []
        for i in range(n):
            dists = [_dist(x[i], x[k], k == i) for k in range(n)]
            mean = sum(dists) / n
            rows.append([dist / mean for dist in dists])
        return rows

    def rc(x):
        d = relative(x)
        total = torch.zeros((), dtype=x.dtype)
        for i in range(n):
            for j in range(n):
                if i != j:
                    w = float(weights[i][j])
                    total = total + w * d[i][j] ** 2 + (1 - w) * torch.clamp(delta - d[i][j], min=0) ** 2
        return total / (n * (n - 1))

    if g is None:
        return rc(f)
    df, dg = relative(f), relative(g.detach())
    kl = torch.zeros((), dtype=f.dtype)
    for i in range(n):
        log_zq = torch.log(sum(torch.exp(-df[i][k]) for k in range(n)))
        log_zp = torch.log(sum(torch.exp(-dg[i][k]) for k in range(n)))
        for j in range(n):
            log_p, log_q = -dg[i][j] - log_zp, -df[i][j] - log_zq
            kl = kl + torch.exp(log_p) * (log_p - log_q)
    return (rc(f) + rc(g)) / 2 + kl_weight * kl / n
