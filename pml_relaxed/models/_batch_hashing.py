"""Vectorised (NumPy) n-gram hashing of a whole batch: the same ids as :class:`NgramHasher`, computed at once.

:meth:`NgramHasher.text_ids` walks every word and character n-gram in Python and calls ``zlib.crc32`` on
each (about 150 calls for a Banking77 query), which made hashing, not the network, set a hashed n-gram
student's speed. Here the tokens of a batch are written into two byte buffers, ``"<tok1><tok2>..."``
(unique tokens: unigrams and character n-grams) and ``"tok1 tok2 ..."`` (all tokens: bigrams are
substrings of it), and CRC-32 is computed for all features at once with the byte-wise table algorithm
(the one ``zlib.crc32`` implements, so the ids are bit-identical). Character n-grams of sizes 3, 4 and 5
that start at the same byte share their prefix: one pass of ``high`` table steps over every byte of the
buffer gives them all.

Only texts whose (lower-cased) form is ASCII take this path, where a character is one byte; the caller
hashes the others with the per-text Python code.
"""

from __future__ import annotations

from itertools import chain
from typing import List, Sequence, Tuple

import numpy as np

_MASK = np.uint32(0xFFFFFFFF)


def _crc32_table() -> np.ndarray:
    # The reflected CRC-32 (IEEE 802.3) table of zlib: entry i is i shifted through 8 steps of polynomial division.
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc32_table()


def exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    """``[0, v0, v0 + v1, ...]`` without the total: the start of each run given run lengths."""
    starts = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(values[:-1], out=starts[1:])
    return starts


def concatenated_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a Python loop."""
    counts = counts.astype(np.int64, copy=False)
    total = int(counts.sum())
    return np.repeat(starts.astype(np.int64, copy=False) - exclusive_cumsum(counts), counts) + np.arange(total)


def crc32_prefixes(buffer: np.ndarray, seed: int, max_length: int) -> List[np.ndarray]:
    """``zlib.crc32(buffer[p : p + n], seed)`` for every start ``p`` and every ``n`` in ``1..max_length``.

    Returns:
        ``max_length`` uint32 arrays of ``len(buffer)`` values (item ``n - 1`` for n-byte prefixes; values
        for prefixes running past the end of the buffer are meaningless).
    """
    size = len(buffer)
    padded = np.concatenate([buffer, np.zeros(max_length, dtype=np.uint8)])
    register = np.full(size, np.uint32(seed) ^ _MASK, dtype=np.uint32)
    out = []
    for j in range(max_length):
        register = _TABLE[(register ^ padded[j : j + size]) & 0xFF] ^ (register >> 8)
        out.append(register ^ _MASK)
    return out


def crc32_spans(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """``zlib.crc32(buffer[s : s + n], seed)`` for each span; spans sorted by length share the table steps."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint32)
    order = np.argsort(-lengths, kind="stable")
    sorted_starts, sorted_lengths = starts[order], lengths[order]
    # active[j]: how many spans are longer than j bytes (a prefix of the length-sorted spans).
    active = np.searchsorted(-sorted_lengths, -np.arange(int(sorted_lengths[0])), side="left")
    register = np.full(len(starts), np.uint32(seed) ^ _MASK, dtype=np.uint32)
    for j, count in enumerate(active.tolist()):
        head = register[:count]
        register[:count] = _TABLE[(head ^ buffer[sorted_starts[:count] + j]) & 0xFF] ^ (head >> 8)
    out = np.empty(len(starts), dtype=np.uint32)
    out[order] = register ^ _MASK
    return out


def _buckets(hashes: np.ndarray, num_buckets: int) -> np.ndarray:
    return hashes.astype(np.int64) % (num_buckets - 1) + 1


def hash_token_lists(
    token_lists: Sequence[List[str]],
    num_buckets: int,
    char_ngram_range: Tuple[int, int],
    word_ngram_range: Tuple[int, int],
    max_features: int,
    seeds: Tuple[int, int, int],
) -> Tuple[np.ndarray, np.ndarray]:
    """Bucket ids of ASCII texts given as token lists, in :meth:`NgramHasher.text_ids` order.

    Per text, for each token: its unigram (when ``word_ngram_range[0] == 1``), its character n-grams of
    ``"<" + token + ">"`` (n ascending, then start), then the bigram it ends (when ``word_ngram_range[1] == 2``);
    the first ``max_features`` of them are kept.

    Args:
        token_lists: the tokens of each text, all ASCII.
        num_buckets, char_ngram_range, word_ngram_range, max_features: as in :class:`NgramHasher`.
        seeds: the crc32 seeds of (word unigrams, word bigrams, character n-grams).

    Returns:
        ``(ids, lengths)``: the ids of all texts concatenated (int64) and the number of ids of each text.
    """
    word_seed, bigram_seed, char_seed = seeds
    use_unigrams, use_bigrams = word_ngram_range[0] == 1, word_ngram_range[1] == 2
    low, high = char_ngram_range
    if use_unigrams and token_lists and max(map(len, token_lists)) > max_features:
        # Each token gives at least its unigram, so tokens past max_features cannot contribute.
        token_lists = [tokens[:max_features] for tokens in token_lists]
    tokens_per_text = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    flat = list(chain.from_iterable(token_lists))
    unique = list(dict.fromkeys(flat))  # in order of first appearance
    uid_of = dict(zip(unique, range(len(unique))))
    occurrence_uid = np.fromiter(map(uid_of.__getitem__, flat), dtype=np.int64, count=len(flat))
    unique_lengths = np.fromiter(map(len, unique), dtype=np.int64, count=len(unique))

    # Features of each unique token, in text_ids order: [unigram] + char n-grams.
    padded_lengths = unique_lengths + 2
    char_counts = [np.maximum(padded_lengths - n + 1, 0) for n in range(low, high + 1)] if high > 0 else []
    block_lengths = np.full(len(unique), int(use_unigrams), dtype=np.int64)
    for counts in char_counts:
        block_lengths += counts
    block_starts = exclusive_cumsum(block_lengths)
    word_features = np.empty(int(block_lengths.sum()), dtype=np.int64)
    padded_starts = exclusive_cumsum(padded_lengths)
    buffer = np.frombuffer(("<" + "><".join(unique) + ">").encode("ascii"), dtype=np.uint8) if unique else None
    if use_unigrams and unique:
        word_features[block_starts] = _buckets(
            crc32_spans(buffer, padded_starts + 1, unique_lengths, word_seed), num_buckets
        )
    if char_counts and unique:
        prefixes = crc32_prefixes(buffer, char_seed, high)
        offset = block_starts + int(use_unigrams)
        for n, counts in zip(range(low, high + 1), char_counts):
            targets = concatenated_ranges(offset, counts)
            word_features[targets] = _buckets(prefixes[n - 1][concatenated_ranges(padded_starts, counts)], num_buckets)
            offset = offset + counts

    # Every occurrence: the block of its token, then the bigram it ends (not for the first token of a text).
    occurrence_blocks = block_lengths[occurrence_uid]
    has_bigram = np.zeros(len(flat), dtype=bool)
    if use_bigrams and len(flat):
        has_bigram[:] = True
        firsts = exclusive_cumsum(tokens_per_text)[tokens_per_text > 0]
        has_bigram[firsts] = False
    occurrence_lengths = occurrence_blocks + has_bigram
    occurrence_starts = exclusive_cumsum(occurrence_lengths)
    ids = np.empty(int(occurrence_lengths.sum()), dtype=np.int64)
    ids[concatenated_ranges(occurrence_starts, occurrence_blocks)] = word_features[
        concatenated_ranges(block_starts[occurrence_uid], occurrence_blocks)
    ]
    if has_bigram.any():
        token_lengths = unique_lengths[occurrence_uid]
        token_starts = exclusive_cumsum(token_lengths + 1)  # in " ".join(flat)
        second = np.flatnonzero(has_bigram)
        spans = crc32_spans(
            np.frombuffer(" ".join(flat).encode("ascii"), dtype=np.uint8),
            token_starts[second - 1],
            token_lengths[second - 1] + 1 + token_lengths[second],
            bigram_seed,
        )
        ids[occurrence_starts[second] + occurrence_blocks[second]] = _buckets(spans, num_buckets)

    text_bounds = np.concatenate([[0], np.cumsum(tokens_per_text)])
    feature_bounds = np.concatenate([[0], np.cumsum(occurrence_lengths)])[text_bounds]
    lengths = np.diff(feature_bounds)
    if len(lengths) and int(lengths.max()) > max_features:
        position = np.arange(len(ids)) - np.repeat(feature_bounds[:-1], lengths)
        ids = ids[position < max_features]
        lengths = np.minimum(lengths, max_features)
    return ids, lengths
