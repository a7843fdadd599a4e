import pytest
import torch

from pml_relaxed.losses import HintonKDLoss

f64 = torch.float64


def test_matches_the_explicit_formula_and_keeps_the_head_out_of_its_parameters():
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(4, 3).double()
    emb = torch.randn(5, 4, dtype=f64, generator=gen, requires_grad=True)
    teacher_logits = torch.randn(5, 3, dtype=f64, generator=gen)
    t = 2.0
    expected = torch.zeros((), dtype=f64)
    for i in range(5):  # T^2 (1/n) sum_i sum_c p_ic log(p_ic / q_ic)
        z_s = head(emb[i]) / t
        p = torch.exp(teacher_logits[i] / t) / torch.exp(teacher_logits[i] / t).sum()
        q = torch.exp(z_s) / torch.exp(z_s).sum()
        expected = expected + (p * (p / q).log()).sum()
    expected = t * t * expected / 5
    loss_fn = HintonKDLoss(head, temperature=t)
    loss = loss_fn(emb, teacher_emb=teacher_logits)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    (grad,), (expected_grad,) = torch.autograd.grad(loss, emb), torch.autograd.grad(expected, emb)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    assert list(loss_fn.parameters()) == [] and loss_fn.student_head is head
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, teacher_emb=teacher_logits), (emb,))


def test_misuse_is_refused():
    head = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        HintonKDLoss(head, temperature=0.0)
    with pytest.raises(TypeError, match="student_head must map student embeddings to logits"):
        HintonKDLoss("head")
    with pytest.raises(ValueError, match=r"logits of the teacher's shape \(5, 7\)"):
        HintonKDLoss(head)(torch.randn(5, 4), teacher_emb=torch.randn(5, 7))
    with pytest.raises(ValueError, match="indices_tuple is not supported"):
        pairs = tuple(torch.tensor([0]) for _ in range(4))
        HintonKDLoss(head)(torch.randn(5, 4), indices_tuple=pairs, teacher_emb=torch.randn(5, 3))
    with pytest.raises(ValueError, match="teacher_emb is required"):
        HintonKDLoss(head)(torch.randn(5, 4))
