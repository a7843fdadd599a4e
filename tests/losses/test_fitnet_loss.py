"""FitNetLoss against a slow loop of the FitNet hint regression (Romero et al., ICLR 2015) as an MSE."""

import pytest
import torch
from pytorch_metric_learning import distances

from pml_relaxed import functional_baselines as fb
from pml_relaxed.losses.fitnet_loss import FitNetLoss

f64 = torch.float64


def _inputs(n, d_student, d_teacher, seed=0, dtype=f64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, d_student, dtype=dtype, generator=gen).requires_grad_()
    teacher = torch.randn(n, d_teacher, dtype=dtype, generator=gen)
    return student, teacher


def loop_fitnet(student, teacher, weight=None):
    n, d = student.shape
    big_d = teacher.shape[1]
    total = torch.zeros((), dtype=student.dtype)
    for i in range(n):
        for k in range(big_d):
            projected = student[i, k] if weight is None else sum(weight[k, j] * student[i, j] for j in range(d))
            total = total + (projected - teacher[i, k]) ** 2 / big_d
    return total / n


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("dims", [(3, 8), (8, 2), (4, 4)])
def test_regressor_matches_loop_values_and_gradients(n, dims):
    student, teacher = _inputs(n, *dims, seed=n)
    loss_fn = FitNetLoss(student_dim=dims[0], teacher_dim=dims[1]).double()
    loss = loss_fn(student, teacher_emb=teacher)
    grads = torch.autograd.grad(loss, (student, loss_fn.regressor.weight))
    expected = loop_fitnet(student, teacher, loss_fn.regressor.weight)
    expected_grads = torch.autograd.grad(expected, (student, loss_fn.regressor.weight))
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [1, 5])
def test_identity_when_no_dims_matches_loop_and_mse(n):
    student, teacher = _inputs(n, 6, 6, seed=1)
    loss_fn = FitNetLoss()
    assert loss_fn.regressor is None and len(list(loss_fn.parameters())) == 0
    loss = loss_fn(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    expected = loop_fitnet(student, teacher)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, student)[0])
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(student, teacher))


def test_float32_regressor_is_used_in_the_students_dtype():
    student, teacher = _inputs(5, 3, 4, seed=2)
    loss_fn = FitNetLoss(3, 4)
    assert loss_fn.regressor.weight.dtype == torch.float32
    loss = loss_fn(student, teacher_emb=teacher)
    assert loss.dtype == f64
    loss.backward()
    assert loss_fn.regressor.weight.grad.dtype == torch.float32
    torch.testing.assert_close(loss, loop_fitnet(student, teacher, loss_fn.regressor.weight.double()))
    loss32 = loss_fn(student.detach().float(), teacher_emb=teacher.float())
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), loss.detach(), rtol=1e-5, atol=1e-6)


def test_regressor_is_trainable_with_an_optimizer():
    student, teacher = _inputs(32, 4, 3, seed=3)
    teacher = student.detach() @ torch.randn(4, 3, dtype=f64)
    loss_fn = FitNetLoss(4, 3).double()
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=1.0)
    first = loss_fn(student.detach(), teacher_emb=teacher).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss_fn(student.detach(), teacher_emb=teacher).backward()
        optimizer.step()
    assert loss_fn(student.detach(), teacher_emb=teacher).item() < 0.01 * first


def test_functional_equals_class_and_gradcheck():
    student, teacher = _inputs(6, 3, 5, seed=4)
    weight = torch.randn(5, 3, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, w: fb.fitnet_per_sample(s, teacher, w), (student, weight))
    loss_fn = FitNetLoss(3, 5).double()
    with torch.no_grad():
        loss_fn.regressor.weight.copy_(weight)
    expected = fb.fitnet_per_sample(student, teacher, weight).mean()
    torch.testing.assert_close(loss_fn(student, teacher_emb=teacher), expected)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))


def test_permutation_invariance_and_duplicated_rows():
    student, teacher = _inputs(9, 5, 7, seed=5)
    perm = torch.randperm(9)
    loss_fn = FitNetLoss(5, 7).double()
    torch.testing.assert_close(loss_fn(student[perm], teacher_emb=teacher[perm]), loss_fn(student, teacher_emb=teacher))
    collapsed = student.detach()[:1].repeat(9, 1).requires_grad_()
    loss = loss_fn(collapsed, teacher_emb=teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(collapsed.grad).all()


def test_batch_of_one_is_that_samples_error_not_zero():
    student, teacher = _inputs(1, 4, 4)
    loss = FitNetLoss()(student, teacher_emb=teacher)
    torch.testing.assert_close(loss, ((student - teacher) ** 2).mean())
    assert loss.item() > 0


def test_teacher_gets_no_gradient():
    student, teacher = _inputs(4, 3, 3)
    teacher.requires_grad_()
    FitNetLoss()(student, teacher_emb=teacher).backward()
    assert teacher.grad is None


def test_bad_inputs_raise():
    student, teacher = _inputs(4, 3, 5)
    with pytest.raises(ValueError, match=r"construct FitNetLoss\(student_dim=3, teacher_dim=5\)"):
        FitNetLoss()(student, teacher_emb=teacher)
    with pytest.raises(ValueError, match="built for student_dim=3, teacher_dim=4"):
        FitNetLoss(3, 4)(student, teacher_emb=teacher)
    loss_fn = FitNetLoss(3, 5)
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(student)
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings"):
        loss_fn(student, teacher_emb=teacher[:3])
    with pytest.raises(ValueError, match="ref_emb/teacher_ref_emb are not supported"):
        loss_fn(student, ref_emb=student.detach(), teacher_emb=teacher, teacher_ref_emb=teacher)
    with pytest.raises(ValueError, match="indices_tuple is not supported"):
        loss_fn(student, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])), teacher_emb=teacher)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"student_dim": 3}, ValueError, "pass both student_dim and teacher_dim"),
        ({"teacher_dim": 3}, ValueError, "pass both student_dim and teacher_dim"),
        ({"student_dim": 0, "teacher_dim": 3}, ValueError, "student_dim must be >= 1"),
        ({"student_dim": 3, "teacher_dim": 2.0}, TypeError, "teacher_dim must be an int"),
        ({"distance": distances.LpDistance()}, ValueError, "distance cannot be set"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        FitNetLoss(**kwargs)
