import math

import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, MultiSimilarityLoss

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import LabelSimilarity


def brute_force(teacher, ref_teacher, pos_topk, pos_threshold, neg_threshold, sigma=1.0):
    """Enumerates every pair with plain Python loops."""
    self_ref = ref_teacher is None
    ref_teacher = teacher if self_ref else ref_teacher
    f = [t / t.norm() for t in teacher]
    g = [t / t.norm() for t in ref_teacher]
    pos, neg = set(), set()
    for i in range(len(f)):
        sims = {
            j: math.exp(-float(((f[i] - g[j]) ** 2).sum()) / sigma) for j in range(len(g)) if not (self_ref and i == j)
        }
        ranked = sorted(sims, key=lambda j: -sims[j])
        for j, w in sims.items():
            is_pos = True
            if pos_topk is not None:
                is_pos &= j in ranked[:pos_topk]
            if pos_threshold is not None:
                is_pos &= w >= pos_threshold
            if is_pos:
                pos.add((i, j))
            elif neg_threshold is None or w <= neg_threshold:
                neg.add((i, j))
    return pos, neg


def as_sets(out):
    a1, p, a2, n = out
    return {(int(a), int(b)) for a, b in zip(a1, p)}, {(int(a), int(b)) for a, b in zip(a2, n)}


@pytest.mark.parametrize("n", [2, 7, 30])
@pytest.mark.parametrize(
    "pos_topk,pos_threshold,neg_threshold",
    [
        (1, None, None),
        (3, None, None),
        (None, 0.5, None),
        (4, 0.3, None),
        (2, None, 0.2),
        (None, 0.6, 0.4),
        (50, None, None),
    ],
)
def test_matches_brute_force(n, pos_topk, pos_threshold, neg_threshold):
    teacher = torch.randn(n, 5, dtype=torch.float64)
    miner = TeacherSimilarityMiner(pos_topk=pos_topk, pos_threshold=pos_threshold, neg_threshold=neg_threshold)
    out = miner(torch.randn(n, 3), teacher_emb=teacher)
    assert all(t.dtype == torch.long for t in out)
    pos, neg = as_sets(out)
    expected_pos, expected_neg = brute_force(teacher, None, pos_topk, pos_threshold, neg_threshold)
    assert pos == expected_pos and neg == expected_neg
    assert not any(a == b for a, b in pos | neg), "self pairs"
    assert not pos & neg


def test_reference_set_matches_brute_force():
    teacher, ref_teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    miner = TeacherSimilarityMiner(pos_topk=2, neg_threshold=0.3, sigma=0.5)
    out = miner(torch.randn(5, 3), ref_emb=torch.randn(9, 3), teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    assert as_sets(out) == brute_force(teacher, ref_teacher, 2, None, 0.3, sigma=0.5)


def test_stats_and_labels_optional():
    miner = TeacherSimilarityMiner(pos_topk=2)
    out = miner(torch.randn(6, 3), None, teacher_emb=torch.randn(6, 4))
    assert miner.num_pos_pairs == 12 and miner.num_neg_pairs == 6 * 5 - 12
    out_with_labels = miner(torch.randn(6, 3), torch.arange(6), teacher_emb=torch.randn(6, 4))
    assert len(out_with_labels) == 4 and len(out) == 4


def test_label_similarity_recovers_label_pairs():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    miner = TeacherSimilarityMiner(pos_topk=None, pos_threshold=1.0, similarity=LabelSimilarity())
    pos, neg = as_sets(miner(torch.randn(6, 2), labels, teacher_emb=torch.randn(6, 3)))
    same = {(i, j) for i in range(6) for j in range(6) if i != j and labels[i] == labels[j]}
    assert pos == same and neg == {(i, j) for i in range(6) for j in range(6) if i != j} - same


def test_feeds_pml_pair_losses_and_relaxed_loss():
    student = torch.randn(12, 4, requires_grad=True)
    teacher = torch.randn(12, 8)
    pairs = TeacherSimilarityMiner(pos_topk=2)(student, teacher_emb=teacher)
    for loss_fn in (ContrastiveLoss(), MultiSimilarityLoss()):
        loss = loss_fn(student, None, pairs)
        assert torch.isfinite(loss) and loss.requires_grad
    restricted = RelaxedContrastiveLoss()(student, indices_tuple=pairs, teacher_emb=teacher)
    assert torch.isfinite(restricted)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            dict(pos_topk=None, pos_threshold=None),
            ValueError,
            "needs a positive rule: set pos_topk and/or pos_threshold",
        ),
        (dict(pos_topk=0), ValueError, r"pos_topk must be >= 1; got 0"),
        (dict(pos_topk=1.5), TypeError, r"pos_topk must be an int >= 1 or None; got float"),
        (dict(pos_threshold=1.2), ValueError, r"pos_threshold must be in \[0, 1\]; got 1.2"),
        (dict(neg_threshold=-0.1), ValueError, r"neg_threshold must be in \[0, 1\]; got -0.1"),
        (dict(sigma=0), ValueError, r"sigma must be > 0; got 0"),
        (dict(similarity=object()), TypeError, r"similarity must be a pml_relaxed similarity"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        TeacherSimilarityMiner(**kwargs)


def test_bad_inputs():
    miner = TeacherSimilarityMiner()
    with pytest.raises(ValueError, match="teacher_emb is required"):
        miner(torch.randn(4, 2))
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings: expected 4 rows, got 3"):
        miner(torch.randn(4, 2), teacher_emb=torch.randn(3, 2))
    with pytest.raises(ValueError, match="teacher_emb must be finite"):
        miner(torch.randn(2, 2), teacher_emb=torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))


@pytest.mark.parametrize("pos_topk,pos_threshold,neg_threshold", [(3, None, None), (None, 0.5, 0.3), (20, None, None)])
def test_query_offset_gives_the_rows_of_the_full_batch(pos_topk, pos_threshold, neg_threshold):
    """Queries = rows [offset, offset + n) of the reference set: the rows of mining the whole set."""
    teacher = torch.randn(11, 5, dtype=torch.float64)
    miner = TeacherSimilarityMiner(pos_topk=pos_topk, pos_threshold=pos_threshold, neg_threshold=neg_threshold)
    full_pos, full_neg = as_sets(miner(torch.randn(11, 3), teacher_emb=teacher))
    offset, n = 4, 5
    out = miner(
        torch.randn(n, 3),
        ref_emb=torch.randn(11, 3),
        teacher_emb=teacher[offset : offset + n],
        teacher_ref_emb=teacher,
        query_offset=offset,
    )
    pos, neg = as_sets(out)
    assert pos == {(a - offset, b) for a, b in full_pos if offset <= a < offset + n}
    assert neg == {(a - offset, b) for a, b in full_neg if offset <= a < offset + n}


def test_query_offset_errors():
    miner = TeacherSimilarityMiner(pos_topk=2)
    emb, teacher = torch.randn(3, 2), torch.randn(3, 4)
    ref, teacher_ref = torch.randn(5, 2), torch.randn(5, 4)
    with pytest.raises(ValueError, match="query_offset says where the queries sit in ref_emb, so it needs ref_emb"):
        miner(emb, teacher_emb=teacher, query_offset=0)
    with pytest.raises(TypeError, match="query_offset must be an int or None; got float"):
        miner(emb, ref_emb=ref, teacher_emb=teacher, teacher_ref_emb=teacher_ref, query_offset=1.0)
    with pytest.raises(ValueError, match=r"query_offset \+ 3 \(queries\) <= 5 \(rows of ref_emb\); got query_offset=3"):
        miner(emb, ref_emb=ref, teacher_emb=teacher, teacher_ref_emb=teacher_ref, query_offset=3)
