import pytest
import torch

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.similarities import (
    ContextualSimilarity,
    GaussianKernel,
    MixedSimilarity,
    PrecomputedSimilarity,
    TeacherInputs,
)
from tests.helpers.contextual_reference import loop_contextual_similarity


def as_tensor(rows):
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "k, kq, weight, normalize, sigma, center",
    [
        (4, None, 0.5, True, 1.0, False),
        (3, None, 0.5, True, 0.5, False),
        (5, 2, 0.3, False, 2.0, False),
        (1, None, 1.0, True, 1.0, False),
        (7, 4, 0.8, True, 1.0, False),
        (4, None, 0.5, True, 1.0, True),
        (5, 2, 0.3, False, 2.0, True),
    ],
)
def test_matches_loop_reference_on_random_embeddings(k, kq, weight, normalize, sigma, center):
    teacher = torch.randn(13, 5, dtype=torch.float64) + 3.0  # off the origin, so centring changes the labels
    similarity = ContextualSimilarity(
        k=k, sigma=sigma, query_expansion_k=kq, contextual_weight=weight, normalize=normalize, center=center
    )
    w = similarity(teacher)
    expected = as_tensor(loop_contextual_similarity(teacher, k, sigma, kq, weight, normalize, center=center))
    torch.testing.assert_close(w, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(w, w.T)


def test_ties_are_broken_by_the_smaller_index():
    # item 0 at 0 has items at +1 and -1 at the same distance; with k = 2 its neighbour is the smaller index
    sim = ContextualSimilarity(k=2, contextual_weight=1.0, normalize=False)
    w = sim(as_tensor([[0.0], [1.0], [-1.0]]))
    torch.testing.assert_close(w, as_tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]]), rtol=0, atol=0)
    assert sim.ranking(as_tensor([[0.0], [1.0], [-1.0]]))[0].tolist() == [0, 1, 2]
    # the same points in another order: the tie now goes to -1, the item with index 1
    w = sim(as_tensor([[0.0], [-1.0], [1.0]]))
    torch.testing.assert_close(w, as_tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]]), rtol=0, atol=0)


def test_self_ranks_first_even_against_a_duplicate():
    sim = ContextualSimilarity(k=2, normalize=False)
    ranking = sim.ranking(as_tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]]))
    assert ranking.tolist() == [[0, 1, 2], [1, 0, 2], [2, 0, 1]]


@pytest.mark.parametrize("k, kq", [(2, None), (3, None), (4, 3), (6, None)])
def test_matches_loop_reference_with_many_ties(k, kq):
    # integer lattice points (exact distances, many equal) with duplicates
    teacher = torch.randint(-2, 3, (16, 2)).double()
    teacher[5] = teacher[2]
    teacher[9] = teacher[2]
    sim = ContextualSimilarity(k=k, query_expansion_k=kq, normalize=False, sigma=3.0)
    expected = as_tensor(loop_contextual_similarity(teacher, k, 3.0, kq, 0.5, normalize=False))
    torch.testing.assert_close(sim(teacher), expected, rtol=1e-12, atol=1e-12)


def test_labels_mark_views_rank_the_other_views_first():
    points = as_tensor([[0.0], [1.0], [-3.0]])
    labels = torch.tensor([7, 1, 7])
    sim = ContextualSimilarity(k=2, contextual_weight=1.0, normalize=False, labels_mark_views=True)
    assert sim.requires_labels
    assert sim.ranking(points, labels)[0].tolist() == [0, 2, 1]
    torch.testing.assert_close(sim(points, labels=labels), as_tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]]), rtol=0, atol=0)
    teacher = torch.randn(12, 4, dtype=torch.float64)
    views = torch.arange(6).repeat_interleave(2)
    expected = as_tensor(loop_contextual_similarity(teacher, 4, view_labels=views))
    torch.testing.assert_close(ContextualSimilarity(k=4, labels_mark_views=True)(teacher, labels=views), expected)
    with pytest.raises(ValueError, match="labels is required"):
        sim(points)


def test_k_at_least_the_batch_is_clamped_and_weight_zero_is_the_gaussian_kernel():
    teacher = torch.randn(5, 3, dtype=torch.float64)
    kernel = GaussianKernel(sigma=0.7)(teacher)
    # every item is everyone's reciprocal neighbour: the contextual part is 1
    torch.testing.assert_close(ContextualSimilarity(k=50, sigma=0.7)(teacher), (kernel + 1) / 2)
    torch.testing.assert_close(ContextualSimilarity(k=2, sigma=0.7, contextual_weight=0.0)(teacher), kernel)


def test_no_gradient_values_in_unit_interval_and_half_precision():
    teacher = torch.randn(10, 4, requires_grad=True)
    w = ContextualSimilarity(k=3)(teacher)
    assert not w.requires_grad and w.dtype == torch.float32
    assert bool(((w >= 0) & (w <= 1)).all())
    w16 = ContextualSimilarity(k=3)(teacher.detach().to(torch.bfloat16))
    assert w16.dtype == torch.float32 and w16.shape == (10, 10)
    assert ContextualSimilarity()(torch.zeros(0, 3)).shape == (0, 0)


def test_relaxed_contrastive_loss_with_it_equals_the_loss_on_the_reference_matrix():
    teacher = torch.randn(12, 6, dtype=torch.float64)
    student = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    loss = RelaxedContrastiveLoss(similarity=ContextualSimilarity(k=3))(student, teacher_emb=teacher)
    (grad,) = torch.autograd.grad(loss, student)
    reference = PrecomputedSimilarity(as_tensor(loop_contextual_similarity(teacher, 3)))
    expected = RelaxedContrastiveLoss(similarity=reference, block_size=0)(student, teacher_emb=teacher)
    (expected_grad,) = torch.autograd.grad(expected, student)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_center_makes_the_labels_translation_invariant():
    teacher = torch.randn(10, 4, dtype=torch.float64)
    shift = torch.tensor([5.0, -2.0, 0.5, 9.0], dtype=torch.float64)
    centred = ContextualSimilarity(k=3, center=True)
    torch.testing.assert_close(centred(teacher + shift), centred(teacher), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ContextualSimilarity(k=3)(teacher + shift), ContextualSimilarity(k=3)(teacher))


def test_center_on_collinear_embeddings_keeps_the_signal():
    # all embeddings near one direction (a random network's): uncentred labels are near 1 for every pair
    direction = torch.ones(1, 6, dtype=torch.float64) * 10
    teacher = direction + 0.1 * torch.tensor([[1.0, 0, 0, 0, 0, 0]] * 3 + [[0, 1.0, 0, 0, 0, 0]] * 3).double()
    teacher = teacher + 0.001 * torch.randn(6, 6, dtype=torch.float64)
    plain = ContextualSimilarity(k=3, contextual_weight=0.0)(teacher)
    centred = ContextualSimilarity(k=3, contextual_weight=0.0, center=True)(teacher)
    assert plain.min() > 0.99
    assert centred[0, 1] > 0.9 and centred[0, 4] < 0.05  # same group vs other group


def test_center_on_one_item_is_finite():
    w = ContextualSimilarity(k=2, center=True)(torch.randn(1, 3))
    assert torch.isfinite(w).all()


def test_errors():
    with pytest.raises(ValueError, match="k must be >= 1; got 0"):
        ContextualSimilarity(k=0)
    with pytest.raises(TypeError, match="k must be an int >= 1; got float"):
        ContextualSimilarity(k=2.5)
    with pytest.raises(ValueError, match="query_expansion_k must be >= 1"):
        ContextualSimilarity(query_expansion_k=0)
    with pytest.raises(ValueError, match="contextual_weight must be in"):
        ContextualSimilarity(contextual_weight=1.5)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ContextualSimilarity(sigma=0)
    with pytest.raises(TypeError, match="labels_mark_views must be a bool"):
        ContextualSimilarity(labels_mark_views=1)
    with pytest.raises(TypeError, match="center must be a bool"):
        ContextualSimilarity(center=1)
    with pytest.raises(ValueError, match="teacher_ref_emb=None"):
        ContextualSimilarity()(torch.randn(4, 2), torch.randn(3, 2))
    mixed = MixedSimilarity(ContextualSimilarity(), GaussianKernel())
    with pytest.raises(ValueError, match="teacher_ref_emb=None"):
        mixed(torch.randn(4, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="supports_blocks=False"):
        RelaxedContrastiveLoss(similarity=ContextualSimilarity(), block_size=4)


def test_row_blocks_are_fresh_tensors():
    teacher = torch.randn(6, 3, dtype=torch.float64)
    rows = ContextualSimilarity(k=2).rows(TeacherInputs(teacher))
    first = rows(0, 3)
    first[:] = 7
    assert torch.equal(rows(0, 3), ContextualSimilarity(k=2)(teacher)[:3])
