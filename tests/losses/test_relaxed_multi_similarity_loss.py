import pytest
import torch
from pytorch_metric_learning.miners import MultiSimilarityMiner

from pml_relaxed import functional as fn
from pml_relaxed.losses import RelaxedMultiSimilarityLoss
from tests.helpers.reference import loop_relaxed_multi_similarity

f64 = torch.float64


def _inputs(n, d_student, d_teacher, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, d_student, dtype=f64, generator=gen).requires_grad_(),
        torch.randn(n, d_teacher, dtype=f64, generator=gen),
    )


@pytest.mark.parametrize("n", [2, 6, 17])
@pytest.mark.parametrize("dims", [(3, 8), (24, 5)])
@pytest.mark.parametrize("sigma,delta,alpha,beta", [(1.0, 1.0, 1.0, 2.0), (0.5, 1.5, 2.0, 4.0), (2.0, 0.7, 0.5, 1.0)])
def test_matches_loop_reference(n, dims, sigma, delta, alpha, beta):
    student, teacher = _inputs(n, *dims, seed=n)
    loss = RelaxedMultiSimilarityLoss(sigma=sigma, delta=delta, alpha=alpha, beta=beta)(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    ref = student.detach().clone().requires_grad_()
    expected = loop_relaxed_multi_similarity(ref, teacher, sigma, delta, alpha, beta)
    (expected_grad,) = torch.autograd.grad(expected, ref)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_reference_set_and_pairs_match_loop():
    student, teacher = _inputs(6, 4, 5, seed=1)
    ref_student, ref_teacher = _inputs(9, 4, 5, seed=2)
    loss = RelaxedMultiSimilarityLoss()(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = loop_relaxed_multi_similarity(student, teacher, ref_student=ref_student, ref_teacher=ref_teacher)
    torch.testing.assert_close(loss, expected)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pairs = MultiSimilarityMiner(epsilon=0.1)(student.detach(), labels)
    pair_set = {(int(a), int(b)) for a, b in zip(pairs[0], pairs[1])}
    pair_set |= {(int(a), int(b)) for a, b in zip(pairs[2], pairs[3])}
    loss = RelaxedMultiSimilarityLoss()(student, labels, pairs, teacher_emb=teacher)
    torch.testing.assert_close(loss, loop_relaxed_multi_similarity(student, teacher, pairs=pair_set))


def test_functional_equals_class_and_gradcheck():
    student, teacher = _inputs(7, 3, 4)
    torch.testing.assert_close(
        fn.relaxed_multi_similarity_loss(student, teacher, beta=3.0),
        RelaxedMultiSimilarityLoss(beta=3.0)(student, teacher_emb=teacher),
    )
    loss_fn = RelaxedMultiSimilarityLoss()
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher_emb=teacher), (student,))


def test_permutation_invariance_and_edge_cases():
    student, teacher = _inputs(10, 4, 6)
    perm = torch.randperm(10)
    loss_fn = RelaxedMultiSimilarityLoss()
    torch.testing.assert_close(loss_fn(student, teacher_emb=teacher), loss_fn(student[perm], teacher_emb=teacher[perm]))
    single = torch.randn(1, 3, requires_grad=True)
    out = loss_fn(single, teacher_emb=torch.randn(1, 2))
    out.backward()
    assert out.item() == 0.0 and torch.equal(single.grad, torch.zeros_like(single))
    collapsed = torch.zeros(6, 3, dtype=f64, requires_grad=True)
    out = loss_fn(collapsed, teacher_emb=torch.randn(6, 2, dtype=f64))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(collapsed.grad).all()


def test_large_distances_do_not_overflow():
    student = torch.randn(16, 4) * 1e3
    student[0] = 1e6
    student.requires_grad_()
    loss = RelaxedMultiSimilarityLoss(alpha=50.0, beta=50.0)(student, teacher_emb=torch.randn(16, 8))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_autocast(amp_dtype):
    model = torch.nn.Linear(10, 6)
    with torch.autocast("cpu", dtype=amp_dtype):
        loss = RelaxedMultiSimilarityLoss()(model(torch.randn(24, 10)), teacher_emb=torch.randn(24, 5))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
