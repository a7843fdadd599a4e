from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pml_relaxed.samplers import DistributedMPerClassSampler

# 6 classes of uneven sizes: class 5 has only 2 samples (drawn with replacement when m > 2)
LABELS = [c for c, size in enumerate([7, 5, 9, 4, 6, 2]) for _ in range(size)]


def shares(world, batch_size, m=3, length=96, seed=0, labels=LABELS):
    return [
        DistributedMPerClassSampler(labels, m, batch_size, length, num_replicas=world, rank=r, seed=seed)
        for r in range(world)
    ]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_local_batches_are_class_balanced_and_global_batches_have_distinct_classes(world):
    batch_size, m = 6, 3
    samplers = shares(world, batch_size, m)
    lists = [list(s) for s in samplers]
    expected_length = 96 // (batch_size * world) * batch_size
    assert len({len(x) for x in lists}) == 1 and len(lists[0]) == len(samplers[0]) == expected_length
    labels = np.asarray(LABELS)
    for b in range(len(lists[0]) // batch_size):
        global_classes = []
        for rank_list in lists:
            batch = labels[rank_list[b * batch_size : (b + 1) * batch_size]]
            counts = Counter(batch.tolist())
            assert len(counts) == batch_size // m and set(counts.values()) == {m}
            global_classes += list(counts)
        assert len(global_classes) == len(set(global_classes)), "a class appears on two ranks of one global batch"
    # samples of a class with >= m members are drawn without replacement within a batch
    for rank_list in lists:
        for b in range(len(rank_list) // m):
            block = rank_list[b * m : (b + 1) * m]
            if LABELS.count(LABELS[block[0]]) >= m:
                assert len(set(block)) == m


@pytest.mark.parametrize("batch_size", [6, None])
def test_shares_are_the_global_list_split_in_rank_order(batch_size):
    world = 2
    samplers = shares(world, batch_size)
    single = DistributedMPerClassSampler(
        LABELS, 3, None if batch_size is None else batch_size * world, 96, num_replicas=1, rank=0
    )
    block = 3 if batch_size is None else batch_size
    local = [np.asarray(list(s)).reshape(-1, block) for s in samplers]
    interleaved = np.stack(local, axis=1).reshape(-1)  # batch 0 of rank 0, batch 0 of rank 1, batch 1 of rank 0...
    assert np.array_equal(interleaved, np.asarray(list(single)))
    assert np.array_equal(interleaved, samplers[0].global_indices(0))


def test_batch_size_none_blocks_are_whole_classes():
    lists = [list(s) for s in shares(2, None, m=2, length=48)]
    for rank_list in lists:
        assert len(rank_list) == 24
        for b in range(0, len(rank_list), 2):
            assert LABELS[rank_list[b]] == LABELS[rank_list[b + 1]]


def test_deterministic_epochs():
    a, b = shares(2, 6)[0], shares(2, 6)[0]
    first, second = list(a), list(a)  # each pass advances the epoch
    assert first == list(b) and second == list(b)
    assert first != second
    a.set_epoch(0)
    assert list(a) == first
    a.set_epoch(1)
    assert list(a) == second
    assert list(shares(2, 6, seed=1)[0]) != first


def test_state_dict_resumes_the_epoch(tmp_path):
    """A new sampler loaded from a saved state_dict draws the lists the original draws next."""
    original = shares(2, 6)[1]
    list(original), list(original)
    torch.save(original.state_dict(), tmp_path / "sampler.pth")
    resumed = shares(2, 6)[1]
    resumed.load_state_dict(torch.load(tmp_path / "sampler.pth", weights_only=True))
    assert resumed.epoch == 2 and list(resumed) == list(original) and list(resumed) == list(original)
    assert list(shares(2, 6)[1]) != list(original), "a new sampler starts at epoch 0"


def test_with_a_dataloader():
    sampler = shares(2, 6)[1]
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.tensor(LABELS))
    batches = list(DataLoader(dataset, batch_size=6, sampler=sampler, drop_last=True))
    assert len(batches) == len(sampler) // 6
    for _, labels in batches:
        assert sorted(Counter(labels.tolist()).values()) == [3, 3]


def test_without_process_group_defaults_to_one_replica():
    sampler = DistributedMPerClassSampler(torch.tensor(LABELS), 2, 4, 40)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 40)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be a multiple of m .* got batch_size=5, m=2"):
        DistributedMPerClassSampler(LABELS, 2, 5)
    with pytest.raises(ValueError, match=r"m \* number of classes must be >= batch_size \* num_replicas .* 3 \* 6 <"):
        DistributedMPerClassSampler(LABELS, 3, 12, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="length_before_new_iter must hold at least one global batch of 12 .* got 10"):
        DistributedMPerClassSampler(LABELS, 3, 6, 10, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match=r"rank must be in \[0, num_replicas\) = \[0, 2\); got 2"):
        DistributedMPerClassSampler(LABELS, 3, 6, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="m must be >= 1; got 0"):
        DistributedMPerClassSampler(LABELS, 0)
    with pytest.raises(TypeError, match="batch_size must be an int; got float"):
        DistributedMPerClassSampler(LABELS, 2, 4.0)
    with pytest.raises(ValueError, match=r"labels must be 1D .* got shape \(2, 3\)"):
        DistributedMPerClassSampler([[0, 1, 2], [0, 1, 2]], 1)
    with pytest.raises(ValueError, match="epoch must be >= 0; got -1"):
        DistributedMPerClassSampler(LABELS, 2).set_epoch(-1)
