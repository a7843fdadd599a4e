import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, MultiSimilarityLoss

from pml_relaxed.losses import (
    DarkRankLoss,
    FitNetLoss,
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    TransferCrossBatchMemory,
    TransferMultipleLosses,
    TransferSelfSupervisedLoss,
)
from pml_relaxed.similarities import LabelSimilarity
from tests.helpers.reference import loop_relaxed_contrastive, loop_relaxed_multi_similarity

f64 = torch.float64


def views(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    view1 = torch.randn(n, 4, dtype=f64, generator=gen).requires_grad_()
    view2 = (view1.detach() + 0.3 * torch.randn(n, 4, dtype=f64, generator=gen)).requires_grad_()
    teacher1 = torch.randn(n, 10, dtype=f64, generator=gen)
    teacher2 = teacher1 + 0.1 * torch.randn(n, 10, dtype=f64, generator=gen)
    return view1, view2, teacher1, teacher2


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def twins(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


@pytest.mark.parametrize(
    "loss_class,loop",
    [(RelaxedContrastiveLoss, loop_relaxed_contrastive), (RelaxedMultiSimilarityLoss, loop_relaxed_multi_similarity)],
)
def test_symmetric_is_the_loss_on_the_2n_batch_of_both_views(loss_class, loop):
    view1, view2, teacher1, teacher2 = views()
    loss = TransferSelfSupervisedLoss(loss_class())(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
    ref1, ref2 = twins(view1, view2)
    expected = loop(torch.cat([ref1, ref2]), torch.cat([teacher1, teacher2]))
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads(loss, view1, view2), grads(expected, ref1, ref2)):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(
    "loss_class,loop",
    [(RelaxedContrastiveLoss, loop_relaxed_contrastive), (RelaxedMultiSimilarityLoss, loop_relaxed_multi_similarity)],
)
def test_asymmetric_uses_view_two_as_the_reference_set(loss_class, loop):
    view1, view2, teacher1, teacher2 = views(seed=1)
    loss_fn = TransferSelfSupervisedLoss(loss_class(), symmetric=False)
    loss = loss_fn(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
    ref1, ref2 = twins(view1, view2)
    expected = loop(ref1, teacher1, ref_student=ref2, ref_teacher=teacher2)  # n x n pairs, (i, i) included
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads(loss, view1, view2), grads(expected, ref1, ref2)):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_generated_labels_mark_the_two_views_of_a_sample():
    view1, view2, teacher1, teacher2 = views(n=5, seed=2)
    loss_fn = TransferSelfSupervisedLoss(RelaxedContrastiveLoss(similarity=LabelSimilarity()))
    loss = loss_fn(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
    same_sample = (torch.arange(10)[:, None] % 5 == torch.arange(10)[None, :] % 5).double()
    expected = loop_relaxed_contrastive(
        torch.cat([view1, view2]), torch.cat([teacher1, teacher2]), weights=same_sample.tolist()
    )
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)


def test_wraps_the_combinators_and_dark_rank_with_its_triplet_term():
    view1, view2, teacher1, teacher2 = views(seed=3)
    combined = TransferMultipleLosses([RelaxedContrastiveLoss(), MultiSimilarityLoss()], weights=[1.0, 0.5])
    loss = TransferSelfSupervisedLoss(combined)(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
    both, labels = torch.cat([view1, view2]), torch.arange(6).repeat(2)
    expected = RelaxedContrastiveLoss()(
        both, teacher_emb=torch.cat([teacher1, teacher2])
    ) + 0.5 * MultiSimilarityLoss()(both, labels)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    dark_rank = DarkRankLoss(normalize_embeddings=True)
    loss = TransferSelfSupervisedLoss(dark_rank, symmetric=False)(
        view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2
    )
    expected = dark_rank(
        view1, torch.arange(6), None, view2, torch.arange(6), teacher_emb=teacher1, teacher_ref_emb=teacher2
    )
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    memory = TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 10, memory_size=24)
    loss = TransferSelfSupervisedLoss(memory)(view1, view2, teacher_emb=teacher1, teacher_ref_emb=teacher2)
    assert memory.queue_idx == 12 and torch.equal(memory.label_memory[:12], torch.arange(6).repeat(2))
    torch.testing.assert_close(loss, RelaxedContrastiveLoss()(both, teacher_emb=torch.cat([teacher1, teacher2])))


def test_bad_arguments():
    with pytest.raises(TypeError, match="loss must be a torch.nn.Module"):
        TransferSelfSupervisedLoss("RelaxedContrastiveLoss")
    with pytest.raises(TypeError, match="loss ContrastiveLoss takes no teacher_emb.*use PML's SelfSupervisedLoss"):
        TransferSelfSupervisedLoss(ContrastiveLoss())
    with pytest.raises(TypeError, match=r"symmetric must be a bool; got int \(1\)"):
        TransferSelfSupervisedLoss(RelaxedContrastiveLoss(), symmetric=1)
    for loss in (FitNetLoss(), TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 10)):
        with pytest.raises(ValueError, match=f"symmetric=False .* {type(loss).__name__} takes none"):
            TransferSelfSupervisedLoss(loss, symmetric=False)
    view1, view2, teacher1, teacher2 = views()
    loss_fn = TransferSelfSupervisedLoss(RelaxedContrastiveLoss())
    with pytest.raises(ValueError, match="ref_emb must have one row per row of embeddings: expected 6 rows, got 5"):
        loss_fn(view1, view2[:5], teacher_emb=teacher1, teacher_ref_emb=teacher2[:5])
    with pytest.raises(ValueError, match="ref_emb must have the same dimension as embeddings"):
        loss_fn(view1, view2[:, :3], teacher_emb=teacher1, teacher_ref_emb=teacher2)
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(view1, view2, teacher_ref_emb=teacher2)
    with pytest.raises(ValueError, match="teacher_ref_emb is required: ref_emb was given"):
        loss_fn(view1, view2, teacher_emb=teacher1)
    with pytest.raises(TypeError, match="ref_emb must be a floating-point tensor"):
        loss_fn(view1, torch.arange(6)[:, None].repeat(1, 4), teacher_emb=teacher1, teacher_ref_emb=teacher2)
