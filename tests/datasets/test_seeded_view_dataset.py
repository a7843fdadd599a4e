"""SeededViewDataset: view v of sample i is one image, whoever draws it, whenever; batches carry their (i, v) ids."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pml_relaxed.datasets import RandomAffine, SeededViewDataset, seeded_view_collate

POINTS = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(10) % 3


def every_generator(x: torch.Tensor) -> torch.Tensor:
    """An augmentation drawing from torch's, NumPy's and Python's generators."""
    return x + torch.randn_like(x) + float(np.random.rand()) + random.random()


def data(**kwargs) -> SeededViewDataset:
    return SeededViewDataset(torch.utils.data.TensorDataset(POINTS, LABELS), every_generator, **kwargs)


def test_a_view_is_the_same_image_whenever_it_is_drawn():
    first, second = data(seed=1), data(seed=1)
    torch.manual_seed(123)
    np.random.seed(5)
    expected = first.view(3, 1)
    torch.manual_seed(999)  # the global state does not matter
    assert torch.equal(second.view(3, 1), expected)
    assert torch.equal(second[3][0][1], expected)
    assert not torch.equal(first.view(3, 0), expected)  # another view
    assert not torch.equal(first.view(4, 1) - POINTS[4], expected - POINTS[3])  # another sample
    assert not torch.equal(data(seed=2).view(3, 1), expected)  # another seed


def test_the_global_generators_are_left_as_they_were():
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    data().view(0, 0)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected


def test_items_and_batches_carry_their_view_ids():
    dataset = data(num_views=2)
    views, label, ids = dataset[4]
    assert views.shape == (2, 1, 8, 8) and label == LABELS[4] and ids.tolist() == [[4, 0], [4, 1]]
    inputs, labels, batch_ids = seeded_view_collate([dataset[4], dataset[7]])
    assert inputs.shape == (4, 1, 8, 8)
    assert labels.tolist() == [LABELS[4]] * 2 + [LABELS[7]] * 2
    assert batch_ids.tolist() == [[4, 0], [4, 1], [7, 0], [7, 1]]
    assert torch.equal(inputs[3], dataset.view(7, 1))
    unlabeled = SeededViewDataset(torch.utils.data.TensorDataset(POINTS), every_generator, num_views=1)
    assert seeded_view_collate([unlabeled[0]])[1] is None


def test_the_epochs_walk_through_the_view_pool():
    dataset = data(num_views=2, view_pool=3)
    seen = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        seen.append(dataset.view_numbers())
    assert seen == [[0, 1], [2, 0], [1, 2]]
    assert torch.equal(dataset[5][0][0], dataset.view(5, 1))
    restored = data(num_views=2, view_pool=3)
    restored.load_state_dict(dataset.state_dict())
    assert restored.view_numbers() == [1, 2]


def test_misuse_is_refused():
    with pytest.raises(ValueError, match=r"view_pool must be >= num_views \(2\); got 1"):
        data(num_views=2, view_pool=1)
    with pytest.raises(ValueError, match="num_views must be >= 1; got 0"):
        data(num_views=0)
    own = RandomAffine(degrees=10, generator=torch.Generator())
    with pytest.raises(ValueError, match="RandomAffine draws from its own generator"):
        SeededViewDataset(torch.utils.data.TensorDataset(POINTS), own)
