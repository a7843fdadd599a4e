"""An explicit-loop ContextualSimilarity (STML), straight from the set definitions, in float64."""

import math


def loop_contextual_similarity(
    teacher,
    k,
    sigma=1.0,
    query_expansion_k=None,
    contextual_weight=0.5,
    normalize=True,
    view_labels=None,
    center=False,
):
    """w_ij = (1 - c) exp(-d_ij / sigma) + c (w^_ij + w^_ji) / 2 with python sets; ties by smaller index."""
    rows = [[float(x) for x in row] for row in teacher.double()]
    n = len(rows)
    if center:  # subtract the mean of each column
        means = [sum(row[c] for row in rows) / n for c in range(len(rows[0]))]
        rows = [[x - m for x, m in zip(row, means)] for row in rows]
    if normalize:
        rows = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in rows]
    d = [[sum((a - b) ** 2 for a, b in zip(rows[i], rows[j])) for j in range(n)] for i in range(n)]

    def rank_key(i, j):
        if j == i:
            group = 0
        elif view_labels is not None and int(view_labels[i]) == int(view_labels[j]):
            group = 1
        else:
            group = 2
        return (group, d[i][j], j)

    ranking = [sorted(range(n), key=lambda j, i=i: rank_key(i, j)) for i in range(n)]
    kk = min(k, n)
    kq = min(query_expansion_k if query_expansion_k is not None else math.ceil(k / 2), n)
    nearest = [set(ranking[i][:kk]) for i in range(n)]
    reciprocal = [{j for j in nearest[i] if i in nearest[j]} for i in range(n)]
    tilde = [
        [len(reciprocal[i] & reciprocal[j]) / len(reciprocal[i]) if j in reciprocal[i] else 0.0 for j in range(n)]
        for i in range(n)
    ]
    hat = [[sum(tilde[q][j] for q in ranking[i][:kq]) / kq for j in range(n)] for i in range(n)]
    return [
        [
            (1 - contextual_weight) * math.exp(-d[i][j] / sigma) + contextual_weight * (hat[i][j] + hat[j][i]) / 2
            for j in range(n)
        ]
        for i in range(n)
    ]
