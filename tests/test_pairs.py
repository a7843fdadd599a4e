"""pml_relaxed._pairs: index tuples and self pairs, the one place every loss, miner and wrapper takes them from."""

import torch

from pml_relaxed import _pairs, functional


def test_functional_reexports_the_pair_masks():
    assert functional.pair_mask is _pairs.pair_mask and functional.pair_mask_rows is _pairs.pair_mask_rows


def test_self_pair_mask_and_fill_agree_at_any_offset():
    for offset in (0, 2):
        mask = _pairs.self_pair_mask(3, 6, offset)
        filled = _pairs.fill_self_pairs_(torch.zeros(3, 6, dtype=torch.bool), offset, True)
        assert torch.equal(mask, filled)
        assert mask.nonzero().tolist() == [[i, i + offset] for i in range(3)]
    assert torch.equal(_pairs.self_pair_mask(4, 4), torch.eye(4, dtype=torch.bool))


def test_zero_self_pairs_is_out_of_place_and_keeps_the_gradient_elsewhere():
    x = torch.ones(3, 5, requires_grad=True)
    out = _pairs.zero_self_pairs(x * 2, 1)
    assert out[0, 1] == 0 and out[2, 3] == 0 and out[0, 0] == 2
    out.sum().backward()
    assert torch.equal(x.grad, 2 * (~_pairs.self_pair_mask(3, 5, 1)).float())


def test_drop_self_pairs_and_shift_anchors_on_pairs_and_triplets():
    pairs = (torch.tensor([0, 1]), torch.tensor([2, 4]), torch.tensor([0, 1]), torch.tensor([2, 1]))
    assert [t.tolist() for t in _pairs.drop_self_pairs(pairs, 2)] == [[1], [4], [1], [1]]
    triplets = (torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0]), torch.tensor([2, 0, 1]))
    assert [t.tolist() for t in _pairs.drop_self_pairs(triplets, 0)] == [[0, 2], [1, 0], [2, 1]]
    assert [t.tolist() for t in _pairs.shift_anchors(pairs, 3)] == [[3, 4], [2, 4], [3, 4], [2, 1]]
    assert [t.tolist() for t in _pairs.shift_anchors(triplets, -1)] == [[-1, 0, 1], [1, 1, 0], [2, 0, 1]]


def test_anchors_in_rows_keeps_the_rows_of_one_rank_made_local():
    pairs = (torch.tensor([0, 3, 4]), torch.tensor([1, 2, 5]), torch.tensor([5]), torch.tensor([0]))
    local = _pairs.anchors_in_rows(pairs, 3, 2, torch.device("cpu"))
    assert [t.tolist() for t in local] == [[0, 1], [2, 5], [], []]


def test_drop_self_pairs_reads_a_tensor_as_each_query_s_own_row():
    slots = torch.tensor([5, 2])  # query 0 sits in row 5, query 1 in row 2
    pairs = (torch.tensor([0, 0, 1]), torch.tensor([5, 2, 2]), torch.tensor([1]), torch.tensor([0]))
    assert [t.tolist() for t in _pairs.drop_self_pairs(pairs, slots)] == [[0], [2], [1], [0]]
