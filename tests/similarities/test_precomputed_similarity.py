import pytest
import torch

from pml_relaxed.losses import RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss
from pml_relaxed.similarities import GaussianKernel, PrecomputedSimilarity, TeacherInputs


def loop_relaxed_contrastive(student, weights, delta=1.0, ref_student=None):
    """The relaxed contrastive loss with given weights, pair by pair (float64)."""
    self_ref = ref_student is None
    refs = student if self_ref else ref_student
    total = torch.zeros((), dtype=student.dtype)
    for i in range(student.shape[0]):
        dists = [
            torch.zeros((), dtype=student.dtype) if self_ref and i == j else (student[i] - refs[j]).norm()
            for j in range(refs.shape[0])
        ]
        mean = sum(dists) / refs.shape[0]
        for j, dist in enumerate(dists):
            if self_ref and i == j:
                continue
            w, d = float(weights[i][j]), dist / mean
            total = total + w * d**2 + (1 - w) * torch.clamp(delta - d, min=0) ** 2
    return total / student.shape[0]


@pytest.mark.parametrize("block_size", [0, 1, 4])
def test_matrix_gives_the_loop_loss_values_and_gradients(block_size):
    weights = torch.rand(9, 9, dtype=torch.float64)
    student = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    loss_fn = RelaxedContrastiveLoss(similarity=PrecomputedSimilarity(weights), block_size=block_size)
    loss = loss_fn(student, teacher_emb=student.detach())
    expected = loop_relaxed_contrastive(student, weights)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(torch.autograd.grad(loss, student)[0], torch.autograd.grad(expected, student)[0])


def test_matrix_with_a_reference_set_and_rows():
    weights = torch.rand(5, 7, dtype=torch.float64)
    sim = PrecomputedSimilarity(weights)
    rows = sim.rows(TeacherInputs(torch.zeros(5, 2, dtype=torch.float64), torch.zeros(7, 2, dtype=torch.float64)))
    assert torch.equal(rows(1, 3), weights[1:3]) and torch.equal(rows(0, 5), weights)
    student, refs = torch.randn(5, 4, dtype=torch.float64, requires_grad=True), torch.randn(7, 4, dtype=torch.float64)
    loss = RelaxedContrastiveLoss(similarity=sim, block_size=2)(
        student,
        ref_emb=refs,
        teacher_emb=torch.zeros(5, 1, dtype=torch.float64),
        teacher_ref_emb=torch.zeros(7, 1, dtype=torch.float64),
    )
    torch.testing.assert_close(loss, loop_relaxed_contrastive(student, weights, ref_student=refs))


def test_kernel_matrix_reproduces_the_teacher_loss():
    teacher = torch.randn(10, 6, dtype=torch.float64)
    student = torch.randn(10, 3, dtype=torch.float64)
    sim = PrecomputedSimilarity(GaussianKernel()(teacher))
    for loss_cls in (RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss):
        torch.testing.assert_close(
            loss_cls(similarity=sim)(student, teacher_emb=teacher), loss_cls()(student, teacher_emb=teacher)
        )


def test_callable_gets_the_full_reference_set_and_labels():
    class_similarity = torch.tensor([[1.0, 0.25, 0.0], [0.25, 1.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    calls = []

    def fn(teacher_emb, teacher_ref_emb, labels, ref_labels):
        calls.append((teacher_emb.shape[0], teacher_ref_emb.shape[0], labels.tolist(), ref_labels.tolist()))
        return class_similarity[labels][:, ref_labels]

    sim = PrecomputedSimilarity(fn, requires_labels=True)
    labels = torch.tensor([0, 1, 2, 2, 0, 1])
    student = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss = RelaxedContrastiveLoss(similarity=sim, block_size=2)(student, labels, teacher_emb=student.detach())
    assert calls == [(6, 6, labels.tolist(), labels.tolist())]  # once per call, whole batch, despite the blocks
    torch.testing.assert_close(loss, loop_relaxed_contrastive(student, class_similarity[labels][:, labels]))
    with pytest.raises(ValueError, match="labels is required"):
        sim(torch.zeros(6, 1))


def test_dtype_device_and_no_gradient():
    sim = PrecomputedSimilarity(torch.rand(3, 3, dtype=torch.float64))
    assert sim(torch.zeros(3, 2, dtype=torch.float32)).dtype == torch.float32
    assert sim(torch.zeros(3, 2, dtype=torch.float16)).dtype == torch.float32
    source = torch.rand(3, 3, requires_grad=True)
    out = PrecomputedSimilarity(lambda t, r, lab, ref_lab: source)(torch.zeros(3, 1))
    assert not out.requires_grad


def test_errors():
    with pytest.raises(TypeError, match="relaxed_labels must be an \\(n, m\\) float tensor or a callable"):
        PrecomputedSimilarity([[1.0]])
    with pytest.raises(TypeError, match="floating-point"):
        PrecomputedSimilarity(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="2D tensor"):
        PrecomputedSimilarity(torch.ones(4))
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]; got values in \\[-0.5"):
        PrecomputedSimilarity(torch.tensor([[1.0, -0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="must be finite"):
        PrecomputedSimilarity(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="requires_labels is for a callable"):
        PrecomputedSimilarity(torch.ones(2, 2), requires_labels=True)
    with pytest.raises(
        ValueError, match="4 queries and 4 references, but the precomputed relaxed_labels matrix has shape \\(3, 3\\)"
    ):
        PrecomputedSimilarity(torch.ones(3, 3))(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="result must have shape \\(4, 4\\)"):
        PrecomputedSimilarity(lambda t, r, lab, ref_lab: torch.ones(4, 3))(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="callable's result must be a torch.Tensor"):
        PrecomputedSimilarity(lambda t, r, lab, ref_lab: 1.0)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        PrecomputedSimilarity(lambda t, r, lab, ref_lab: 2 * torch.ones(4, 4))(torch.zeros(4, 2))
    # validate=False skips the value check (no host synchronisation), not the shape check
    unchecked = PrecomputedSimilarity(lambda t, r, lab, ref_lab: 2 * torch.ones(4, 4), validate=False)
    assert unchecked(torch.zeros(4, 2)).max() == 2
    with pytest.raises(TypeError, match="validate must be a bool"):
        PrecomputedSimilarity(torch.ones(2, 2), validate=None)


def test_the_given_matrix_is_never_overwritten():
    weights = torch.rand(6, 6, dtype=torch.float64)
    kept = weights.clone()
    sim = PrecomputedSimilarity(weights)
    student = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    RelaxedContrastiveLoss(similarity=sim, block_size=2)(student, teacher_emb=student.detach()).backward()
    sim(student.detach())[:] = 5
    assert torch.equal(sim.matrix, kept) and torch.equal(weights, kept)
