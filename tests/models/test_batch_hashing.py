"""The NumPy CRC-32 of pml_relaxed.models._batch_hashing against zlib, and the batch path against text_ids."""

import zlib

import numpy as np
import pytest
import torch

from pml_relaxed.models import NgramHasher
from pml_relaxed.models._batch_hashing import concatenated_ranges, crc32_prefixes, crc32_spans

TEXTS = [
    "I lost my card, where is it?",
    "Where is MY card?!",
    "",
    "!!",
    "a",
    "card card card",
    "Ünïcode café: is the exchange rate OK?",
    "naïve",
    "tab\tand\nnew line",
    "under_score 123 4,5",
    "word " * 300,
    "top up failed",
    "ß ǅ İstanbul",
]

CONFIGS = [
    {},
    {"num_buckets": 7},
    {"char_ngram_range": (0, 0), "word_ngram_range": (1, 1)},
    {"char_ngram_range": (0, 0), "word_ngram_range": (2, 2)},
    {"char_ngram_range": (2, 6), "word_ngram_range": (1, 1)},
    {"char_ngram_range": (6, 6), "word_ngram_range": (2, 2), "max_features": 7},
    {"char_ngram_range": (1, 1)},
    {"lowercase": False},
    {"max_features": 20},
    {"num_buckets": 2**33 + 7},
]


def test_crc32_spans_and_prefixes_equal_zlib():
    rng = np.random.default_rng(0)
    buffer = rng.integers(0, 256, size=300, dtype=np.uint8)
    data = buffer.tobytes()
    starts = rng.integers(0, 250, size=100)
    lengths = rng.integers(0, 50, size=100)
    for seed in (0, 0x5EED0003, 0xFFFFFFFF):
        expected = [zlib.crc32(data[s : s + n], seed) for s, n in zip(starts, lengths)]
        assert crc32_spans(buffer, starts, lengths, seed).tolist() == expected
        prefixes = crc32_prefixes(buffer, seed, 5)
        for n in range(1, 6):
            expected = [zlib.crc32(data[p : p + n], seed) for p in range(301 - n)]
            assert prefixes[n - 1][: 301 - n].tolist() == expected
    assert crc32_spans(buffer, starts[:0], lengths[:0], 0).shape == (0,)


def test_concatenated_ranges():
    starts, counts = np.array([5, 0, 9, 2]), np.array([2, 0, 3, 1])
    assert concatenated_ranges(starts, counts).tolist() == [5, 6, 9, 10, 11, 2]
    assert concatenated_ranges(starts[:0], counts[:0]).tolist() == []


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_batch_ids_equal_the_per_text_python_path(config):
    hasher = NgramHasher(**config)
    texts = TEXTS + [t.upper() for t in TEXTS]
    reference = [hasher.text_ids(text) for text in texts]  # per word, per n-gram zlib.crc32 in Python
    ids, offsets = hasher.encode_flat(texts)
    lengths = torch.tensor([len(r) for r in reference])
    assert ids.dtype == offsets.dtype == torch.int64
    assert torch.equal(ids, torch.cat(reference))
    assert torch.equal(offsets, torch.cumsum(lengths, 0) - lengths)
    padded = hasher.encode_batch(texts)
    assert padded.shape == (len(texts), max(int(lengths.max()), 1))
    for row, expected in zip(padded, reference):
        assert torch.equal(row[: len(expected)], expected) and not row[len(expected) :].any()


def test_batch_of_only_unicode_or_only_empty_texts():
    hasher = NgramHasher(num_buckets=2**16)
    for texts in (["café", "naïve"], ["", ""], ["?"]):
        ids, offsets = hasher.encode_flat(texts)
        assert torch.equal(ids, torch.cat([hasher.text_ids(t) for t in texts]))
        assert offsets.shape == (len(texts),)
    ids, offsets = hasher.encode_flat([])
    assert ids.shape == (0,) and offsets.shape == (0,)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        hasher.encode_flat(["ok", 3])
