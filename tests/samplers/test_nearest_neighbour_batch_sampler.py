import math

import pytest
import torch
from pytorch_metric_learning import trainers
from torch.utils.data import TensorDataset

from pml_relaxed.samplers import NearestNeighbourBatchSampler, nearest_neighbour_table


def loop_table(embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """The explicit definition: row i is i, then the others by float64 Euclidean distance, ties to the smaller index."""
    x = embeddings.double()
    rows = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        others.sort(key=lambda j: (math.dist(x[i].tolist(), x[j].tolist()), j))
        rows.append([i] + others[: k - 1])
    return torch.tensor(rows)


@pytest.mark.parametrize("block_size", [1, 3, 1024])
def test_table_matches_the_explicit_loop(block_size):
    embeddings = torch.randn(23, 5, generator=torch.Generator().manual_seed(0))
    for k in (1, 4, 23):
        torch.testing.assert_close(nearest_neighbour_table(embeddings, k, block_size), loop_table(embeddings, k))


def test_table_ties_and_duplicates():
    # 0 and 2 are identical, 1 and 3 are equally far from 0: the query first, then the smaller index
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])
    table = nearest_neighbour_table(embeddings, 4, block_size=2)
    assert table.tolist()[0] == [0, 2, 1, 3] and table.tolist()[2] == [2, 0, 1, 3]
    torch.testing.assert_close(table, loop_table(embeddings, 4))


def test_batches_are_groups_of_a_query_and_its_neighbours():
    embeddings = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    sampler = NearestNeighbourBatchSampler(embeddings, batch_size=12, neighbours_per_query=4, seed=0)
    table = loop_table(embeddings, 4)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 40 // 12
    for batch in batches:
        assert len(batch) == 12
        groups = torch.tensor(batch).reshape(3, 4)
        assert len(set(groups[:, 0].tolist())) == 3  # distinct queries
        for group in groups:
            assert group.tolist() == table[group[0]].tolist()


def test_seed_fixes_the_batches_and_every_pass_draws_new_ones():
    embeddings = torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    a = NearestNeighbourBatchSampler(embeddings, batch_size=10, neighbours_per_query=5, seed=3)
    b = NearestNeighbourBatchSampler(embeddings, batch_size=10, neighbours_per_query=5, seed=3)
    first = list(a)
    assert first == list(b) and list(a) != first
    torch.manual_seed(7)
    c = list(NearestNeighbourBatchSampler(embeddings, batch_size=10, neighbours_per_query=5))
    torch.manual_seed(7)
    assert c == list(NearestNeighbourBatchSampler(embeddings, batch_size=10, neighbours_per_query=5))


@pytest.mark.parametrize("seed", [3, None])
def test_state_dict_resumes_the_passes_and_the_generator(tmp_path, seed):
    """A new sampler loaded from a saved state_dict draws the batches the original draws next, its table
    rebuilt from the callable at the next pass; without seed the global generator (saved elsewhere) decides."""
    spaces = [torch.randn(30, 2, generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def sampler_over(calls):
        def embed():
            calls.append(None)
            return spaces[min(len(calls) - 1, 3)]

        return NearestNeighbourBatchSampler(embed, batch_size=6, neighbours_per_query=3, num_batches=2, seed=seed)

    torch.manual_seed(0)
    original = sampler_over([])
    list(original), list(original)
    torch.save(original.state_dict(), tmp_path / "sampler.pth")
    global_state = torch.get_rng_state()
    expected = [list(original), list(original)]
    resumed = sampler_over([None])  # its callable returns what the original's returns from now on
    resumed.load_state_dict(torch.load(tmp_path / "sampler.pth", weights_only=True))
    torch.set_rng_state(global_state)
    assert [list(resumed), list(resumed)] == expected
    assert torch.equal(resumed.table, original.table)


def test_a_state_dict_of_another_seeding_is_refused():
    seeded = NearestNeighbourBatchSampler(torch.randn(8, 2), batch_size=4, neighbours_per_query=2, seed=0)
    unseeded = NearestNeighbourBatchSampler(torch.randn(8, 2), batch_size=4, neighbours_per_query=2)
    with pytest.raises(ValueError, match="disagree on seed: a generator state for a sampler with seed=None"):
        unseeded.load_state_dict(seeded.state_dict())
    with pytest.raises(ValueError, match="disagree on seed: no generator state for a sampler with seed=0"):
        seeded.load_state_dict(unseeded.state_dict())


def test_a_callable_is_called_again_at_every_later_pass():
    calls = []
    spaces = [torch.arange(8.0).unsqueeze(1), -(torch.arange(8.0) ** 2).unsqueeze(1)]

    def embed():
        calls.append(len(calls))
        return spaces[min(len(calls) - 1, 1)]

    sampler = NearestNeighbourBatchSampler(embed, batch_size=4, neighbours_per_query=2, num_batches=3, seed=0)
    assert calls == [0]  # construction
    list(sampler)
    assert calls == [0]  # the first pass uses the table built at construction
    torch.testing.assert_close(sampler.table, loop_table(spaces[0], 2))
    list(sampler)
    assert calls == [0, 1]
    torch.testing.assert_close(sampler.table, loop_table(spaces[1], 2))
    fixed = NearestNeighbourBatchSampler(spaces[0], batch_size=4, neighbours_per_query=2, seed=0)
    list(fixed), list(fixed)
    torch.testing.assert_close(fixed.table, loop_table(spaces[0], 2))


def test_pml_trainer_takes_it_as_its_batch_sampler():
    embeddings = torch.randn(24, 2, generator=torch.Generator().manual_seed(4))
    sampler = NearestNeighbourBatchSampler(embeddings, batch_size=8, neighbours_per_query=4, seed=0)
    seen = []
    model = torch.nn.Linear(2, 2)

    class Recorder(torch.nn.Module):
        def forward(self, emb, labels, indices_tuple=None):
            seen.append(labels.tolist())
            return emb.sum() * 0

    trainer = trainers.MetricLossOnly(
        models={"trunk": model},
        optimizers={"trunk_optimizer": torch.optim.SGD(model.parameters(), lr=0.1)},
        batch_size=8,
        loss_funcs={"metric_loss": Recorder()},
        dataset=TensorDataset(embeddings, torch.arange(24)),  # the label is the index
        sampler=sampler,
        iterations_per_epoch=len(sampler),
        dataloader_num_workers=0,
    )
    trainer.train(num_epochs=2)
    assert len(seen) == 2 * len(sampler)
    table = sampler.table.tolist()
    for batch in seen:
        assert all(batch[g : g + 4] == table[batch[g]] for g in range(0, 8, 4))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(embeddings=[[0.0]], batch_size=2, neighbours_per_query=1),
            TypeError,
            "embeddings must be a torch.Tensor",
        ),
        (
            dict(batch_size=10, neighbours_per_query=4),
            ValueError,
            "batch_size must be a multiple of neighbours_per_query",
        ),
        (
            dict(batch_size=13, neighbours_per_query=13),
            ValueError,
            r"neighbours_per_query must be <= the number of items \(12\)",
        ),
        (
            dict(batch_size=26, neighbours_per_query=2),
            ValueError,
            "a batch draws batch_size // neighbours_per_query = 13",
        ),
        (dict(batch_size=16, neighbours_per_query=2), ValueError, "the default num_batches, N // batch_size, is 0"),
        (dict(batch_size=4, neighbours_per_query=2, num_batches=0), ValueError, "num_batches must be >= 1"),
        (dict(batch_size=4.0, neighbours_per_query=2), TypeError, "batch_size must be an int"),
        (dict(batch_size=4, neighbours_per_query=2, seed=-1), ValueError, "seed must be >= 0"),
        (
            dict(embeddings=torch.ones(12, 2, 1), batch_size=4, neighbours_per_query=2),
            ValueError,
            "must be a 2D tensor",
        ),
        (dict(embeddings=torch.ones(12, 2).long(), batch_size=4, neighbours_per_query=2), TypeError, "floating-point"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs.setdefault("embeddings", torch.randn(12, 2))
    with pytest.raises(error, match=match):
        NearestNeighbourBatchSampler(**kwargs)


def test_bad_embeddings_at_a_later_pass_and_in_the_table():
    sizes = iter([12, 11])
    sampler = NearestNeighbourBatchSampler(lambda: torch.randn(next(sizes), 2), batch_size=4, neighbours_per_query=2)
    list(sampler)
    with pytest.raises(ValueError, match="expected 12 rows, got 11"):
        list(sampler)
    nan = torch.zeros(5, 2)
    nan[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"embeddings must be finite.*row\(s\) \[3\]"):
        nearest_neighbour_table(nan, 2)
    with pytest.raises(ValueError, match="k must be <= the number of rows"):
        nearest_neighbour_table(torch.zeros(3, 2), 4)
    with pytest.raises(ValueError, match="at least one row"):
        nearest_neighbour_table(torch.zeros(0, 2), 1)
