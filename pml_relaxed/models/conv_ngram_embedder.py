"""A hashed n-gram text student that sees word order: token vectors, one 1-D convolution, mean pooling."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from .. import _validation as v
from ._hashed_student import HashedStudent
from .token_ngram_hasher import TokenNgramHasher


def _crossing_rows(first_token: torch.Tensor, tokens_per_text: torch.Tensor, shift: int, count: int) -> torch.Tensor:
    """The rows ``i`` of a batch's concatenated tokens whose row ``i + shift`` exists but belongs to another text.

    Args:
        first_token: ``(B,)`` row of each text's first token.
        tokens_per_text: ``(B,)`` number of tokens of each text.
        shift: a non-zero offset.
        count: the number of rows.

    Returns:
        1D int64 row indices (a text's last ``shift`` tokens for ``shift > 0``, its first ``-shift`` for
        ``shift < 0``, where the row they read is in range).
    """
    rows = []
    for step in range(abs(shift)):
        # for shift > 0, the token ``step`` places before a text's end; for shift < 0, ``step`` after its start
        position = tokens_per_text - 1 - step if shift > 0 else torch.full_like(tokens_per_text, step)
        keep = (position >= 0) & (position < tokens_per_text)
        rows.append((first_token + position)[keep])
    rows = torch.cat(rows)
    return rows[(rows + shift >= 0) & (rows + shift < count)]


class ConvNgramEmbedder(HashedStudent):
    """Token vectors from hashed n-grams, a residual 1-D convolution over the token sequence, mean-pooled, an MLP.

    Pipeline: text -> :class:`TokenNgramHasher` (the first ``max_tokens`` tokens, each with its unigram
    and character n-grams) -> token vectors ``t_i`` = mean of the token's bucket embeddings
    (``hidden_dim``) -> ``c_i = t_i + GELU(conv(t)_i)``, ``conv`` a ``Conv1d(hidden_dim, hidden_dim,
    kernel_size)`` over the token axis with zero padding at both ends (so ``c_i`` sees tokens
    ``i - k//2 .. i + k//2``: word order, negation, "top up" vs "up top") -> the mean of ``c_i`` over the
    text's tokens -> ``LayerNorm`` -> :class:`MLP` -> ``embedding_dim``. Word bigrams are not hashed: the
    convolution sees neighbouring tokens itself. A text without tokens pools to zero.

    ``forward`` takes a list of strings (hashed token by token, pooled from flat ids) or the 2D slotted
    id matrix of :meth:`encode_batch` (``features_per_token`` columns per token, the layout
    :class:`TokenNgramHasher` documents; :class:`TextCollator` and :class:`NgramDropout` work on it;
    a token whose ids are all dropped is left out, its neighbours becoming adjacent).

    Args:
        embedding_dim: output dimension (e.g. 16, 32 or 64).
        num_buckets: number of hash buckets (rows of the embedding table, row 0 = padding).
        hidden_dim: width of the bucket embeddings, token vectors and convolution.
        mlp_hidden_dims: hidden widths of the MLP head (empty for a linear head).
        char_ngram_range: character n-gram sizes, ``(0, 0)`` disables them (tokens are then unigrams only).
        kernel_size: tokens the convolution sees at once, odd, >= 1.
        features_per_token: at most this many hashed ids per token.
        max_tokens: at most this many tokens per text.
        sparse: sparse gradients for the embedding table ``bag``.
        cache_size: maximum number of tokens whose ids :meth:`NgramHasher.text_ids` caches.
        init_std: standard deviation of the normal initialisation of the bucket embeddings.

    Shape:
        Input: B strings, or a ``(B, T * features_per_token)`` integer id matrix padded with 0. Output
        ``(B, embedding_dim)``, not normalised.

    Raises:
        TypeError: a constructor argument of the wrong type; in ``forward``, input that is neither a list
            of str nor an integer-valued tensor.
        ValueError: a constructor argument out of range (``kernel_size`` even or < 1); in ``forward``, an id
            matrix that is not 2D, whose width is not a multiple of ``features_per_token``, with
            non-integer values or ids outside ``[0, num_buckets)``.

    Examples:
        >>> model = ConvNgramEmbedder(embedding_dim=32, num_buckets=2**16)
        >>> model(["where is my card?", "my card has not arrived"]).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        embedding_dim: int = 32,
        num_buckets: int = 2**18,
        hidden_dim: int = 64,
        mlp_hidden_dims: Sequence[int] = (256,),
        char_ngram_range: Tuple[int, int] = (3, 5),
        kernel_size: int = 3,
        features_per_token: int = 32,
        max_tokens: int = 64,
        sparse: bool = False,
        cache_size: int = 100_000,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        hasher = TokenNgramHasher(
            num_buckets=num_buckets,
            char_ngram_range=char_ngram_range,
            features_per_token=features_per_token,
            max_tokens=max_tokens,
            cache_size=cache_size,
        )
        v.check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the same number of tokens on each side); got {kernel_size}")
        config = self._build_bag_layers(hasher, hidden_dim, mlp_hidden_dims, embedding_dim, init_std, sparse)
        self.conv = nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2)
        config.update(kernel_size=kernel_size, features_per_token=features_per_token, max_tokens=max_tokens)
        self._store_config(config)

    def hash_texts(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Hashes a batch token by token (:meth:`TokenNgramHasher.encode_tokens`).

        Args:
            texts: B strings.

        Returns:
            ``{"input_ids": (total,), "offsets": (T,) start of each token's ids, "tokens_per_text": (B,)}``,
            all int64.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, offsets, tokens_per_text = self.hasher.encode_tokens(texts)
        return {"input_ids": ids, "offsets": offsets, "tokens_per_text": tokens_per_text}

    def check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Checks a slotted id matrix (see :meth:`HashedStudent.check_ids`) and its width.

        Raises:
            TypeError: a tensor of a non-integer, non-float dtype.
            ValueError: not 2D, a width that is not a multiple of ``features_per_token``, non-integer values,
                or ids outside ``[0, num_buckets)``.
        """
        ids = super().check_ids(ids)
        width = self.hasher.features_per_token
        if ids.shape[1] % width != 0:
            raise ValueError(
                f"inputs as a tensor must have a multiple of features_per_token={width} columns (the "
                f"(batch, tokens * {width}) layout of encode_batch); got {ids.shape[1]} columns"
            )
        return ids

    def contextualize(self, vectors: torch.Tensor, tokens_per_text: torch.Tensor) -> torch.Tensor:
        """The convolution, residual and mean over each text's tokens, then ``LayerNorm`` and head.

        The convolution runs on the concatenated tokens of the batch (no padding to the longest text): one
        matrix product per kernel tap, tap ``j`` adding token ``i + j - kernel_size // 2`` to the output of
        token ``i`` when both are in the same text (zero otherwise), which is the zero-padded ``Conv1d`` of
        each text.

        Args:
            vectors: ``(T, hidden_dim)`` token vectors of B texts, text after text.
            tokens_per_text: ``(B,)`` int64 number of tokens of each text (summing to T).

        Returns:
            ``(B, embedding_dim)``.
        """
        count, batch = vectors.shape[0], tokens_per_text.shape[0]
        weight = self.conv.weight  # (out, in, kernel): tap j maps token i + j - kernel // 2 to token i
        center = weight.shape[2] // 2
        first_token = torch.cumsum(tokens_per_text, dim=0) - tokens_per_text
        conv = torch.addmm(self.conv.bias, vectors, weight[:, :, center].t())
        for tap in range(weight.shape[2]):
            shift = tap - center  # token i reads token i + shift, when it is in the same text
            if shift == 0 or abs(shift) >= count:
                continue
            # Each token is read by one token at this tap; a reader in another text reads zero.
            source = vectors.index_fill(0, _crossing_rows(first_token, tokens_per_text, shift, count) + shift, 0.0)
            if shift > 0:
                conv[:-shift].addmm_(source[shift:], weight[:, :, tap].t())
            else:
                conv[-shift:].addmm_(source[:shift], weight[:, :, tap].t())
        text_of_token = torch.repeat_interleave(torch.arange(batch, device=vectors.device), tokens_per_text)
        mixed = vectors + nn.functional.gelu(conv)
        sums = mixed.new_zeros(batch, mixed.shape[1]).index_add(0, text_of_token, mixed)
        pooled = sums / tokens_per_text.clamp_min(1).unsqueeze(1).to(sums.dtype)
        return self.head(self.norm(pooled))

    def embed_hashed(self, hashed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeds the output of :meth:`hash_texts`: token vectors (flat, fast kernel), then :meth:`contextualize`."""
        # Every token has at least its unigram, so flat ids hold no padding: the fast kernel, no padding_idx.
        vectors = nn.functional.embedding_bag(
            hashed["input_ids"], self.bag.weight, hashed["offsets"], mode="mean", sparse=self.bag.sparse
        )
        return self.contextualize(vectors, hashed["tokens_per_text"])

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeds a checked slotted id matrix: per-token means of the present ids, then :meth:`contextualize`.

        A slot without ids (padding, or a token whose ids were all dropped) is no token: its neighbours meet.
        """
        batch, width = ids.shape[0], self.hasher.features_per_token
        per_token = ids.reshape(-1, width)
        counts = (per_token != 0).sum(dim=1)
        present = counts > 0
        kept = per_token[present]
        vectors = self.bag(kept) / counts[present].unsqueeze(1).to(self.bag.weight.dtype)
        return self.contextualize(vectors, present.reshape(batch, -1).sum(dim=1))
