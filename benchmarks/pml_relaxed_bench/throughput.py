"""How many items per second an encoder processes, for the benchmark's tables."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch


def _check_count(name: str, value: object, minimum: int) -> None:
    """Refuses a count that is not an int (bool included) or below ``minimum``, naming it and what it got."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")


def measure_throughput(
    encode: Callable[[Sequence[Any]], Any],
    items: Sequence[Any],
    batch_size: int = 256,
    warmup_batches: int = 1,
    repeats: int = 1,
) -> float:
    """Items per second of ``encode`` run batch by batch over ``items`` (under ``no_grad``).

    ``warmup_batches`` batches are run first and not timed (lazy initialisation, allocator warm-up).
    With caching encoders (e.g. :class:`HashedNgramEmbedder`), ``repeats > 1`` measures the
    warm-cache speed after the first pass; clear the cache before calling to time a cold pass.
    Wall-clock time is used, so the number depends on the machine and its current load.

    Args:
        encode: called with a slice of ``items`` of at most ``batch_size`` elements,
            e.g. ``model`` or ``teacher.forward``.
        items: the inputs (a list of str, or a tensor whose first dimension indexes items).
        batch_size: batch size, >= 1.
        warmup_batches: untimed batches run first, >= 0.
        repeats: passes over ``items`` that are timed, >= 1.

    Returns:
        ``repeats * len(items) / seconds``.

    Raises:
        TypeError: ``encode`` not callable, or a non-int count.
        ValueError: ``items`` empty, ``batch_size`` or ``repeats`` < 1, ``warmup_batches`` < 0.
    """
    if not callable(encode):
        raise TypeError(f"encode must be callable; got {type(encode).__name__}")
    for name, value, minimum in (
        ("batch_size", batch_size, 1),
        ("warmup_batches", warmup_batches, 0),
        ("repeats", repeats, 1),
    ):
        _check_count(name, value, minimum)
    if len(items) == 0:
        raise ValueError("items must hold at least one item; got 0")
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with torch.no_grad():
        for i in range(warmup_batches):
            encode(batches[i % len(batches)])
        start = time.perf_counter()
        for _ in range(repeats):
            for batch in batches:
                encode(batch)
        elapsed = time.perf_counter() - start
    return repeats * len(items) / max(elapsed, 1e-9)


def sentences_per_second(
    encode: Callable[[Sequence[Any]], Any], texts: Sequence[Any], batch_size: int = 256, repeats: int = 3
) -> float:
    """The best of ``repeats`` single passes of :func:`measure_throughput` (no warm-up): robust to a busy machine.

    Examples:
        >>> sentences_per_second(lambda batch: [len(t) for t in batch], ["a", "bb", "ccc"], batch_size=2) > 0
        True
    """
    return max(measure_throughput(encode, texts, batch_size, warmup_batches=0) for _ in range(repeats))
