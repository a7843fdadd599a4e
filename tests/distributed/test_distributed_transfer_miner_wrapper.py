"""DistributedTransferMinerWrapper on 2 gloo processes mines the pairs of one process on the concatenated batch."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.miners import MultiSimilarityMiner, TripletMarginMiner

from pml_relaxed.distributed import DistributedTransferMinerWrapper
from pml_relaxed.miners import TeacherSimilarityMiner
from tests.distributed.dist_harness import run_world

WORLD = 2


def teacher_topk():
    return TeacherSimilarityMiner(pos_topk=3)


def teacher_thresholds():
    return TeacherSimilarityMiner(pos_topk=None, pos_threshold=0.4, neg_threshold=0.2)


# name: (miner factory, efficient, rows per rank, labels?, reference rows per rank or None)
SCENARIOS = {}
for _eff in (False, True):
    _m = "efficient" if _eff else "full"
    SCENARIOS[f"teacher-topk-uneven-{_m}"] = (teacher_topk, _eff, (7, 4), False, None)
    SCENARIOS[f"teacher-thresholds-even-{_m}"] = (teacher_thresholds, _eff, (6, 6), True, None)
    SCENARIOS[f"teacher-topk-ref-{_m}"] = (teacher_topk, _eff, (3, 5), False, (6, 2))
    SCENARIOS[f"triplet-margin-labels-{_m}"] = (TripletMarginMiner, _eff, (6, 5), True, None)
SCENARIOS["multisimilarity-labels-full"] = (MultiSimilarityMiner, False, (6, 5), True, None)


def scenario_data(name):
    _, _, sizes, with_labels, ref_sizes = SCENARIOS[name]
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    n = sum(sizes)
    data = {
        "emb": torch.randn(n, 4, generator=gen, dtype=torch.float64),
        "teacher": torch.randn(n, 6, generator=gen, dtype=torch.float64),
        "labels": torch.randint(0, 3, (n,), generator=gen) if with_labels else None,
    }
    if ref_sizes is not None:
        data["ref_emb"] = torch.randn(sum(ref_sizes), 4, generator=gen, dtype=torch.float64)
        data["ref_teacher"] = torch.randn(sum(ref_sizes), 6, generator=gen, dtype=torch.float64)
    return data


def rows(tensor, sizes, rank):
    if tensor is None or rank is None:
        return tensor
    start = sum(sizes[:rank])
    return tensor[start : start + sizes[rank]]


def mine(name, rank=None):
    factory, efficient, sizes, _, ref_sizes = SCENARIOS[name]
    data = scenario_data(name)
    miner = factory() if rank is None else DistributedTransferMinerWrapper(factory(), efficient=efficient)
    teacher = {}
    if factory in (teacher_topk, teacher_thresholds):
        teacher = {"teacher_emb": rows(data["teacher"], sizes, rank)}
        if ref_sizes is not None:
            teacher["teacher_ref_emb"] = rows(data["ref_teacher"], ref_sizes, rank)
    ref = rows(data["ref_emb"], ref_sizes, rank) if ref_sizes is not None else None
    return miner(rows(data["emb"], sizes, rank), rows(data["labels"], sizes, rank), ref, **teacher)


def run_scenarios(rank, world_size):
    return {name: mine(name, rank) for name in SCENARIOS}


@pytest.fixture(scope="module")
def results():
    return run_world(__name__, "run_scenarios", WORLD)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_pairs_as_one_process(results, name):
    expected = mine(name)
    assert sum(len(t) for t in expected) > 0
    for rank in range(WORLD):
        got = results[rank][name]
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.dtype == torch.long
            assert torch.equal(g, e), f"rank {rank}"


def test_no_process_group_is_the_bare_miner():
    emb, teacher, labels = torch.randn(9, 4), torch.randn(9, 6), torch.arange(9) % 3
    for efficient in (False, True):
        got = DistributedTransferMinerWrapper(TeacherSimilarityMiner(pos_topk=2), efficient=efficient)(
            emb, teacher_emb=teacher
        )
        expected = TeacherSimilarityMiner(pos_topk=2)(emb, teacher_emb=teacher)
        assert all(torch.equal(g, e) for g, e in zip(got, expected))
    plain = DistributedTransferMinerWrapper(MultiSimilarityMiner())
    assert not plain.miner_takes_teacher
    got = plain(emb, labels, teacher_emb=teacher)  # the teacher is ignored by a PML miner
    assert all(torch.equal(g, e) for g, e in zip(got, MultiSimilarityMiner()(emb, labels)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="miner must be a PML BaseMiner .* got RelaxedContrastiveLoss"):
        from pml_relaxed.losses import RelaxedContrastiveLoss

        DistributedTransferMinerWrapper(RelaxedContrastiveLoss())
    with pytest.raises(TypeError, match="efficient must be"):
        DistributedTransferMinerWrapper(TeacherSimilarityMiner(), efficient="yes")
