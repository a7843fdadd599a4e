"""The benchmark's throughput helpers: measure_throughput and sentences_per_second."""

import pytest

from pml_relaxed_bench import throughput
from pml_relaxed_bench.throughput import measure_throughput, sentences_per_second


def test_measure_throughput_calls_encode_on_every_batch_plus_warmup():
    seen = []
    rate = measure_throughput(
        lambda batch: seen.append(list(batch)), list("abcde"), batch_size=2, warmup_batches=1, repeats=2
    )
    assert seen == [["a", "b"]] + [["a", "b"], ["c", "d"], ["e"]] * 2
    assert rate > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1; got 0"),
        ({"repeats": 1.0}, TypeError, "repeats must be an int"),
        ({"warmup_batches": -1}, ValueError, "warmup_batches must be >= 0; got -1"),
        ({"items": []}, ValueError, "items must hold at least one item"),
        ({"encode": None}, TypeError, "encode must be callable; got NoneType"),
    ],
)
def test_measure_throughput_errors(kwargs, error, match):
    args = {"encode": len, "items": ["a"], **kwargs}
    with pytest.raises(error, match=match):
        measure_throughput(**args)


def test_sentences_per_second_is_the_best_single_pass(monkeypatch):
    rates = iter([10.0, 30.0, 20.0])
    calls = []

    def fake(encode, texts, batch_size, warmup_batches):
        calls.append((batch_size, warmup_batches))
        return next(rates)

    monkeypatch.setattr(throughput, "measure_throughput", fake)
    assert sentences_per_second(len, ["a"], batch_size=4, repeats=3) == 30.0
    assert calls == [(4, 0)] * 3
