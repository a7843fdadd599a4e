"""DistributedTransferLossWrapper on 2 gloo processes equals one process on the concatenated batch.

One spawn runs every scenario (``run_scenarios``): each rank embeds its rows with a small float64 linear
model wrapped in DistributedDataParallel, calls the wrapped loss and back-propagates. The tests check,
against the bare loss on the concatenated batch in this process: the loss value on every rank, the
model's gradients after DDP's averaging, and each rank's embedding gradient (W times its rows' share).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import (
    ContrastiveLoss,
    CrossBatchMemory,
    MarginLoss,
    MultiSimilarityLoss,
)
from pytorch_metric_learning.regularizers import LpRegularizer

from pml_relaxed.distributed import (
    DistributedTransferLossWrapper,
    DistributedTransferMinerWrapper,
)
from pml_relaxed.losses import (
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    RKDLoss,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from tests.distributed.dist_harness import run_world

IN_DIM, EMB_DIM, TEACHER_DIM, NUM_CLASSES = 5, 4, 6, 3
WORLD = 2


def relaxed_contrastive():
    return RelaxedContrastiveLoss()


def relaxed_ms():
    return RelaxedMultiSimilarityLoss(delta=0.8, alpha=2.0, beta=3.0)


def relaxed_with_regularizer():
    return RelaxedContrastiveLoss(embedding_regularizer=LpRegularizer(), embedding_reg_weight=0.1)


# name: (loss factory, efficient, rows per rank, labels?, miner efficient or None, reference rows per rank or None)
SCENARIOS = {}
for _eff in (False, True):
    _m = "efficient" if _eff else "full"
    SCENARIOS[f"rc-uneven-nolabels-{_m}"] = (relaxed_contrastive, _eff, (6, 4), False, None, None)
    SCENARIOS[f"rc-even-labels-{_m}"] = (relaxed_contrastive, _eff, (5, 5), True, None, None)
    SCENARIOS[f"rc-31rows-{_m}"] = (relaxed_contrastive, _eff, (17, 14), False, None, None)
    SCENARIOS[f"rms-uneven-labels-{_m}"] = (relaxed_ms, _eff, (7, 5), True, None, None)
    SCENARIOS[f"rms-uneven-nolabels-{_m}"] = (relaxed_ms, _eff, (3, 6), False, None, None)
    SCENARIOS[f"rc-regularizer-{_m}"] = (relaxed_with_regularizer, _eff, (6, 5), False, None, None)
    SCENARIOS[f"rc-ref-{_m}"] = (relaxed_contrastive, _eff, (4, 3), False, None, (3, 5))
    SCENARIOS[f"contrastive-labels-{_m}"] = (ContrastiveLoss, _eff, (6, 4), True, None, None)
    SCENARIOS[f"margin-divisor-labels-{_m}"] = (MarginLoss, _eff, (5, 6), True, None, None)
    SCENARIOS[f"multisimilarity-labels-{_m}"] = (MultiSimilarityLoss, _eff, (6, 5), True, None, None)
    for _miner_eff in (False, True):
        _mm = "efficient" if _miner_eff else "full"
        SCENARIOS[f"contrastive-miner-{_mm}-loss-{_m}"] = (ContrastiveLoss, _eff, (7, 4), False, _miner_eff, None)


def scenario_data(name: str):
    """Global inputs of a scenario, the same in every process."""
    _, _, sizes, with_labels, _, ref_sizes = SCENARIOS[name]
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    n = sum(sizes)
    data = {
        "inputs": torch.randn(n, IN_DIM, generator=gen, dtype=torch.float64),
        "teacher": torch.randn(n, TEACHER_DIM, generator=gen, dtype=torch.float64),
        "labels": torch.randint(0, NUM_CLASSES, (n,), generator=gen) if with_labels else None,
    }
    if ref_sizes is not None:
        m = sum(ref_sizes)
        data["ref_inputs"] = torch.randn(m, IN_DIM, generator=gen, dtype=torch.float64)
        data["ref_teacher"] = torch.randn(m, TEACHER_DIM, generator=gen, dtype=torch.float64)
    return data


def make_model():
    torch.manual_seed(0)
    return torch.nn.Linear(IN_DIM, EMB_DIM).double()


def rows(tensor, sizes, rank):
    if tensor is None:
        return None
    start = sum(sizes[:rank])
    return tensor[start : start + sizes[rank]]


def compute_loss(name, model, data, rank=None):
    """The scenario's loss: wrapped on rank ``rank`` (its rows), bare on the whole batch when rank is None."""
    loss_factory, efficient, sizes, _, miner_efficient, ref_sizes = SCENARIOS[name]
    local = (lambda t, s=sizes: t) if rank is None else (lambda t, s=sizes: rows(t, s, rank))
    local_ref = (lambda t: t) if rank is None else (lambda t: rows(t, ref_sizes, rank))
    loss_fn = loss_factory() if rank is None else DistributedTransferLossWrapper(loss_factory(), efficient=efficient)
    emb = model(local(data["inputs"]))
    emb.retain_grad()
    teacher, labels = local(data["teacher"]), local(data["labels"])
    if miner_efficient is not None:
        miner = TeacherSimilarityMiner(pos_topk=2)
        if rank is not None:
            miner = DistributedTransferMinerWrapper(miner, efficient=miner_efficient)
        pairs = miner(emb, teacher_emb=teacher)
        return emb, loss_fn(emb, None, pairs)
    kwargs = {"teacher_emb": teacher} if loss_factory not in (ContrastiveLoss, MultiSimilarityLoss, MarginLoss) else {}
    if ref_sizes is not None:
        ref = model(local_ref(data["ref_inputs"]))
        return emb, loss_fn(emb, labels, None, ref, None, teacher_ref_emb=local_ref(data["ref_teacher"]), **kwargs)
    return emb, loss_fn(emb, labels, **kwargs)


def run_scenarios(rank, world_size):
    out = {}
    for name in SCENARIOS:
        model = make_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        emb, loss = compute_loss(name, ddp, scenario_data(name), rank)
        loss.backward()
        out[name] = {
            "loss": loss.detach(),
            "emb_grad": emb.grad,
            "param_grads": [p.grad.clone() for p in model.parameters()],
        }
    out["xbm"] = cross_batch_memory_steps(rank)
    out["mismatch"] = mismatched_labels(rank)
    return out


XBM_SIZES = ((5, 3), (4, 4), (3, 5))  # three steps: the queue of 12 wraps around on the third


def cross_batch_memory_steps(rank=None):
    """PML's CrossBatchMemory(ContrastiveLoss) for three steps, wrapped on rank ``rank`` or bare."""
    torch.manual_seed(1)
    xbm = CrossBatchMemory(ContrastiveLoss(), embedding_size=EMB_DIM, memory_size=12)
    loss_fn = xbm if rank is None else DistributedTransferLossWrapper(xbm)
    gen = torch.Generator().manual_seed(7)
    losses, grads = [], []
    for sizes in XBM_SIZES:
        emb = torch.randn(sum(sizes), EMB_DIM, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, NUM_CLASSES, (sum(sizes),), generator=gen)
        if rank is not None:
            emb, labels = rows(emb, sizes, rank), rows(labels, sizes, rank)
        emb.requires_grad_(True)
        loss = loss_fn(emb, labels)
        loss.backward()
        losses.append(loss.detach())
        grads.append(emb.grad)
    return {"losses": losses, "grads": grads}


def mismatched_labels(rank):
    """Labels on rank 0, None on rank 1: every rank must raise the same ValueError (not hang)."""
    loss_fn = DistributedTransferLossWrapper(RelaxedContrastiveLoss())
    emb, teacher = torch.randn(3, 4), torch.randn(3, 5)
    try:
        loss_fn(emb, torch.zeros(3, dtype=torch.long) if rank == 0 else None, teacher_emb=teacher)
    except ValueError as error:
        return {"message": str(error)}
    return {"message": None}


@pytest.fixture(scope="module")
def results():
    return run_world(__name__, "run_scenarios", WORLD)


def single_process(name):
    data = scenario_data(name)
    model = make_model()
    emb, loss = compute_loss(name, model, data)
    loss.backward()
    return loss.detach(), emb.grad, [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_loss_and_gradients_equal_one_process(results, name):
    loss, emb_grad, param_grads = single_process(name)
    sizes = SCENARIOS[name][2]
    assert float(loss) != 0.0
    for rank in range(WORLD):
        got = results[rank][name]
        torch.testing.assert_close(got["loss"], loss, rtol=1e-9, atol=0)
        for g, expected in zip(got["param_grads"], param_grads):
            torch.testing.assert_close(g, expected, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(got["emb_grad"], WORLD * rows(emb_grad, sizes, rank), rtol=1e-9, atol=1e-14)
    assert any(bool(g.abs().sum() > 0) for g in param_grads)


def test_cross_batch_memory_equals_one_process(results):
    expected = cross_batch_memory_steps()
    for rank in range(WORLD):
        got = results[rank]["xbm"]
        for step, sizes in enumerate(XBM_SIZES):
            torch.testing.assert_close(got["losses"][step], expected["losses"][step], rtol=1e-9, atol=0)
            torch.testing.assert_close(
                got["grads"][step], WORLD * rows(expected["grads"][step], sizes, rank), rtol=1e-9, atol=1e-14
            )


def test_mismatched_arguments_raise_on_every_rank(results):
    for rank in range(WORLD):
        message = results[rank]["mismatch"]["message"]
        assert message is not None
        assert "whether labels are given (1) or None (0) must be the same on every rank" in message
        assert "rank 0: 1, rank 1: 0" in message


# Without a process group: the bare loss.


def test_no_process_group_is_the_bare_loss():
    emb = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(9, 6, dtype=torch.float64)
    for efficient in (False, True):
        expected = RelaxedContrastiveLoss()(emb, teacher_emb=teacher)
        (expected_grad,) = torch.autograd.grad(expected, emb)
        got = DistributedTransferLossWrapper(RelaxedContrastiveLoss(), efficient=efficient)(emb, teacher_emb=teacher)
        (got_grad,) = torch.autograd.grad(got, emb)
        assert torch.equal(got, expected) and torch.equal(got_grad, expected_grad)


def test_no_process_group_plain_loss_ignores_the_teacher():
    emb = torch.randn(8, 4, dtype=torch.float64)
    labels = torch.arange(8) % 3
    wrapper = DistributedTransferLossWrapper(ContrastiveLoss())
    assert not wrapper.loss_takes_teacher
    expected = ContrastiveLoss()(emb, labels)
    assert torch.equal(wrapper(emb, labels, teacher_emb=torch.randn(8, 3)), expected)


def test_no_process_group_cross_batch_memory():
    torch.manual_seed(3)
    emb, labels = torch.randn(6, 4), torch.arange(6) % 2
    mask = torch.tensor([True, False, True, True, False, True])
    expected = CrossBatchMemory(ContrastiveLoss(), 4, memory_size=8)(emb, labels, enqueue_mask=mask)
    wrapper = DistributedTransferLossWrapper(CrossBatchMemory(ContrastiveLoss(), 4, memory_size=8))
    assert wrapper.is_cross_batch_memory
    assert torch.equal(wrapper(emb, labels, enqueue_mask=mask), expected)


def test_bad_arguments():
    with pytest.raises(TypeError, match="loss must be a loss module"):
        DistributedTransferLossWrapper("contrastive")
    with pytest.raises(TypeError, match="efficient must be"):
        DistributedTransferLossWrapper(RelaxedContrastiveLoss(), efficient=1)
    with pytest.raises(ValueError, match="efficient=True is not supported for a cross-batch memory"):
        DistributedTransferLossWrapper(CrossBatchMemory(ContrastiveLoss(), 4), efficient=True)
    with pytest.raises(TypeError, match="efficient=True supports the relaxed losses .* not RKDLoss"):
        DistributedTransferLossWrapper(RKDLoss(), efficient=True)
    with pytest.raises(TypeError, match="efficient=True needs a PML BaseMetricLossFunction"):
        DistributedTransferLossWrapper(torch.nn.MSELoss(), efficient=True)
    xbm = DistributedTransferLossWrapper(CrossBatchMemory(ContrastiveLoss(), 4))
    with pytest.raises(ValueError, match="cross-batch memory: its reference set is its queue.*got ref_emb"):
        xbm(torch.randn(3, 4), torch.arange(3), ref_emb=torch.randn(2, 4))
    plain = DistributedTransferLossWrapper(ContrastiveLoss())
    with pytest.raises(ValueError, match="enqueue_mask is for cross-batch memories; ContrastiveLoss takes none"):
        plain(torch.randn(3, 4), torch.arange(3), enqueue_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="indices_tuple must be PML pairs .* got a tuple of length 2"):
        plain(torch.randn(3, 4), None, (torch.arange(2), torch.arange(2)))
