"""DarkRankLoss against a slow loop of Chen et al. (AAAI 2018), hard rank (ListMLE), plus PML's triplet loss."""

import math

import pytest
import torch
from pytorch_metric_learning import distances, reducers
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import TripletMarginMiner

from pml_relaxed import functional_baselines as fb
from pml_relaxed.losses.dark_rank_loss import DarkRankLoss

f64 = torch.float64
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _inputs(n, d_student, d_teacher, seed=0, dtype=f64, scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    student = (scale * torch.randn(n, d_student, dtype=dtype, generator=gen)).requires_grad_()
    teacher = scale * torch.randn(n, d_teacher, dtype=dtype, generator=gen)
    return student, teacher


def loop_dark_rank(student, teacher, alpha=3.0, beta=3.0, list_length=None, ref_student=None, ref_teacher=None):
    self_ref = ref_student is None
    if self_ref:
        ref_student, ref_teacher = student, teacher
    n, m = student.shape[0], ref_student.shape[0]
    total = torch.zeros((), dtype=student.dtype)
    for i in range(n):
        partners = [j for j in range(m) if not (self_ref and i == j)]
        teacher_score = {
            j: -alpha * math.sqrt(float(((teacher[i] - ref_teacher[j]) ** 2).sum())) ** beta for j in partners
        }
        ranking = sorted(partners, key=lambda j: (-teacher_score[j], j))[:list_length]
        scores = [-alpha * torch.sqrt(((student[i] - ref_student[j]) ** 2).sum()) ** beta for j in ranking]
        for position in range(len(scores)):
            log_normaliser = torch.log(sum(torch.exp(s) for s in scores[position:]))
            total = total - (scores[position] - log_normaliser)
    return total / n


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("dims", [(3, 8), (8, 2)])
@pytest.mark.parametrize("alpha,beta,list_length", [(3.0, 3.0, None), (1.0, 2.0, None), (0.5, 1.0, 2), (2.0, 0.5, 4)])
def test_rank_term_matches_loop_values_and_gradients(n, dims, alpha, beta, list_length):
    student, teacher = _inputs(n, *dims, seed=n)
    loss_fn = DarkRankLoss(alpha=alpha, beta=beta, list_length=list_length)
    loss = loss_fn(student, teacher_emb=teacher)  # no labels: the triplet term is skipped
    (grad,) = torch.autograd.grad(loss, student)
    expected = loop_dark_rank(student, teacher, alpha, beta, list_length)
    (expected_grad,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-10)


def test_triplet_term_is_pml_triplet_margin_loss_with_weights():
    student, teacher = _inputs(8, 4, 6, seed=1, scale=0.3)
    loss_fn = DarkRankLoss(rank_weight=0.5, triplet_weight=2.0, triplet_margin=0.3)
    loss = loss_fn(student, LABELS, teacher_emb=teacher)
    triplet = TripletMarginLoss(margin=0.3)(student, LABELS)
    assert triplet.item() > 0
    torch.testing.assert_close(loss, 0.5 * loop_dark_rank(student, teacher) + 2.0 * triplet)
    rank_only = DarkRankLoss(triplet_weight=0.0)(student, LABELS, teacher_emb=teacher)
    torch.testing.assert_close(rank_only, loop_dark_rank(student, teacher))
    triplet_only = DarkRankLoss(rank_weight=0.0, triplet_margin=0.3)(student, LABELS, teacher_emb=teacher)
    torch.testing.assert_close(triplet_only, triplet)


def test_triplet_term_uses_indices_tuple_and_distance():
    student, teacher = _inputs(8, 4, 6, seed=2)
    triplets = TripletMarginMiner(margin=0.5)(student.detach(), LABELS)
    distance = distances.LpDistance(normalize_embeddings=False)
    loss = DarkRankLoss(triplet_margin=0.5, distance=distance)(student, None, triplets, teacher_emb=teacher)
    triplet = TripletMarginLoss(margin=0.5, distance=distance)(student, None, triplets)
    torch.testing.assert_close(loss, loop_dark_rank(student, teacher) + triplet)


def test_reference_set_matches_loop():
    student, teacher = _inputs(4, 3, 5, seed=3)
    ref_student, ref_teacher = _inputs(7, 3, 5, seed=4)
    loss = DarkRankLoss(list_length=5)(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = loop_dark_rank(student, teacher, list_length=5, ref_student=ref_student, ref_teacher=ref_teacher)
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (student, ref_student))
    expected_grads = torch.autograd.grad(expected, (student, ref_student))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)
    ref_labels = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    with_triplets = DarkRankLoss(list_length=5)(
        student, LABELS[:4], None, ref_student, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher
    )
    triplet = TripletMarginLoss()(student, LABELS[:4], None, ref_student, ref_labels)
    torch.testing.assert_close(with_triplets, expected + triplet)


def test_functional_equals_class_and_perfect_student_has_lower_loss():
    student, teacher = _inputs(7, 4, 6)
    per_anchor = fb.dark_rank_per_anchor(student, teacher, alpha=2.0, beta=2.0, list_length=3)
    torch.testing.assert_close(
        per_anchor.mean(), DarkRankLoss(alpha=2.0, beta=2.0, list_length=3)(student, teacher_emb=teacher)
    )
    loss_fn = DarkRankLoss(alpha=1.0, beta=1.0)
    assert loss_fn(teacher, teacher_emb=teacher) < loss_fn(student, teacher_emb=teacher)


def test_gradcheck():
    student, teacher = _inputs(5, 3, 4, seed=5)
    loss_fn = DarkRankLoss(triplet_margin=0.2)
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, labels, teacher_emb=teacher), (student,))


def test_permutation_invariance():
    student, teacher = _inputs(8, 5, 7, seed=6)
    perm = torch.randperm(8)
    loss_fn = DarkRankLoss(list_length=4)
    torch.testing.assert_close(
        loss_fn(student[perm], LABELS[perm], teacher_emb=teacher[perm]), loss_fn(student, LABELS, teacher_emb=teacher)
    )


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("beta", [3.0, 1.0, 0.5])
@pytest.mark.parametrize("case", ["duplicated", "collapsed"])
def test_duplicated_and_collapsed_rows_give_finite_gradients(case, beta, dtype):
    student, teacher = _inputs(6, 4, 5, seed=7, dtype=dtype)
    base = student.detach().clone()
    if case == "duplicated":
        base[1] = base[0]
        base[4] = base[0]
    else:
        base[:] = base[0]
    student = base.requires_grad_()
    loss = DarkRankLoss(beta=beta)(student, LABELS[:6], teacher_emb=teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_batch_of_one_gives_zero():
    student, teacher = _inputs(1, 4, 5)
    loss = DarkRankLoss()(student, torch.tensor([0]), teacher_emb=teacher)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(student.grad, torch.zeros_like(student))


def test_float32_matches_float64_and_keeps_dtype():
    student, teacher = _inputs(10, 6, 9, seed=8)
    loss64 = DarkRankLoss()(student, teacher_emb=teacher)
    loss32 = DarkRankLoss()(student.detach().float(), teacher_emb=teacher.float())
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), loss64.detach(), rtol=1e-4, atol=1e-5)


def test_default_reducers_and_single_reducer_argument():
    loss_fn = DarkRankLoss()
    assert isinstance(loss_fn.reducer, reducers.MultipleReducers)
    assert isinstance(loss_fn.reducer.reducers["rank_loss"], reducers.MeanReducer)
    assert isinstance(loss_fn.reducer.reducers["triplet_loss"], reducers.AvgNonZeroReducer)
    student, teacher = _inputs(8, 4, 6, seed=9)
    summed = DarkRankLoss(reducer=reducers.SumReducer(), triplet_weight=0.0)(student, LABELS, teacher_emb=teacher)
    torch.testing.assert_close(summed, 8 * loop_dark_rank(student, teacher))


def test_bad_inputs_raise():
    student, teacher = _inputs(4, 3, 5)
    loss_fn = DarkRankLoss()
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(student, LABELS[:4])
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings"):
        loss_fn(student, LABELS[:4], teacher_emb=teacher[:3])
    with pytest.raises(ValueError, match="labels must be a 1D tensor with one label per row"):
        loss_fn(student, LABELS, teacher_emb=teacher)
    with pytest.raises(ValueError, match="pass ref_labels"):
        loss_fn(student, LABELS[:4], ref_emb=student.detach(), teacher_emb=teacher, teacher_ref_emb=teacher)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"beta": -3.0}, "beta must be > 0"),
        ({"list_length": 0}, "list_length must be >= 1"),
        ({"triplet_weight": -1.0}, "triplet_weight must be >= 0"),
        ({"rank_weight": 0.0, "triplet_weight": 0.0}, "both 0"),
        ({"triplet_margin": -0.1}, "triplet_margin must be >= 0"),
        ({"distance": distances.CosineSimilarity()}, "needs a distance"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DarkRankLoss(**kwargs)


@pytest.mark.parametrize("with_reference", [False, True])
def test_normalize_embeddings_equals_loop_on_unit_vectors(with_reference):
    student, teacher = _inputs(6, 4, 7, seed=5, scale=3.0)
    ref_student, ref_teacher = _inputs(5, 4, 7, seed=6, scale=3.0) if with_reference else (None, None)
    loss_fn = DarkRankLoss(normalize_embeddings=True)
    if with_reference:
        loss = loss_fn(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    else:
        loss = loss_fn(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    unit = torch.nn.functional.normalize
    expected = loop_dark_rank(
        unit(student, dim=1),
        unit(teacher, dim=1),
        ref_student=None if ref_student is None else unit(ref_student, dim=1),
        ref_teacher=None if ref_teacher is None else unit(ref_teacher, dim=1),
    )
    (expected_grad,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-10)
    raw = DarkRankLoss()(student, teacher_emb=teacher) if not with_reference else None
    if raw is not None:  # scale 3 makes raw scores much larger: the option changes the loss
        assert not torch.isclose(raw, loss)


def test_normalize_embeddings_gradcheck_and_type():
    student, teacher = _inputs(5, 3, 4, seed=7)
    loss_fn = DarkRankLoss(normalize_embeddings=True)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))
    with pytest.raises(TypeError, match="normalize_embeddings must be a bool; got int"):
        DarkRankLoss(normalize_embeddings=1)
