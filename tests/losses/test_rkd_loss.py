"""RKDLoss against a slow loop of Park et al. (CVPR 2019), Eq. 3-7."""

import pytest
import torch
from pytorch_metric_learning import distances, regularizers

from pml_relaxed import functional_baselines as fb
from pml_relaxed.losses.rkd_loss import RKDLoss

f64 = torch.float64


def _inputs(n, d_student, d_teacher, seed=0, dtype=f64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, d_student, dtype=dtype, generator=gen).requires_grad_()
    teacher = torch.randn(n, d_teacher, dtype=dtype, generator=gen)
    return student, teacher


def _huber(x):
    return 0.5 * x**2 if abs(float(x.detach())) < 1 else abs(x) - 0.5


def _over(dist, mu):
    """dist / mu, or 0 when mu is 0 (a collapsed batch)."""
    return dist / mu if float(mu.detach()) > 0 else dist * 0


def _dist(a, b):
    sq = ((a - b) ** 2).sum()
    return torch.sqrt(sq) if float(sq.detach()) > 0 else sq * 0


def _unit(a, b):
    """(b - a) / ||b - a||: the unit vector from vertex a to b."""
    norm = _dist(a, b)
    return (b - a) / norm if float(norm.detach()) > 0 else (b - a) * 0


def loop_rkd(student, teacher, distance_weight=1.0, angle_weight=2.0, ref_student=None, ref_teacher=None):
    self_ref = ref_student is None
    if self_ref:
        ref_student, ref_teacher = student, teacher
    n, m = student.shape[0], ref_student.shape[0]
    partners = [[j for j in range(m) if not (self_ref and i == j)] for i in range(n)]
    pairs = [(i, j) for i in range(n) for j in partners[i]]
    zero = torch.zeros((), dtype=student.dtype)
    mu_s = sum((_dist(student[i], ref_student[j]) for i, j in pairs), zero) / max(len(pairs), 1)
    mu_t = sum((_dist(teacher[i], ref_teacher[j]) for i, j in pairs), zero) / max(len(pairs), 1)
    total = zero
    for i in range(n):
        dist_terms = [
            _huber(_over(_dist(teacher[i], ref_teacher[j]), mu_t) - _over(_dist(student[i], ref_student[j]), mu_s))
            for j in partners[i]
        ]
        angle_terms = []
        for j in partners[i]:
            for k in partners[i]:
                if j == k:
                    continue
                cos_t = _unit(teacher[i], ref_teacher[j]) @ _unit(teacher[i], ref_teacher[k])
                cos_s = _unit(student[i], ref_student[j]) @ _unit(student[i], ref_student[k])
                angle_terms.append(_huber(cos_t - cos_s))
        if dist_terms:
            total = total + distance_weight * sum(dist_terms) / len(dist_terms)
        if angle_terms:
            total = total + angle_weight * sum(angle_terms) / len(angle_terms)
    return total / n


@pytest.mark.parametrize("n", [2, 3, 6])
@pytest.mark.parametrize("dims", [(3, 8), (8, 2)])
@pytest.mark.parametrize("weights", [(1.0, 2.0), (1.0, 0.0), (0.0, 1.0), (0.5, 3.0)])
def test_matches_loop_values_and_gradients(n, dims, weights):
    student, teacher = _inputs(n, *dims, seed=n)
    loss = RKDLoss(*weights)(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    expected = loop_rkd(student, teacher, *weights)
    (expected_grad,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-10)


def test_large_differences_use_linear_huber_branch():
    student, teacher = _inputs(5, 3, 4, seed=9)
    student = (student.detach() * torch.tensor([[20.0], [0.01], [1.0], [1.0], [1.0]], dtype=f64)).requires_grad_()
    loss = RKDLoss()(student, teacher_emb=teacher)
    torch.testing.assert_close(loss, loop_rkd(student, teacher))


def test_reference_set_matches_loop():
    student, teacher = _inputs(4, 3, 5, seed=1)
    ref_student, ref_teacher = _inputs(6, 3, 5, seed=2)
    loss = RKDLoss()(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = loop_rkd(student, teacher, ref_student=ref_student, ref_teacher=ref_teacher)
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (student, ref_student))
    expected_grads = torch.autograd.grad(expected, (student, ref_student))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


def test_functional_equals_class():
    student, teacher = _inputs(7, 4, 6)
    per_anchor = fb.rkd_per_anchor(student, teacher, distance_weight=0.7, angle_weight=1.5)
    torch.testing.assert_close(per_anchor.mean(), RKDLoss(0.7, 1.5)(student, teacher_emb=teacher))


def test_gradcheck():
    student, teacher = _inputs(5, 3, 4, seed=3)
    loss_fn = RKDLoss()
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))


def test_permutation_invariance():
    student, teacher = _inputs(9, 5, 7, seed=4)
    perm = torch.randperm(9)
    loss_fn = RKDLoss()
    torch.testing.assert_close(loss_fn(student[perm], teacher_emb=teacher[perm]), loss_fn(student, teacher_emb=teacher))


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("case", ["duplicated", "collapsed", "zeros"])
def test_duplicated_and_collapsed_rows_give_finite_gradients(case, dtype):
    student, teacher = _inputs(6, 4, 5, seed=5, dtype=dtype)
    base = student.detach().clone()
    if case == "duplicated":
        base[1] = base[0]
        base[3] = base[0]
    elif case == "collapsed":
        base[:] = base[0]
    else:
        base.zero_()
    teacher = teacher.clone()
    teacher[2] = teacher[4]
    student = base.requires_grad_()
    loss = RKDLoss()(student, teacher_emb=teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    if dtype == f64:
        torch.testing.assert_close(loss, loop_rkd(student, teacher))


def test_batch_of_one_gives_zero_and_n_two_has_no_angles():
    student, teacher = _inputs(1, 4, 5)
    loss = RKDLoss()(student, teacher_emb=teacher)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(student.grad, torch.zeros_like(student))
    student, teacher = _inputs(2, 4, 5)
    assert RKDLoss(distance_weight=0.0, angle_weight=1.0)(student, teacher_emb=teacher).item() == 0.0


def test_float32_matches_float64_and_keeps_dtype():
    student, teacher = _inputs(10, 6, 9, seed=6)
    loss64 = RKDLoss()(student, teacher_emb=teacher)
    loss32 = RKDLoss()(student.detach().float(), teacher_emb=teacher.float())
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), loss64.detach(), rtol=1e-4, atol=1e-6)


def test_teacher_gets_no_gradient_and_labels_are_ignored():
    student, teacher = _inputs(6, 3, 4)
    teacher.requires_grad_()
    loss = RKDLoss()(student, torch.tensor([0, 0, 1, 1, 2, 2]), teacher_emb=teacher)
    loss.backward()
    assert teacher.grad is None
    torch.testing.assert_close(loss, RKDLoss()(student, teacher_emb=teacher.detach()))


def test_embedding_regularizer_is_added():
    student, teacher = _inputs(6, 3, 4)
    loss = RKDLoss(embedding_regularizer=regularizers.LpRegularizer())(student, teacher_emb=teacher)
    expected = RKDLoss()(student, teacher_emb=teacher) + student.norm(dim=1).mean()
    torch.testing.assert_close(loss, expected)


def test_bad_inputs_raise():
    student, teacher = _inputs(4, 3, 5)
    loss_fn = RKDLoss()
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(student)
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings"):
        loss_fn(student, teacher_emb=teacher[:3])
    with pytest.raises(ValueError, match="teacher_ref_emb is required"):
        loss_fn(student, ref_emb=student.detach(), teacher_emb=teacher)
    with pytest.raises(ValueError, match="indices_tuple is not supported"):
        loss_fn(student, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])), teacher_emb=teacher)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distance_weight": -1.0}, "distance_weight must be >= 0"),
        ({"angle_weight": float("nan")}, "angle_weight must be finite"),
        ({"distance_weight": 0.0, "angle_weight": 0.0}, "both 0"),
        ({"distance": distances.LpDistance()}, "distance cannot be set"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RKDLoss(**kwargs)
