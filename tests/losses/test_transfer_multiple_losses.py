import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, MultipleLosses, MultiSimilarityLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner

from pml_relaxed.losses import (
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    TransferCrossBatchMemory,
    TransferMultipleLosses,
)
from pml_relaxed.miners import TeacherSimilarityMiner

f64 = torch.float64


def inputs(n=12, m=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, 6, dtype=f64, generator=gen).requires_grad_()
    teacher = torch.randn(n, 9, dtype=f64, generator=gen)
    labels = torch.arange(n) % 3
    if m is None:
        return student, teacher, labels
    ref = torch.randn(m, 6, dtype=f64, generator=gen).requires_grad_()
    ref_teacher = torch.randn(m, 9, dtype=f64, generator=gen)
    return student, teacher, labels, ref, ref_teacher, torch.arange(m) % 3


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_list_form_equals_the_weighted_sum_teacher_only_where_read():
    student, teacher, labels = inputs()
    relaxed, contrastive, ms = RelaxedContrastiveLoss(sigma=0.5), ContrastiveLoss(), MultiSimilarityLoss()
    teacher_miner = TeacherSimilarityMiner(pos_topk=2)
    loss_fn = TransferMultipleLosses(
        [relaxed, contrastive, ms], miners=[None, teacher_miner, None], weights=[1.0, 0.5, 0.25]
    )
    loss = loss_fn(student, labels, teacher_emb=teacher)
    pairs = teacher_miner(student, labels, teacher_emb=teacher)
    expected = (
        relaxed(student, labels, teacher_emb=teacher)
        + 0.5 * contrastive(student, labels, pairs)
        + 0.25 * ms(student, labels)
    )
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(loss, student), grads(expected, student), rtol=1e-10, atol=1e-12)
    assert loss_fn.teacher_readers == ["losses[0] (RelaxedContrastiveLoss)", "miners[1] (TeacherSimilarityMiner)"]


def test_dict_form_with_a_reference_set_passes_teacher_ref_emb():
    student, teacher, labels, ref, ref_teacher, ref_labels = inputs(8, 11, seed=1)
    relaxed, contrastive = RelaxedMultiSimilarityLoss(), ContrastiveLoss()
    teacher_miner, label_miner = TeacherSimilarityMiner(pos_topk=3), MultiSimilarityMiner(epsilon=0.5)
    loss_fn = TransferMultipleLosses(
        {"relaxed": relaxed, "pairs": contrastive, "labels": MultiSimilarityLoss()},
        miners={"pairs": teacher_miner, "labels": label_miner},
        weights={"relaxed": 2.0, "pairs": 1.0, "labels": 0.0},
    )
    loss = loss_fn(student, labels, None, ref, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    pairs = teacher_miner(student, labels, ref, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    expected = 2.0 * relaxed(
        student, labels, None, ref, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher
    ) + contrastive(student, labels, pairs, ref, ref_labels)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(loss, student, ref), grads(expected, student, ref), rtol=1e-10, atol=1e-12)


def test_indices_tuple_goes_to_every_loss_without_miners():
    student, teacher, labels = inputs(seed=2)
    pairs = MultiSimilarityMiner(epsilon=0.3)(student, labels)
    relaxed, contrastive = RelaxedContrastiveLoss(), ContrastiveLoss()
    loss = TransferMultipleLosses([relaxed, contrastive])(student, labels, pairs, teacher_emb=teacher)
    expected = relaxed(student, labels, pairs, teacher_emb=teacher) + contrastive(student, labels, pairs)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(loss, relaxed(student, teacher_emb=teacher) + contrastive(student, labels))


def test_without_teacher_readers_it_is_pml_multiple_losses():
    student, _, labels = inputs(seed=3)
    members = [ContrastiveLoss(), MultiSimilarityLoss()]
    miners = [MultiSimilarityMiner(epsilon=0.2), None]
    ours = TransferMultipleLosses(members, miners=miners, weights=[0.3, 1.2])(student, labels)
    pml = MultipleLosses(members, miners=miners, weights=[0.3, 1.2])(student, labels)
    torch.testing.assert_close(ours, pml, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(ours, student), grads(pml, student), rtol=1e-10, atol=1e-12)


def test_cross_batch_memory_as_a_member():
    student, teacher, labels = inputs(seed=4)
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), 6, 9, memory_size=30)
    twin = TransferCrossBatchMemory(RelaxedContrastiveLoss(), 6, 9, memory_size=30)
    loss_fn = TransferMultipleLosses({"memory": xbm, "labels": MultiSimilarityLoss()})
    for step in range(3):
        student, teacher, labels = inputs(seed=10 + step)
        loss = loss_fn(student, labels, teacher_emb=teacher)
        expected = twin(student, labels, teacher_emb=teacher) + MultiSimilarityLoss()(student, labels)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert xbm.queue_idx == twin.queue_idx == 6


class TeacherOnlyLoss(torch.nn.Module):
    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, *, teacher_emb):
        return (embeddings.sum(1) * teacher_emb.sum(1)).mean()


def test_bad_forward_inputs():
    student, teacher, labels, ref, ref_teacher, ref_labels = inputs(8, 5)
    loss_fn = TransferMultipleLosses(
        [RelaxedContrastiveLoss(), ContrastiveLoss()], miners=[None, TeacherSimilarityMiner()]
    )
    with pytest.raises(
        ValueError,
        match=r"teacher_emb is required: losses\[0\] \(RelaxedContrastiveLoss\), "
        r"miners\[1\] \(TeacherSimilarityMiner\) read\(s\) the teacher",
    ):
        loss_fn(student, labels)
    with pytest.raises(ValueError, match="indices_tuple and miners are mutually exclusive"):
        loss_fn(student, labels, MultiSimilarityMiner()(student, labels), teacher_emb=teacher)
    with pytest.raises(ValueError, match="teacher_ref_emb was given without ref_emb"):
        loss_fn(student, labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    with pytest.raises(ValueError, match="teacher_ref_emb is required: ref_emb was given"):
        loss_fn(student, labels, None, ref, ref_labels, teacher_emb=teacher)
    label_only = TransferMultipleLosses([ContrastiveLoss()])
    with pytest.raises(
        ValueError,
        match=r"teacher_emb was given, but no loss or miner takes it \(losses\[0\] "
        r"\(ContrastiveLoss\)\), so the teacher would be dropped",
    ):
        label_only(student, labels, teacher_emb=teacher)
    with_memory = TransferMultipleLosses([TransferCrossBatchMemory(RelaxedContrastiveLoss(), 6, 9)])
    with pytest.raises(ValueError, match=r"losses\[0\] \(TransferCrossBatchMemory\) takes no ref_emb"):
        with_memory(student, labels, None, ref, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    with pytest.raises(ValueError, match="TeacherOnlyLoss takes teacher_emb but no teacher_ref_emb"):
        TransferMultipleLosses([TeacherOnlyLoss()])(
            student, labels, None, ref, ref_labels, teacher_emb=teacher, teacher_ref_emb=ref_teacher
        )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            {"losses": ContrastiveLoss()},
            TypeError,
            "losses must be a list, tuple or dict of losses; got ContrastiveLoss",
        ),
        ({"losses": []}, ValueError, "losses must hold at least one loss; got an empty collection"),
        ({"losses": [ContrastiveLoss(), "x"]}, TypeError, r"losses\[1\] must be a torch.nn.Module \(a loss\); got str"),
        (
            {"losses": [ContrastiveLoss()], "miners": {"a": None}},
            TypeError,
            r"miners must be a list or tuple like losses \(losses is a list\); got dict",
        ),
        (
            {"losses": [ContrastiveLoss()], "miners": [None, None]},
            ValueError,
            "miners must have one entry per loss: expected 1, got 2",
        ),
        (
            {"losses": [ContrastiveLoss()], "miners": [len]},
            TypeError,
            r"miners\[0\] must be a torch.nn.Module \(a miner\) or None; got builtin_function_or_method",
        ),
        (
            {"losses": {"a": ContrastiveLoss()}, "miners": [None]},
            TypeError,
            r"miners must be a dict keyed like losses \(losses is a dict\); got list",
        ),
        (
            {"losses": {"a": ContrastiveLoss()}, "miners": {"b": MultiSimilarityMiner()}},
            ValueError,
            r"miners must have keys among those of losses \(\['a'\]\); got unknown keys \['b'\]",
        ),
        (
            {"losses": {"a": ContrastiveLoss(), "b": ContrastiveLoss()}, "weights": {"a": 1.0}},
            ValueError,
            r"weights must have the same keys as losses .*missing keys \['b'\]",
        ),
        ({"losses": [ContrastiveLoss()], "weights": [-1.0]}, ValueError, r"weights\[0\] must be >= 0; got -1.0"),
        (
            {"losses": {"a": ContrastiveLoss()}, "weights": {"a": "1"}},
            TypeError,
            r"weights\['a'\] must be a real number; got str",
        ),
    ],
)
def test_bad_construction_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TransferMultipleLosses(**kwargs)
