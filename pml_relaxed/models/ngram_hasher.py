"""Stable feature hashing of texts into word and character n-gram bucket ids."""

from __future__ import annotations

import re
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from .. import _validation as v
from ._batch_hashing import concatenated_ranges, exclusive_cumsum, hash_token_lists

#: Words, or single punctuation marks ("?" is informative for intent-like texts).
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

# Distinct crc32 start values give each feature family its own hash function, so the word "abc"
# and the character trigram "abc" land in unrelated buckets.
_WORD_SEED = 0x5EED0001
_BIGRAM_SEED = 0x5EED0002
_CHAR_SEED = 0x5EED0003


def stable_hash(feature: str, seed: int = 0) -> int:
    """A 32-bit hash of ``feature`` that is identical across processes and Python versions.

    Python's built-in ``hash`` of a str is salted per process (PYTHONHASHSEED), so it cannot
    be used for feature hashing that must survive a restart; this uses ``zlib.crc32``.

    Args:
        feature: the string to hash (UTF-8 encoded).
        seed: crc32 start value; different seeds give unrelated hash functions.

    Returns:
        An int in ``[0, 2**32)``.
    """
    return zlib.crc32(feature.encode("utf-8"), seed)


def _check_range(name: str, value: object, minimum: int) -> Tuple[int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
    ):
        raise TypeError(f"{name} must be a pair of ints (low, high); got {value!r}")
    low, high = value
    if low < minimum or high < low:
        raise ValueError(f"{name} must satisfy {minimum} <= low <= high; got {tuple(value)!r}")
    return int(low), int(high)


def check_texts(name: str, texts: object) -> List[str]:
    """Checks that ``texts`` is a list or tuple of str and returns it as a list.

    Raises:
        TypeError: ``texts`` is a str, not a list/tuple, or holds a non-str item.
    """
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"{name} must be a list of str; got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str; got {type(text).__name__} ({text!r})")
    return list(texts)


class NgramHasher:
    """Turns texts into bucket ids of hashed word n-grams and character n-grams (fastText-style).

    A text is lower-cased and split into tokens (runs of word characters, or single punctuation
    marks). Its features are, in order of appearance: for each token its word unigram, the word
    bigram it ends (when ``word_ngram_range`` reaches 2) and the character n-grams of
    ``"<" + token + ">"`` for n in ``char_ngram_range``. Each feature is hashed with a stable
    crc32 hash (per-family seed) into ``[1, num_buckets)``; id 0 is reserved for padding.

    Batches (:meth:`encode_batch`, :meth:`encode_flat`) are hashed at once with NumPy for ASCII
    texts (the same ids, several times faster than text by text). :meth:`text_ids`, one text at a
    time, caches ids per word and per text (bounded, first-in-first-out), so hashing a text a second
    time is a dictionary lookup; the batch path neither reads nor fills these caches.

    Args:
        num_buckets: number of hash buckets including the padding id 0; >= 2.
        char_ngram_range: ``(low, high)`` character n-gram sizes, e.g. ``(3, 5)``; ``(0, 0)``
            disables character n-grams.
        word_ngram_range: ``(low, high)`` word n-gram sizes with ``1 <= low <= high <= 2``;
            ``(1, 2)`` gives unigrams and bigrams.
        max_features: at most this many features per text (the rest of a long text is dropped).
        cache_size: at most this many texts (and, separately, words) are cached.
        lowercase: lower-case texts before tokenising.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range.

    Examples:
        >>> hasher = NgramHasher(num_buckets=2**16)
        >>> ids = hasher.encode_batch(["I lost my card", "card lost?"])
        >>> ids.shape[0], ids.dtype
        (2, torch.int64)
    """

    def __init__(
        self,
        num_buckets: int = 2**18,
        char_ngram_range: Tuple[int, int] = (3, 5),
        word_ngram_range: Tuple[int, int] = (1, 2),
        max_features: int = 512,
        cache_size: int = 200_000,
        lowercase: bool = True,
    ) -> None:
        self.num_buckets = v.check_int("num_buckets", num_buckets, 2)
        if isinstance(char_ngram_range, (tuple, list)) and tuple(char_ngram_range) == (0, 0):
            self.char_ngram_range = (0, 0)
        else:
            self.char_ngram_range = _check_range("char_ngram_range", char_ngram_range, 1)
        self.word_ngram_range = _check_range("word_ngram_range", word_ngram_range, 1)
        if self.word_ngram_range[1] > 2:
            raise ValueError(f"word_ngram_range must have high <= 2; got {tuple(word_ngram_range)!r}")
        self.max_features = v.check_int("max_features", max_features, 1)
        self.cache_size = v.check_int("cache_size", cache_size, 0)
        self.lowercase = bool(lowercase)
        self._text_cache: Dict[str, torch.Tensor] = {}
        self._word_cache: Dict[str, List[int]] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_buckets={self.num_buckets}, char_ngram_range={self.char_ngram_range}, "
            f"word_ngram_range={self.word_ngram_range}, max_features={self.max_features})"
        )

    def __getstate__(self) -> dict:
        # DataLoader workers and checkpoints get the configuration, not the caches.
        state = dict(self.__dict__)
        state["_text_cache"] = {}
        state["_word_cache"] = {}
        return state

    def clear_cache(self) -> None:
        """Empties the per-text and per-word caches."""
        self._text_cache.clear()
        self._word_cache.clear()

    def _bucket(self, feature: str, seed: int) -> int:
        return stable_hash(feature, seed) % (self.num_buckets - 1) + 1

    def _word_ids(self, word: str) -> List[int]:
        ids = self._word_cache.get(word)
        if ids is not None:
            return ids
        ids = []
        if self.word_ngram_range[0] == 1:
            ids.append(self._bucket(word, _WORD_SEED))
        low, high = self.char_ngram_range
        if high > 0:
            padded = "<" + word + ">"
            for n in range(low, min(high, len(padded)) + 1):
                for start in range(len(padded) - n + 1):
                    ids.append(self._bucket(padded[start : start + n], _CHAR_SEED))
        if self.cache_size > 0:
            if len(self._word_cache) >= self.cache_size:
                del self._word_cache[next(iter(self._word_cache))]
            self._word_cache[word] = ids
        return ids

    def tokenize(self, text: str) -> List[str]:
        """Splits ``text`` into (lower-cased) tokens: word-character runs and punctuation marks."""
        return _TOKEN_RE.findall(text.lower() if self.lowercase else text)

    def text_ids(self, text: str) -> torch.Tensor:
        """Returns the bucket ids of one text.

        Args:
            text: the text.

        Returns:
            1D int64 tensor of length ``<= max_features`` with values in ``[1, num_buckets)``
            (empty for a text without tokens). The tensor is cached: do not modify it in place.

        Raises:
            TypeError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__} ({text!r})")
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        ids: List[int] = []
        use_bigrams = self.word_ngram_range[1] == 2
        previous = None
        for token in self.tokenize(text):
            ids.extend(self._word_ids(token))
            if use_bigrams and previous is not None:
                ids.append(self._bucket(previous + " " + token, _BIGRAM_SEED))
            previous = token
            if len(ids) >= self.max_features:
                del ids[self.max_features :]
                break
        result = torch.tensor(ids, dtype=torch.long)
        if self.cache_size > 0:
            if len(self._text_cache) >= self.cache_size:
                del self._text_cache[next(iter(self._text_cache))]
            self._text_cache[text] = result
        return result

    def _hash_batch(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)`` of a batch: ASCII texts hashed at once (NumPy), others by :meth:`text_ids`."""
        texts = check_texts("texts", texts)
        token_lists: List[List[str]] = []
        others: List[int] = []
        for i, text in enumerate(texts):
            text = text.lower() if self.lowercase else text
            if text.isascii():
                token_lists.append(_TOKEN_RE.findall(text))
            else:
                others.append(i)
                token_lists.append([])
        ids, lengths = hash_token_lists(
            token_lists,
            self.num_buckets,
            self.char_ngram_range,
            self.word_ngram_range,
            self.max_features,
            (_WORD_SEED, _BIGRAM_SEED, _CHAR_SEED),
        )
        if others:
            other_ids = [self.text_ids(texts[i]).numpy() for i in others]
            all_lengths = lengths.copy()
            all_lengths[others] = [len(row) for row in other_ids]
            starts = exclusive_cumsum(all_lengths)
            merged = np.empty(int(all_lengths.sum()), dtype=np.int64)
            merged[concatenated_ranges(starts, lengths)] = ids
            for i, row in zip(others, other_ids):
                merged[starts[i] : starts[i] + len(row)] = row
            ids, lengths = merged, all_lengths
        return ids, lengths

    def encode_flat(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hashes a batch of texts into concatenated ids and per-text offsets (``nn.EmbeddingBag``'s input).

        The ids of each text are those of :meth:`text_ids`; ASCII texts are hashed for the whole batch at
        once with NumPy (bit-identical crc32), which is several times faster than one text at a time.
        This path does not read or fill the per-text cache.

        Args:
            texts: list of B strings.

        Returns:
            ``(ids, offsets)``: 1D int64 ids of all texts in order, and ``(B,)`` int64 start of each text's
            ids in ``ids`` (a text without tokens has none).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, lengths = self._hash_batch(texts)
        return torch.from_numpy(ids), torch.from_numpy(exclusive_cumsum(lengths))

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashes a batch of texts into one padded id matrix.

        Args:
            texts: list of B strings.

        Returns:
            ``(B, L)`` int64 tensor, ``L >= 1`` the longest feature count in the batch; row i
            holds the ids of ``texts[i]`` (as :meth:`text_ids`) followed by 0 (padding).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, lengths = self._hash_batch(texts)
        width = max(int(lengths.max()), 1) if len(lengths) else 1
        padded = np.zeros((len(lengths), width), dtype=np.int64)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        columns = np.arange(len(ids)) - np.repeat(exclusive_cumsum(lengths), lengths)
        padded[rows, columns] = ids
        return torch.from_numpy(padded)
