import math

import pytest
import torch
from pytorch_metric_learning.miners import MultiSimilarityMiner, TripletMarginMiner

from pml_relaxed import functional as fn
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.similarities import GaussianKernel, LabelSimilarity, MixedSimilarity
from tests.helpers.reference import loop_relaxed_contrastive

f64 = torch.float64


def _inputs(n, d_student, d_teacher, seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, d_student, dtype=f64, generator=gen).requires_grad_()
    teacher = torch.randn(n, d_teacher, dtype=f64, generator=gen)
    return student, teacher


@pytest.mark.parametrize("n", [2, 5, 13, 32])
@pytest.mark.parametrize("dims", [(3, 8), (16, 64), (32, 4)])
@pytest.mark.parametrize("sigma,delta", [(1.0, 1.0), (0.5, 1.5), (2.0, 0.5), (1.0, 0.0)])
def test_matches_loop_reference_values_and_gradients(n, dims, sigma, delta):
    student, teacher = _inputs(n, *dims, seed=n)
    loss = RelaxedContrastiveLoss(sigma=sigma, delta=delta)(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    ref_student = student.detach().clone().requires_grad_()
    expected = loop_relaxed_contrastive(ref_student, teacher, sigma, delta)
    (expected_grad,) = torch.autograd.grad(expected, ref_student)
    torch.testing.assert_close(loss, expected, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-9)


def test_unnormalized_teacher_matches_reference():
    student, teacher = _inputs(7, 5, 6)
    loss = RelaxedContrastiveLoss(sigma=8.0, normalize_teacher=False)(student, teacher_emb=teacher)
    expected = loop_relaxed_contrastive(student, teacher, sigma=8.0, normalize=False)
    torch.testing.assert_close(loss, expected)


def test_functional_equals_class():
    student, teacher = _inputs(9, 4, 12)
    a = fn.relaxed_contrastive_loss(student, teacher, sigma=0.7, delta=1.2)
    b = RelaxedContrastiveLoss(sigma=0.7, delta=1.2)(student, teacher_emb=teacher)
    torch.testing.assert_close(a, b)


def test_gradcheck():
    student, teacher = _inputs(6, 4, 5)
    loss_fn = RelaxedContrastiveLoss(sigma=0.8, delta=1.3)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))


def test_reference_set_matches_loop():
    student, teacher = _inputs(5, 4, 8, seed=1)
    ref_student, ref_teacher = _inputs(11, 4, 8, seed=2)
    loss = RelaxedContrastiveLoss()(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = loop_relaxed_contrastive(student, teacher, ref_student=ref_student, ref_teacher=ref_teacher)
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (student, ref_student))
    expected_grads = torch.autograd.grad(expected, (student, ref_student))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_indices_tuple_restricts_pairs_but_row_means_use_all():
    student, teacher = _inputs(10, 6, 8, seed=3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    pairs_tuple = MultiSimilarityMiner(epsilon=0.1)(student.detach(), labels)
    pair_set = {(int(a), int(b)) for a, b in zip(pairs_tuple[0], pairs_tuple[1])}
    pair_set |= {(int(a), int(b)) for a, b in zip(pairs_tuple[2], pairs_tuple[3])}
    assert 0 < len(pair_set) < 90
    loss = RelaxedContrastiveLoss()(student, labels, pairs_tuple, teacher_emb=teacher)
    expected = loop_relaxed_contrastive(student, teacher, pairs=pair_set)
    torch.testing.assert_close(loss, expected)
    full = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
    assert not torch.allclose(loss, full)


def test_triplet_indices_each_pair_counted_once():
    student, teacher = _inputs(8, 3, 5, seed=4)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    triplets = TripletMarginMiner(margin=100.0, type_of_triplets="all")(student.detach(), labels)
    pair_set = {(int(a), int(p)) for a, p in zip(triplets[0], triplets[1])}
    pair_set |= {(int(a), int(n)) for a, n in zip(triplets[0], triplets[2])}
    loss = RelaxedContrastiveLoss()(student, labels, triplets, teacher_emb=teacher)
    torch.testing.assert_close(loss, loop_relaxed_contrastive(student, teacher, pairs=pair_set))


def test_labels_are_ignored_by_default_kernel():
    student, teacher = _inputs(6, 3, 5)
    loss_fn = RelaxedContrastiveLoss()
    a = loss_fn(student, torch.tensor([0, 1, 2, 3, 4, 5]), teacher_emb=teacher)
    b = loss_fn(student, torch.zeros(6, dtype=torch.long), teacher_emb=teacher)
    torch.testing.assert_close(a, b)


def test_permutation_invariance():
    student, teacher = _inputs(12, 5, 7)
    perm = torch.randperm(12)
    loss_fn = RelaxedContrastiveLoss(sigma=0.5)
    torch.testing.assert_close(loss_fn(student, teacher_emb=teacher), loss_fn(student[perm], teacher_emb=teacher[perm]))


def test_optimum_for_one_pair_is_one_minus_w_times_delta():
    # With two samples the row mean is D/2, so d = 2 always: build a reference set instead.
    # For a fixed row mean, the per-pair term w d^2 + (1-w)(delta-d)^2 is minimised at d = (1-w) delta.
    w = torch.tensor([[0.3]], dtype=f64)
    delta = 1.0
    ds = torch.linspace(0, 2, 2001, dtype=f64).view(-1, 1)
    mask = torch.ones(1, 1, dtype=torch.bool)
    vals = torch.stack([fn.relaxed_contrastive_per_anchor(d.view(1, 1), w, mask, delta) for d in ds])
    best = ds[vals.argmin()].item()
    assert best == pytest.approx(0.7, abs=1e-3)


def test_batch_of_one_gives_zero_loss_and_zero_gradient():
    student = torch.randn(1, 4, requires_grad=True)
    loss = RelaxedContrastiveLoss()(student, teacher_emb=torch.randn(1, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(student.grad, torch.zeros_like(student))


@pytest.mark.parametrize("n", [4, 40])
def test_duplicated_and_collapsed_rows_give_finite_loss_and_gradients(n):
    base = torch.randn(n // 2, 6, dtype=f64)
    duplicated = torch.cat([base, base]).requires_grad_()
    collapsed = torch.zeros(n, 6, dtype=f64, requires_grad=True)
    teacher = torch.randn(n, 9, dtype=f64)
    for student in (duplicated, collapsed):
        loss = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(student.grad).all()


def test_collapsed_student_loss_is_push_term_only():
    teacher = torch.randn(5, 3, dtype=f64)
    student = torch.ones(5, 4, dtype=f64)
    w = fn.gaussian_kernel(teacher)
    expected = ((1 - w) * (1 - torch.eye(5, dtype=f64))).sum() / 5
    torch.testing.assert_close(RelaxedContrastiveLoss()(student, teacher_emb=teacher), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_dtypes(dtype):
    student = torch.randn(16, 8, dtype=dtype, requires_grad=True)
    teacher = torch.randn(16, 32, dtype=dtype)
    loss = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
    loss.backward()
    assert loss.dtype == dtype and torch.isfinite(student.grad).all()
    expected = loop_relaxed_contrastive(student.detach().double(), teacher.double())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_half_precision_under_autocast(amp_dtype):
    model = torch.nn.Linear(20, 8)
    x = torch.randn(32, 20)
    teacher = torch.randn(32, 16).to(amp_dtype)
    with torch.autocast("cpu", dtype=amp_dtype):
        emb = model(x)
        assert emb.dtype == amp_dtype
        loss = RelaxedContrastiveLoss()(emb, teacher_emb=teacher)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    exact = RelaxedContrastiveLoss()(model(x).double(), teacher_emb=teacher.double())
    assert loss.item() == pytest.approx(exact.item(), rel=0.05)


def test_float16_tensors_without_autocast():
    student = torch.randn(10, 4).half().requires_grad_()
    loss = RelaxedContrastiveLoss()(student, teacher_emb=torch.randn(10, 6).half())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


# ---------------------------------------------------------------- similarities


def test_gaussian_kernel_properties():
    teacher = torch.randn(7, 5, dtype=f64)
    w = GaussianKernel(sigma=0.5)(teacher)
    assert w.shape == (7, 7)
    assert torch.all((w >= 0) & (w <= 1))
    torch.testing.assert_close(w, w.t())
    torch.testing.assert_close(torch.diagonal(w), torch.ones(7, dtype=f64))
    e = torch.eye(3, dtype=f64)
    w_orth = GaussianKernel(sigma=2.0)(e)
    torch.testing.assert_close(w_orth[0, 1], torch.tensor(math.exp(-2 / 2.0), dtype=f64))
    w_opposite = GaussianKernel(sigma=1.0)(torch.stack([e[0], -e[0]]))
    torch.testing.assert_close(w_opposite[0, 1], torch.tensor(math.exp(-4.0), dtype=f64))
    scaled = GaussianKernel()(teacher * 10)
    torch.testing.assert_close(scaled, GaussianKernel()(teacher))


def test_label_similarity_gives_contrastive_loss_on_relative_distances():
    student, teacher = _inputs(8, 4, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    w = LabelSimilarity()(teacher, labels=labels)
    torch.testing.assert_close(w, (labels[:, None] == labels[None]).double())
    loss = RelaxedContrastiveLoss(similarity=LabelSimilarity())(student, labels, teacher_emb=teacher)
    d = fn.relative_distance(torch.cdist(student, student).masked_fill(torch.eye(8, dtype=torch.bool), 0))
    same = labels[:, None] == labels[None]
    off = ~torch.eye(8, dtype=torch.bool)
    expected = (d[same & off] ** 2).sum() + (torch.relu(1 - d[~same]) ** 2).sum()
    torch.testing.assert_close(loss, expected / 8)
    expected_loop = loop_relaxed_contrastive(student, teacher, weights=w)
    torch.testing.assert_close(loss, expected_loop)


def test_label_similarity_requires_labels():
    loss_fn = RelaxedContrastiveLoss(similarity=LabelSimilarity())
    with pytest.raises(ValueError, match="labels is required: LabelSimilarity"):
        loss_fn(torch.randn(4, 2), teacher_emb=torch.randn(4, 3))


def test_mixed_similarity_is_convex_combination():
    teacher = torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mixed = MixedSimilarity(GaussianKernel(), LabelSimilarity(), label_weight=0.25)(teacher, labels=labels)
    expected = 0.75 * GaussianKernel()(teacher) + 0.25 * LabelSimilarity()(teacher, labels=labels)
    torch.testing.assert_close(mixed, expected)
    with pytest.raises(ValueError, match=r"label_weight must be in \[0, 1\]; got 1.5"):
        MixedSimilarity(GaussianKernel(), LabelSimilarity(), label_weight=1.5)
