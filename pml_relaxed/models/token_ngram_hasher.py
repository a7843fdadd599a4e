"""Hashing that keeps word order: each token's unigram and character n-grams, token by token."""

from __future__ import annotations

import sys
from typing import List, Sequence, Tuple

import numpy as np
import torch

from .. import _validation as v
from ._batch_hashing import exclusive_cumsum, hash_token_lists
from .ngram_hasher import _BIGRAM_SEED, _CHAR_SEED, _WORD_SEED, NgramHasher, check_texts


class TokenNgramHasher(NgramHasher):
    """Hashes each token of a text on its own (unigram + character n-grams), so a model sees the token sequence.

    :class:`NgramHasher` gives a text one bag of features; this hasher gives one small bag per token, in
    order: the first ``max_tokens`` tokens (:meth:`NgramHasher.tokenize`) each get the ids of
    ``NgramHasher.text_ids(token)`` with ``word_ngram_range=(1, 1)``: the token's unigram, then its
    character n-grams of ``"<" + token + ">"``, at most ``features_per_token`` of them (the longest
    character n-grams of long words go first). No word bigrams: a model reading the sequence (e.g.
    :class:`ConvNgramEmbedder`'s convolution) sees neighbouring tokens itself.

    :meth:`encode_batch` returns a 2D id matrix whose columns are ``max_tokens_in_batch`` slots of
    ``features_per_token`` ids (column ``t * features_per_token + k`` is feature ``k`` of token ``t``,
    0 = padding), so it moves through PML trainers, :class:`TextCollator` and :class:`NgramDropout` like
    :class:`NgramHasher`'s matrix. :meth:`encode_tokens` gives the flat form (ids, per-token offsets,
    tokens per text).

    Args:
        num_buckets: number of hash buckets including the padding id 0; >= 2.
        char_ngram_range: ``(low, high)`` character n-gram sizes; ``(0, 0)`` disables them.
        features_per_token: at most this many ids per token (its slot width); >= 1.
        max_tokens: at most this many tokens per text (the rest is dropped); >= 1.
        cache_size: at most this many tokens' ids are cached by :meth:`NgramHasher.text_ids`.
        lowercase: lower-case texts before tokenising.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range.

    Examples:
        >>> hasher = TokenNgramHasher(num_buckets=2**16, features_per_token=16)
        >>> hasher.encode_batch(["I lost my card", "card lost?"]).shape  # 4 tokens x 16 slots
        torch.Size([2, 64])
    """

    def __init__(
        self,
        num_buckets: int = 2**18,
        char_ngram_range: Tuple[int, int] = (3, 5),
        features_per_token: int = 32,
        max_tokens: int = 64,
        cache_size: int = 200_000,
        lowercase: bool = True,
    ) -> None:
        super().__init__(
            num_buckets=num_buckets,
            char_ngram_range=char_ngram_range,
            word_ngram_range=(1, 1),
            max_features=v.check_int("features_per_token", features_per_token, 1),
            cache_size=cache_size,
            lowercase=lowercase,
        )
        self.features_per_token = features_per_token
        self.max_tokens = v.check_int("max_tokens", max_tokens, 1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_buckets={self.num_buckets}, char_ngram_range={self.char_ngram_range}, "
            f"features_per_token={self.features_per_token}, max_tokens={self.max_tokens})"
        )

    def token_lists(self, texts: Sequence[str]) -> List[List[str]]:
        """The first ``max_tokens`` tokens of each text.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        return [self.tokenize(text)[: self.max_tokens] for text in check_texts("texts", texts)]

    def encode_tokens(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hashes a batch token by token into flat ids, per-token offsets and the number of tokens of each text.

        Args:
            texts: B strings.

        Returns:
            ``(ids, offsets, tokens_per_text)``: the ids of every token of every text in order (1D int64),
            the ``(T,)`` start of each of the T tokens' ids (every token has at least one id), and the
            ``(B,)`` number of tokens of each text (0 for a text without tokens).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        texts = check_texts("texts", texts)
        token_lists = self.token_lists(texts)
        tokens_per_text = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        tokens = [token for tokens in token_lists for token in tokens]
        if all(map(str.isascii, texts)):
            ids, lengths = self._hash_ascii_tokens(token_lists, tokens)
        else:  # each token hashed as a one-token text (per-text path for the non-ASCII ones)
            ids, lengths = self._hash_batch(tokens)
        return torch.from_numpy(ids), torch.from_numpy(exclusive_cumsum(lengths)), torch.from_numpy(tokens_per_text)

    def _hash_ascii_tokens(self, token_lists: List[List[str]], tokens: List[str]) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)`` of every token of ASCII texts, at once with NumPy.

        Without word bigrams, the ids of a text (:func:`hash_token_lists`, untruncated) are its tokens' blocks
        one after the other, ``[unigram, character n-grams]``; a token of ``c`` characters (one byte each) has
        ``1 + sum_n max(c + 3 - n, 0)`` of them, so each block is cut to ``features_per_token`` in place.
        """
        ids, _ = hash_token_lists(
            token_lists,
            self.num_buckets,
            self.char_ngram_range,
            self.word_ngram_range,
            sys.maxsize,
            (_WORD_SEED, _BIGRAM_SEED, _CHAR_SEED),
        )
        padded = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)) + 2
        low, high = self.char_ngram_range
        blocks = np.ones(len(tokens), dtype=np.int64)
        for n in range(low, high + 1) if high > 0 else ():
            blocks += np.maximum(padded - n + 1, 0)
        if len(blocks) and int(blocks.max()) > self.features_per_token:
            position = np.arange(len(ids)) - np.repeat(exclusive_cumsum(blocks), blocks)
            ids = ids[position < self.features_per_token]
            blocks = np.minimum(blocks, self.features_per_token)
        return ids, blocks

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashes a batch into the 2D slotted id matrix (``features_per_token`` columns per token, 0 = padding).

        Args:
            texts: B strings.

        Returns:
            ``(B, T * features_per_token)`` int64, ``T >= 1`` the most tokens of a text in the batch.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, offsets, tokens_per_text = (part.numpy() for part in self.encode_tokens(texts))
        width = self.features_per_token
        slots = max(int(tokens_per_text.max()), 1) if len(tokens_per_text) else 1
        matrix = np.zeros((len(tokens_per_text), slots * width), dtype=np.int64)
        lengths = np.diff(np.append(offsets, len(ids)))
        # token j is token (j - first token of its text) of its text; its k-th id goes to column slot * width + k
        text_of_token = np.repeat(np.arange(len(tokens_per_text)), tokens_per_text)
        slot_of_token = np.arange(len(offsets)) - np.repeat(exclusive_cumsum(tokens_per_text), tokens_per_text)
        columns = np.repeat(slot_of_token * width, lengths) + (np.arange(len(ids)) - np.repeat(offsets, lengths))
        matrix[np.repeat(text_of_token, lengths), columns] = ids
        return torch.from_numpy(matrix)
