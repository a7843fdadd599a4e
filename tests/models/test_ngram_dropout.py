import pytest
import torch

from pml_relaxed.models import HashedNgramEmbedder, NgramDropout


def _rows(n=64, length=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 1000, (n, length), generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    ids[torch.arange(length) >= lengths[:, None]] = 0  # right padding
    return torch.cat([torch.arange(n)[:, None], ids], dim=1)


def test_zero_p_is_the_identity_and_a_copy():
    rows = _rows()
    out = NgramDropout(0.0, skip_columns=1)(rows)
    assert torch.equal(out, rows) and out.data_ptr() != rows.data_ptr()


def test_drops_ids_only_to_padding_and_keeps_the_index_column():
    rows = _rows(n=512)
    before = rows.clone()
    out = NgramDropout(0.3, skip_columns=1, generator=torch.Generator().manual_seed(1))(rows)
    assert torch.equal(rows, before), "the input is not modified"
    assert torch.equal(out[:, 0], rows[:, 0]), "column 0 indexes the teacher cache and is never dropped"
    ids, kept = rows[:, 1:], out[:, 1:]
    assert bool(((kept == ids) | (kept == 0)).all()), "an id is either kept in place or set to 0"
    present = ids != 0
    share_dropped = float(((kept == 0) & present).sum()) / float(present.sum())
    assert 0.27 < share_dropped < 0.33


def test_no_text_becomes_empty():
    rows = torch.tensor([[0, 7, 0, 0], [1, 3, 4, 0], [2, 0, 0, 0]])  # the last row has no ids at all
    drop = NgramDropout(0.95, skip_columns=1, generator=torch.Generator().manual_seed(0))
    for _ in range(50):
        out = drop(rows)
        assert bool((out[:2, 1:] != 0).any(dim=1).all())
        assert torch.equal(out[2], rows[2])


def test_two_calls_give_two_views_and_a_generator_repeats_them():
    rows = _rows()
    drop = NgramDropout(0.2, skip_columns=1)
    assert not torch.equal(drop(rows), drop(rows))
    first = NgramDropout(0.2, skip_columns=1, generator=torch.Generator().manual_seed(3))(rows)
    second = NgramDropout(0.2, skip_columns=1, generator=torch.Generator().manual_seed(3))(rows)
    assert torch.equal(first, second)


def test_views_feed_the_text_student():
    student = HashedNgramEmbedder(embedding_dim=8, num_buckets=2**12)
    ids = student.encode_batch(["where is my card?", "my card has not arrived yet", "top up by transfer"])
    rows = torch.cat([torch.arange(3)[:, None], ids], dim=1)  # [index into a teacher cache, ids...]
    view = NgramDropout(0.5, skip_columns=1, generator=torch.Generator().manual_seed(0))(rows)
    embeddings = student(view[:, 1:])
    assert embeddings.shape == (3, 8) and bool(torch.isfinite(embeddings).all())


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"p": 1.0}, ValueError, r"p must be in \[0, 1\); got 1.0"),
        ({"p": -0.1}, ValueError, r"p must be in \[0, 1\); got -0.1"),
        ({"p": "0.2"}, TypeError, r"p must be a real number in \[0, 1\); got str"),
        ({"p": float("nan")}, TypeError, r"p must be a real number in \[0, 1\); got float \(nan\)"),
        ({"p": 0.1, "skip_columns": -1}, ValueError, r"skip_columns must be >= 0; got -1"),
        ({"p": 0.1, "skip_columns": 1.0}, TypeError, r"skip_columns must be an int >= 0; got float"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        NgramDropout(**kwargs)


@pytest.mark.parametrize(
    "rows,error,message",
    [
        (torch.ones(2, 3), TypeError, r"NgramDropout takes an integer id tensor; got a tensor of dtype torch.float32"),
        ([[0, 1]], TypeError, r"NgramDropout takes an integer id tensor; got a list"),
        (torch.ones(3, dtype=torch.long), ValueError, r"2D \(batch, 1 \+ length\) id tensor .* got shape \(3,\)"),
        (torch.ones(2, 1, dtype=torch.long), ValueError, r"at least one id column; got shape \(2, 1\)"),
    ],
)
def test_bad_inputs(rows, error, message):
    with pytest.raises(error, match=message):
        NgramDropout(0.1, skip_columns=1)(rows)
