"""TransferCrossBatchMemory against explicit computations: a chronological record of every enqueued row
(independent of the ring buffer) gives the reference set, the pairs and the self pairs of each step."""

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ContrastiveLoss, CrossBatchMemory, ProxyAnchorLoss, TripletMarginLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner

from pml_relaxed._teacher import takes_teacher
from pml_relaxed.losses import (
    DarkRankLoss,
    FitNetLoss,
    PKTLoss,
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    RKDLoss,
    TransferCrossBatchMemory,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import LabelSimilarity
from pml_relaxed.trainers import embedding_transfer

f64 = torch.float64
D_STUDENT, D_TEACHER = 5, 7


def batches(num_steps, batch_size, num_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(num_steps):
        student = torch.randn(batch_size, D_STUDENT, dtype=f64, generator=gen).requires_grad_()
        teacher = torch.randn(batch_size, D_TEACHER, dtype=f64, generator=gen)
        labels = torch.randint(0, num_classes, (batch_size,), generator=gen)
        yield student, teacher, labels


class History:
    """Every enqueued row in order; the memory is the last ``memory_size`` of them."""

    def __init__(self, memory_size):
        self.memory_size = memory_size
        self.student, self.teacher, self.labels = [], [], []

    def enqueue(self, student, teacher, labels):
        self.student += list(student.detach())
        self.teacher += list(teacher)
        self.labels += list(labels)

    def reference(self):
        keep = slice(max(0, len(self.student) - self.memory_size), None)
        return (torch.stack(self.student[keep]), torch.stack(self.teacher[keep]), torch.stack(self.labels[keep]))


def label_free_steps(xbm, num_steps, batch_size, seed):
    """Runs xbm on label-free batches; yields each step's loss, inputs and chronological reference set."""
    history = History(xbm.memory_size)
    for student, teacher, _ in batches(num_steps, batch_size, seed=seed):
        loss = xbm(student, teacher_emb=teacher)
        history.enqueue(student, teacher, torch.zeros(batch_size, dtype=torch.long))
        ref, teacher_ref, _ = history.reference()
        yield loss, student, teacher, ref, teacher_ref


def explicit_relaxed(query, teacher, ref, teacher_ref, keep, kind, sigma=1.0, delta=1.0, alpha=1.0, beta=2.0):
    """The relaxed losses from their formulas; the row mean runs over all reference columns."""
    sq = ((query[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    dist = torch.where(sq > 0, sq.clamp_min(1e-300).sqrt(), torch.zeros_like(sq))
    d = dist / dist.mean(1, keepdim=True)
    t, t_ref = F.normalize(teacher, dim=1), F.normalize(teacher_ref, dim=1)
    w = torch.exp(-((t[:, None, :] - t_ref[None, :, :]) ** 2).sum(-1) / sigma)
    keep = keep.to(f64)
    if kind == "contrastive":
        per_pair = w * d**2 + (1 - w) * torch.clamp(delta - d, min=0) ** 2
        return (per_pair * keep).sum(1).mean()
    pos = torch.log(1 + (keep * w * torch.exp(alpha * d)).sum(1)) / alpha
    neg = torch.log(1 + (keep * (1 - w) * torch.exp(beta * (delta - d))).sum(1)) / beta
    return (pos + neg).mean()


def pairs_except(keep):
    anchors, partners = torch.where(keep)
    return anchors, partners, anchors[:0], partners[:0]


def self_mask(num_queries, num_refs):
    """True at (i, position of query i's own copy): the current batch is the last num_queries references."""
    mask = torch.zeros(num_queries, num_refs, dtype=torch.bool)
    mask[torch.arange(num_queries), num_refs - num_queries + torch.arange(num_queries)] = True
    return mask


def grad_of(loss, tensor):
    return torch.autograd.grad(loss, tensor)[0]


LOSSES = {"contrastive": RelaxedContrastiveLoss, "multi_similarity": RelaxedMultiSimilarityLoss}


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("memory_size,batch_size", [(20, 6), (45, 16)])  # no multiple: wraps around mid-batch
def test_equals_explicit_reference_over_steps_with_wraparound(kind, with_labels, memory_size, batch_size):
    loss_fn = LOSSES[kind]()
    xbm = TransferCrossBatchMemory(loss_fn, D_STUDENT, D_TEACHER, memory_size=memory_size)
    history = History(memory_size)
    for step, (student, teacher, labels) in enumerate(batches(7, batch_size)):
        labels = labels if with_labels else None
        loss = xbm(student, labels, teacher_emb=teacher)
        history.enqueue(student, teacher, labels if with_labels else torch.zeros(batch_size, dtype=torch.long))
        ref, teacher_ref, ref_labels = history.reference()
        keep = ~self_mask(batch_size, ref.shape[0])
        # 1. the wrapped loss with ref_emb = memory, teacher_ref_emb = teacher memory, minus the self pairs
        wrapped = loss_fn(
            student,
            labels,
            pairs_except(keep),
            ref,
            ref_labels if with_labels else None,
            teacher_emb=teacher,
            teacher_ref_emb=teacher_ref,
        )
        # 2. the formula, independent of the library
        explicit = explicit_relaxed(student, teacher, ref, teacher_ref, keep, kind)
        torch.testing.assert_close(loss, wrapped, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss, explicit, rtol=1e-10, atol=1e-12)
        grad = grad_of(loss, student)
        torch.testing.assert_close(grad, grad_of(wrapped, student), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(grad, grad_of(explicit, student), rtol=1e-8, atol=1e-10)
        rows = batch_size * (step + 1)
        assert xbm.queue_idx == rows % memory_size
        assert xbm.has_been_filled == (rows >= memory_size)
        assert xbm.num_filled == ref.shape[0] == min(rows, memory_size)
        for age, row in enumerate(range(rows - ref.shape[0], rows)):  # the ring buffer holds the last rows
            torch.testing.assert_close(xbm.embedding_memory[row % memory_size], ref[age], rtol=0, atol=0)
            torch.testing.assert_close(xbm.teacher_memory[row % memory_size], teacher_ref[age], rtol=0, atol=0)
            if with_labels:
                assert xbm.label_memory[row % memory_size] == ref_labels[age]
    assert xbm.embedding_memory.dtype == f64 and not xbm.embedding_memory.requires_grad


@pytest.mark.parametrize("kind", list(LOSSES))
def test_first_step_equals_the_plain_loss_on_the_batch(kind):
    student, teacher, _ = next(batches(1, 8))
    xbm = TransferCrossBatchMemory(LOSSES[kind](), D_STUDENT, D_TEACHER, memory_size=32)
    loss = xbm(student, teacher_emb=teacher)
    plain = LOSSES[kind]()(student, teacher_emb=teacher)
    torch.testing.assert_close(loss, plain, rtol=1e-12, atol=1e-12)
    # The gradient is the queries' part only: the memory copy of the batch is detached (as in PML).
    explicit = explicit_relaxed(student, teacher, student.detach(), teacher, ~torch.eye(8, dtype=torch.bool), kind)
    grad = grad_of(loss, student)
    torch.testing.assert_close(grad, grad_of(explicit, student), rtol=1e-8, atol=1e-10)
    assert not torch.allclose(grad, grad_of(plain, student))


def test_self_pairs_of_an_appended_indices_tuple_are_removed_too():
    student, teacher, _ = next(batches(1, 6, seed=11))
    xbm = TransferCrossBatchMemory(RelaxedMultiSimilarityLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    self_pairs = (torch.tensor([0, 3]), torch.tensor([0, 3]), torch.tensor([1]), torch.tensor([1]))  # slots 0..5
    loss = xbm(student, indices_tuple=self_pairs, teacher_emb=teacher)
    torch.testing.assert_close(loss, RelaxedMultiSimilarityLoss()(student, teacher_emb=teacher), rtol=1e-12, atol=0)


def test_enqueue_mask_queries_are_not_enqueued_and_have_no_self_pair():
    memory_size, batch_size = 9, 6
    loss_fn = RelaxedContrastiveLoss(sigma=0.7)
    xbm = TransferCrossBatchMemory(loss_fn, D_STUDENT, D_TEACHER, memory_size=memory_size)
    history = History(memory_size)
    mask = torch.tensor([True, False, True, True, False, False])
    for student, teacher, labels in batches(5, batch_size, seed=3):  # 3 rows per step: wraps at step 3
        loss = xbm(student, labels, enqueue_mask=mask, teacher_emb=teacher)
        history.enqueue(student[mask], teacher[mask], labels[mask])
        ref, teacher_ref, ref_labels = history.reference()
        query, query_teacher = student[~mask], teacher[~mask]
        keep = torch.ones(3, ref.shape[0], dtype=torch.bool)
        wrapped = loss_fn(
            query,
            labels[~mask],
            pairs_except(keep),
            ref,
            ref_labels,
            teacher_emb=query_teacher,
            teacher_ref_emb=teacher_ref,
        )
        explicit = explicit_relaxed(query, query_teacher, ref, teacher_ref, keep, "contrastive", sigma=0.7)
        torch.testing.assert_close(loss, wrapped, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss, explicit, rtol=1e-10, atol=1e-12)
        grad = grad_of(loss, student)
        assert not grad[mask].any(), "enqueued rows are references only (detached)"
        torch.testing.assert_close(grad, grad_of(explicit, student), rtol=1e-8, atol=1e-10)
    assert xbm.queue_idx == 15 % memory_size and xbm.has_been_filled


def test_empty_enqueue_keeps_the_queue_and_an_empty_memory_gives_zero():
    student, teacher, _ = next(batches(1, 4))
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=8)
    loss = xbm(student, enqueue_mask=torch.zeros(4, dtype=torch.bool), teacher_emb=teacher)
    assert loss.item() == 0 and loss.requires_grad
    assert xbm.queue_idx == 0 and not xbm.has_been_filled and xbm.num_filled == 0
    xbm(student, teacher_emb=teacher)
    xbm(student, enqueue_mask=torch.zeros(4, dtype=torch.bool), teacher_emb=teacher)
    assert xbm.queue_idx == 4 and not xbm.has_been_filled


class RecordingTeacherMiner(TeacherSimilarityMiner):
    def forward(
        self, embeddings, labels=None, ref_emb=None, ref_labels=None, *, teacher_emb=None, teacher_ref_emb=None
    ):
        self.inputs = (
            (embeddings, labels, ref_emb, ref_labels),
            {"teacher_emb": teacher_emb, "teacher_ref_emb": teacher_ref_emb},
        )
        return super().forward(
            embeddings, labels, ref_emb, ref_labels, teacher_emb=teacher_emb, teacher_ref_emb=teacher_ref_emb
        )


def test_teacher_miner_gets_the_teacher_memory_and_its_self_pairs_are_removed():
    memory_size, batch_size = 14, 5
    miner = RecordingTeacherMiner(pos_topk=3, neg_threshold=0.3)
    loss_fn = RelaxedContrastiveLoss()
    xbm = TransferCrossBatchMemory(loss_fn, D_STUDENT, D_TEACHER, memory_size=memory_size, miner=miner)
    for loss, student, teacher, ref, teacher_ref in label_free_steps(xbm, 5, batch_size, seed=4):
        args, kwargs = miner.inputs
        assert torch.equal(kwargs["teacher_emb"], teacher) and args[1] is None and args[3] is None
        assert sorted(map(tuple, kwargs["teacher_ref_emb"].tolist())) == sorted(map(tuple, teacher_ref.tolist()))
        # Mine on the chronological memory, then drop the self pairs: the self copy is every query's top positive.
        a1, p, a2, n = TeacherSimilarityMiner(pos_topk=3, neg_threshold=0.3)(
            student, None, ref, None, teacher_emb=teacher, teacher_ref_emb=teacher_ref
        )
        own = self_mask(batch_size, ref.shape[0])
        assert own[a1, p].sum() == batch_size and not own[a2, n].any()
        positives, negatives = ~own[a1, p], ~own[a2, n]
        expected_pairs = (a1[positives], p[positives], a2[negatives], n[negatives])
        keep = torch.zeros_like(own)
        keep[expected_pairs[0], expected_pairs[1]] = True
        keep[expected_pairs[2], expected_pairs[3]] = True
        wrapped = loss_fn(student, None, expected_pairs, ref, None, teacher_emb=teacher, teacher_ref_emb=teacher_ref)
        explicit = explicit_relaxed(student, teacher, ref, teacher_ref, keep, "contrastive")
        torch.testing.assert_close(loss, wrapped, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss, explicit, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_of(loss, student), grad_of(explicit, student), rtol=1e-8, atol=1e-10)
        assert len(expected_pairs[0]) == 2 * batch_size  # pos_topk=3 minus the self copy


def test_pml_pair_loss_with_label_miner_equals_pml_cross_batch_memory():
    """With LabelSimilarity and pos_threshold=1, TeacherSimilarityMiner mines PML's all-pairs from labels."""
    memory_size, batch_size = 16, 6
    miner = TeacherSimilarityMiner(pos_topk=None, pos_threshold=1.0, similarity=LabelSimilarity())
    ours = TransferCrossBatchMemory(ContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=memory_size, miner=miner)
    pml = CrossBatchMemory(ContrastiveLoss(), D_STUDENT, memory_size=memory_size)
    for step, (student, teacher, labels) in enumerate(batches(6, batch_size, seed=5)):
        extra = None
        if step == 4:  # extra pairs, none of them a self pair: PML keeps them as they are, as we do
            extra = (torch.tensor([0, 1]), torch.tensor([0, 3]), torch.tensor([2]), torch.tensor([0]))
        loss = ours(student, labels, extra, teacher_emb=teacher)
        twin = student.detach().clone().requires_grad_()
        expected = pml(twin, labels, extra)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_of(loss, student), grad_of(expected, twin), rtol=1e-8, atol=1e-12)
        assert ours.queue_idx == pml.queue_idx and ours.has_been_filled == pml.has_been_filled
    assert loss > 0


@pytest.mark.parametrize("loss_fn", [ContrastiveLoss(), TripletMarginLoss(margin=0.5)], ids=lambda x: type(x).__name__)
def test_pml_pair_loss_label_free_with_teacher_miner(loss_fn):
    memory_size, batch_size = 12, 5
    miner = TeacherSimilarityMiner(pos_topk=2)
    xbm = TransferCrossBatchMemory(loss_fn, D_STUDENT, D_TEACHER, memory_size=memory_size, miner=miner)
    for loss, student, teacher, ref, teacher_ref in label_free_steps(xbm, 4, batch_size, seed=6):
        a1, p, a2, n = miner(student, None, ref, None, teacher_emb=teacher, teacher_ref_emb=teacher_ref)
        own = self_mask(batch_size, ref.shape[0])
        kept = ~own[a1, p]
        wrapped = loss_fn(student, None, (a1[kept], p[kept], a2, n), ref, None)
        torch.testing.assert_close(loss, wrapped, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_of(loss, student), grad_of(wrapped, student), rtol=1e-8, atol=1e-12)
    assert loss > 0


class EveryPairMiner(torch.nn.Module):
    """Returns every (query, reference) pair as a negative, or every triplet: self pairs included."""

    def __init__(self, triplets):
        super().__init__()
        self.triplets = triplets

    def forward(
        self, embeddings, labels=None, ref_emb=None, ref_labels=None, *, teacher_emb=None, teacher_ref_emb=None
    ):
        n, m = embeddings.shape[0], ref_emb.shape[0]
        if self.triplets:
            a, p, q = torch.meshgrid(torch.arange(n), torch.arange(m), torch.arange(m), indexing="ij")
            distinct = p != q
            return a[distinct], p[distinct], q[distinct]
        a, other = torch.where(torch.ones(n, m, dtype=torch.bool))
        return a[:0], other[:0], a, other


@pytest.mark.parametrize("triplets", [False, True])
def test_self_pairs_are_removed_from_negatives_and_triplets(triplets):
    memory_size, batch_size = 10, 4
    loss_fn = RelaxedMultiSimilarityLoss()  # a self pair would add exp terms: its removal shows in the value
    xbm = TransferCrossBatchMemory(loss_fn, D_STUDENT, D_TEACHER, memory_size, miner=EveryPairMiner(triplets))
    for loss, student, teacher, ref, teacher_ref in label_free_steps(xbm, 4, batch_size, seed=10):
        keep = ~self_mask(batch_size, ref.shape[0])
        explicit = explicit_relaxed(student, teacher, ref, teacher_ref, keep, "multi_similarity")
        torch.testing.assert_close(loss, explicit, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_of(loss, student), grad_of(explicit, student), rtol=1e-8, atol=1e-10)


def test_reset_queue_empties_the_memory():
    gen = batches(3, 6, seed=8)
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    for student, teacher, _ in list(gen)[:2]:
        xbm(student, teacher_emb=teacher)
    assert xbm.has_been_filled
    xbm.reset_queue()
    assert xbm.queue_idx == 0 and not xbm.has_been_filled and not xbm.embedding_memory.any()
    assert not xbm.teacher_memory.any() and xbm.memory_has_labels is None
    student, teacher, labels = next(batches(1, 6, seed=9))
    plain = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
    torch.testing.assert_close(xbm(student, labels, teacher_emb=teacher), plain, rtol=1e-12, atol=1e-12)


def test_a_failing_loss_leaves_the_memory_unchanged():
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(similarity=LabelSimilarity()), D_STUDENT, D_TEACHER, 8)
    student, teacher, labels = next(batches(1, 4))
    with pytest.raises(ValueError, match="labels"):
        xbm(student, teacher_emb=teacher)
    assert xbm.queue_idx == 0 and xbm.num_filled == 0 and not xbm.embedding_memory.any()
    assert torch.isfinite(xbm(student, labels, teacher_emb=teacher))
    assert xbm.queue_idx == 4


def test_takes_teacher_and_buffers():
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=6)
    assert takes_teacher(xbm) and embedding_transfer.takes_teacher(xbm)
    memories = {"embedding_memory", "teacher_memory", "label_memory"}
    assert set(dict(xbm.named_buffers())) == memories | {"_queue_idx", "_has_been_filled", "_memory_has_labels"}
    assert xbm.teacher_memory.shape == (6, D_TEACHER) and xbm.embedding_memory.shape == (6, D_STUDENT)


def test_state_dict_holds_the_queue_position():
    """A memory loaded from another's state_dict continues exactly as the original: same slots, same losses."""
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    steps = list(batches(5, 4, seed=3))
    for student, teacher, labels in steps[:3]:  # 12 rows: wrapped around, next slot 2
        xbm(student, labels, teacher_emb=teacher)
    state = xbm.state_dict()
    assert (int(state["_queue_idx"]), bool(state["_has_been_filled"]), int(state["_memory_has_labels"])) == (2, 1, 1)
    resumed = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    resumed.load_state_dict(state)
    assert (resumed.queue_idx, resumed.has_been_filled, resumed.memory_has_labels) == (2, True, True)
    assert resumed.embedding_memory.dtype == f64, "the memory keeps the saved dtype (not the new float32 buffers')"
    for student, teacher, labels in steps[3:]:
        assert torch.equal(resumed(student, labels, teacher_emb=teacher), xbm(student, labels, teacher_emb=teacher))
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), xbm.state_dict().values()))
    moved = resumed.to(f64)  # float conversions leave the position alone
    assert moved._queue_idx.dtype == torch.long and moved.queue_idx == xbm.queue_idx == 0  # 20 rows


def test_a_state_dict_without_the_position_fails_strictly_and_loads_otherwise():
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    student, teacher, _ = next(batches(1, 4))
    xbm(student, teacher_emb=teacher)
    old = {k: v for k, v in xbm.state_dict().items() if not k.startswith("_")}  # what earlier versions saved
    fresh = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=10)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "_queue_idx", "_has_been_filled"'):
        fresh.load_state_dict(old)
    fresh.load_state_dict(old, strict=False)
    assert torch.equal(fresh.embedding_memory, xbm.embedding_memory)
    assert (fresh.queue_idx, fresh.has_been_filled, fresh.memory_has_labels) == (0, False, None)


@pytest.mark.parametrize(
    "loss,match",
    [
        (FitNetLoss(), "does not support FitNetLoss: it regresses each sample's own teacher embedding"),
        (RKDLoss(), "does not support RKDLoss: .*self pairs of the current batch"),
        (PKTLoss(), "does not support PKTLoss: .*cannot be excluded"),
        (DarkRankLoss(), "does not support DarkRankLoss: its rank term ranks every reference"),
        ("ContrastiveLoss", "loss must be a torch.nn.Module"),
    ],
)
def test_unsupported_losses_are_refused_at_construction(loss, match):
    with pytest.raises(TypeError, match=match):
        TransferCrossBatchMemory(loss, D_STUDENT, D_TEACHER)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="ProxyAnchorLoss takes no teacher_emb, so it must be a pair or triplet loss"):
        TransferCrossBatchMemory(ProxyAnchorLoss(3, D_STUDENT), D_STUDENT, D_TEACHER, miner=TeacherSimilarityMiner())
    with pytest.raises(ValueError, match="neither loss ContrastiveLoss nor the miner takes teacher_emb.*got no miner"):
        TransferCrossBatchMemory(ContrastiveLoss(), D_STUDENT, D_TEACHER)
    with pytest.raises(ValueError, match="teacher memory would go unused.*got miner MultiSimilarityMiner"):
        TransferCrossBatchMemory(ContrastiveLoss(), D_STUDENT, D_TEACHER, miner=MultiSimilarityMiner())
    with pytest.raises(TypeError, match="miner must be a torch.nn.Module .* or None; got function"):
        TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, miner=lambda *a: None)
    with pytest.raises(ValueError, match="embedding_size is required"):
        TransferCrossBatchMemory(RelaxedContrastiveLoss(), None, D_TEACHER)
    with pytest.raises(ValueError, match="teacher_embedding_size must be >= 1; got 0"):
        TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, 0)
    with pytest.raises(TypeError, match=r"memory_size must be an int >= 1 or None; got float \(16.0\)"):
        TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=16.0)


def test_bad_forward_inputs():
    xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, memory_size=6)
    student, teacher, labels = next(batches(1, 4))
    with pytest.raises(ValueError, match="teacher_emb is required"):
        xbm(student)
    with pytest.raises(ValueError, match=r"embeddings must have embedding_size=5 columns \(the memory's\); got 3"):
        xbm(torch.randn(4, 3, dtype=f64), teacher_emb=teacher)
    with pytest.raises(ValueError, match="teacher_emb must have teacher_embedding_size=7 columns"):
        xbm(student, teacher_emb=torch.randn(4, 2, dtype=f64))
    with pytest.raises(ValueError, match="teacher_emb must have one row per row of embeddings: expected 4 rows, got 3"):
        xbm(student, teacher_emb=teacher[:3])
    with pytest.raises(ValueError, match=r"labels must be a 1D tensor with one label per row of embeddings"):
        xbm(student, labels[:2], teacher_emb=teacher)
    with pytest.raises(TypeError, match=r"enqueue_mask must be a 1D bool tensor of shape \(4,\); got a 1D tensor"):
        xbm(student, enqueue_mask=torch.ones(4), teacher_emb=teacher)
    with pytest.raises(ValueError, match=r"enqueue_mask must have one entry per row of embeddings.*got \(3,\)"):
        xbm(student, enqueue_mask=torch.ones(3, dtype=torch.bool), teacher_emb=teacher)
    pairs = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(ValueError, match="indices_tuple and enqueue_mask are mutually exclusive"):
        xbm(student, indices_tuple=pairs, enqueue_mask=torch.ones(4, dtype=torch.bool), teacher_emb=teacher)
    with pytest.raises(TypeError, match="indices_tuple must be PML pairs .* got a tuple of length 2"):
        xbm(student, indices_tuple=pairs[:2], teacher_emb=teacher)
    with pytest.raises(TypeError, match=r"indices_tuple\[1\] must be a 1D integer tensor; got a 1D tensor .*float"):
        xbm(student, indices_tuple=(pairs[0], pairs[1].double(), pairs[2]), teacher_emb=teacher)
    with pytest.raises(ValueError, match="at most memory_size=6 rows can be enqueued per call; got 8"):
        xbm(torch.randn(8, D_STUDENT, dtype=f64), teacher_emb=torch.randn(8, D_TEACHER, dtype=f64))
    assert xbm.queue_idx == 0, "a rejected call changes nothing"
    xbm(student, labels, teacher_emb=teacher)
    with pytest.raises(ValueError, match="memory holds rows enqueued with labels, so labels must be given on every"):
        xbm(student, teacher_emb=teacher)
    label_miner_xbm = TransferCrossBatchMemory(
        RelaxedContrastiveLoss(), D_STUDENT, D_TEACHER, 6, miner=MultiSimilarityMiner()
    )
    with pytest.raises(ValueError, match="miner MultiSimilarityMiner takes no teacher_emb, so it mines from labels"):
        label_miner_xbm(student, teacher_emb=teacher)
