"""PKTLoss against a slow loop of Passalis & Tefas (ECCV 2018), cosine kernel, KL(teacher || student)."""

import pytest
import torch
from pytorch_metric_learning import distances, reducers

from pml_relaxed import functional_baselines as fb
from pml_relaxed.losses.pkt_loss import PKTLoss

f64 = torch.float64


def _inputs(n, d_student, d_teacher, seed=0, dtype=f64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, d_student, dtype=dtype, generator=gen).requires_grad_()
    teacher = torch.randn(n, d_teacher, dtype=dtype, generator=gen)
    return student, teacher


def _conditionals(emb, ref, i, partners, eps):
    def unit(x):
        return x / (torch.sqrt((x**2).sum()) + eps)

    kernel = [(unit(emb[i]) @ unit(ref[j]) + 1) / 2 for j in partners]
    total = sum(kernel)
    return [k / total for k in kernel]


def loop_pkt(student, teacher, eps=1e-7, ref_student=None, ref_teacher=None):
    self_ref = ref_student is None
    if self_ref:
        ref_student, ref_teacher = student, teacher
    n, m = student.shape[0], ref_student.shape[0]
    total = torch.zeros((), dtype=student.dtype)
    for i in range(n):
        partners = [j for j in range(m) if not (self_ref and i == j)]
        if not partners:
            continue
        p_teacher = _conditionals(teacher, ref_teacher, i, partners, eps)
        p_student = _conditionals(student, ref_student, i, partners, eps)
        for p_t, p_s in zip(p_teacher, p_student):
            total = total + p_t * torch.log((p_t + eps) / (p_s + eps))
    return total / n


@pytest.mark.parametrize("n", [2, 3, 7, 16])
@pytest.mark.parametrize("dims", [(3, 8), (16, 4)])
@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_matches_loop_values_and_gradients(n, dims, eps):
    student, teacher = _inputs(n, *dims, seed=n)
    loss = PKTLoss(eps=eps)(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    expected = loop_pkt(student, teacher, eps)
    (expected_grad,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-10)


def test_reference_set_matches_loop():
    student, teacher = _inputs(5, 4, 6, seed=1)
    ref_student, ref_teacher = _inputs(8, 4, 6, seed=2)
    loss = PKTLoss()(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = loop_pkt(student, teacher, ref_student=ref_student, ref_teacher=ref_teacher)
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (student, ref_student))
    expected_grads = torch.autograd.grad(expected, (student, ref_student))
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


def test_identical_geometry_gives_zero_and_loss_is_scale_invariant():
    student, teacher = _inputs(8, 5, 5, seed=3)
    assert abs(PKTLoss()(student, teacher_emb=student.detach()).item()) < 1e-12
    loss_fn = PKTLoss()
    torch.testing.assert_close(loss_fn(3.0 * student, teacher_emb=teacher), loss_fn(student, teacher_emb=teacher))


def test_functional_equals_class():
    student, teacher = _inputs(7, 4, 6)
    torch.testing.assert_close(
        fb.pkt_per_anchor(student, teacher, eps=1e-5).mean(), PKTLoss(eps=1e-5)(student, teacher_emb=teacher)
    )


def test_gradcheck():
    student, teacher = _inputs(6, 3, 4, seed=4)
    loss_fn = PKTLoss()
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))


def test_permutation_invariance():
    student, teacher = _inputs(10, 5, 7, seed=5)
    perm = torch.randperm(10)
    loss_fn = PKTLoss()
    torch.testing.assert_close(loss_fn(student[perm], teacher_emb=teacher[perm]), loss_fn(student, teacher_emb=teacher))


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("case", ["duplicated", "collapsed", "zeros", "antipodal_pair"])
def test_degenerate_rows_give_finite_loss_and_gradients(case, dtype):
    student, teacher = _inputs(5, 4, 6, seed=6, dtype=dtype)
    base = student.detach().clone()
    if case == "duplicated":
        base[1] = base[0]
    elif case == "collapsed":
        base[:] = base[0]
    elif case == "zeros":
        base[2:] = 0
    else:
        base, teacher = base[:2], teacher[:2]
        base[1] = -base[0]
    student = base.requires_grad_()
    loss = PKTLoss()(student, teacher_emb=teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    if dtype == f64:
        torch.testing.assert_close(loss, loop_pkt(student, teacher))


def test_batch_of_one_gives_zero():
    student, teacher = _inputs(1, 4, 5)
    loss = PKTLoss()(student, teacher_emb=teacher)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(student.grad, torch.zeros_like(student))


def test_float32_matches_float64_and_keeps_dtype():
    student, teacher = _inputs(12, 6, 9, seed=7)
    loss64 = PKTLoss()(student, teacher_emb=teacher)
    loss32 = PKTLoss()(student.detach().float(), teacher_emb=teacher.float())
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), loss64.detach(), rtol=1e-4, atol=1e-6)


def test_teacher_gets_no_gradient_and_sum_reducer_sums_anchors():
    student, teacher = _inputs(6, 3, 4)
    teacher.requires_grad_()
    loss = PKTLoss(reducer=reducers.SumReducer())(student, teacher_emb=teacher)
    loss.backward()
    assert teacher.grad is None
    torch.testing.assert_close(loss, 6 * PKTLoss()(student, teacher_emb=teacher))


def test_bad_inputs_raise():
    student, teacher = _inputs(4, 3, 5)
    loss_fn = PKTLoss()
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(student)
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings"):
        loss_fn(student, teacher_emb=teacher[:2])
    with pytest.raises(ValueError, match="teacher_emb must be finite"):
        loss_fn(student, teacher_emb=teacher.masked_fill(teacher > 1, float("nan")))
    with pytest.raises(ValueError, match="indices_tuple is not supported"):
        loss_fn(student, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])), teacher_emb=teacher)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": 0.0}, "eps must be > 0"),
        ({"eps": -1e-7}, "eps must be > 0"),
        ({"distance": distances.CosineSimilarity()}, "distance cannot be set"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PKTLoss(**kwargs)
