"""A hashed n-gram text student whose pooling learns how much each n-gram counts (attention pooling)."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from ._hashed_student import HashedStudent
from .ngram_hasher import NgramHasher


def flat_from_padded(ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The non-padding ids of a ``(B, L)`` id matrix, concatenated row by row, and the ``(B,)`` start of each row."""
    present = ids != 0
    lengths = present.sum(dim=1)
    offsets = torch.cumsum(lengths, dim=0) - lengths
    return ids[present], offsets


def segment_softmax(scores: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Softmax of consecutive segments of a 1D tensor: segment ``b`` runs from ``offsets[b]`` to the next offset.

    Args:
        scores: ``(total,)`` float scores.
        offsets: ``(B,)`` int64 start of each segment (non-decreasing; empty segments allowed).

    Returns:
        ``(total,)`` weights, non-negative and summing to 1 over each non-empty segment.
    """
    lengths = torch.diff(offsets, append=offsets.new_tensor([scores.numel()]))
    segment = torch.repeat_interleave(torch.arange(len(offsets), device=scores.device), lengths)
    # The softmax does not change when a constant is subtracted per segment: its max, for stability, as a constant.
    peak = scores.new_full((len(offsets),), float("-inf"))
    peak = peak.scatter_reduce(0, segment, scores.detach(), reduce="amax", include_self=True)
    exps = torch.exp(scores - peak[segment])
    totals = exps.new_zeros(len(offsets)).index_add(0, segment, exps)
    return exps / totals[segment]


class AttentionPooledNgramEmbedder(HashedStudent):
    """Hashed n-grams pooled with learned per-n-gram weights (attention pooling), then ``LayerNorm`` and an MLP.

    Each hash bucket ``b`` has a vector ``E[b]`` (``hidden_dim``) and a learned scalar score ``s[b]``. A text
    with feature ids ``i_1..i_n`` (:class:`NgramHasher`: word uni/bigrams and character n-grams) is pooled as

    ``p = sum_j softmax(s[i_1..i_n])_j * E[i_j]``,  ``softmax(s)_j = exp(s[i_j]) / sum_k exp(s[i_k])``,

    then ``LayerNorm`` -> :class:`MLP` -> ``embedding_dim``. The scores start at 0, so an untrained model
    pools the plain mean, exactly as :class:`HashedNgramEmbedder` without IDF weights; training lets
    informative n-grams ("refund", "pin") dominate and frequent ones ("my", "<th") fade, a learned,
    task-specific IDF. The model costs one extra gather of ``n`` scalars per text.

    ``forward`` takes a list of strings or the padded ``(B, L)`` id matrix of :meth:`encode_batch`
    (the same ids as :class:`HashedNgramEmbedder`'s, so the same :class:`TextCollator`, packed rows and
    :class:`NgramDropout` apply); both are pooled from flat ids with offsets.

    Args:
        embedding_dim: output dimension (e.g. 16, 32 or 64).
        num_buckets: number of hash buckets (rows of the tables, row 0 = padding).
        hidden_dim: width of the bucket embeddings.
        mlp_hidden_dims: hidden widths of the MLP head (empty for a linear head).
        char_ngram_range: character n-gram sizes, ``(0, 0)`` disables them.
        word_ngram_range: word n-gram sizes, ``(1, 1)`` or ``(1, 2)``.
        max_features: at most this many hashed features per text.
        sparse: sparse gradients for the vector table ``bag`` and the score table ``scores`` (use e.g.
            ``torch.optim.SparseAdam`` for their parameters).
        cache_size: maximum number of texts (and words) whose ids :meth:`NgramHasher.text_ids` caches.
        init_std: standard deviation of the normal initialisation of the bucket embeddings.

    Shape:
        Input: B strings, or a ``(B, L)`` integer id matrix padded with 0. Output ``(B, embedding_dim)``,
        not normalised; a text without features gives ``head(LayerNorm(0))``.

    Raises:
        TypeError: a constructor argument of the wrong type; in ``forward``, input that is neither a list
            of str nor an integer-valued tensor.
        ValueError: a constructor argument out of range; in ``forward``, an id matrix that is not 2D, has
            non-integer values or ids outside ``[0, num_buckets)``.

    Examples:
        >>> model = AttentionPooledNgramEmbedder(embedding_dim=32, num_buckets=2**16)
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
        word_ngram_range: Tuple[int, int] = (1, 2),
        max_features: int = 512,
        sparse: bool = False,
        cache_size: int = 100_000,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        hasher = NgramHasher(
            num_buckets=num_buckets,
            char_ngram_range=char_ngram_range,
            word_ngram_range=word_ngram_range,
            max_features=max_features,
            cache_size=cache_size,
        )
        config = self._build_bag_layers(hasher, hidden_dim, mlp_hidden_dims, embedding_dim, init_std, sparse)
        self.scores = nn.Embedding(num_buckets, 1, sparse=bool(sparse))
        nn.init.zeros_(self.scores.weight)
        config.update(word_ngram_range=list(hasher.word_ngram_range), max_features=max_features)
        self._store_config(config)

    def pooling_weights(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The softmax weight of each id within its text.

        Args:
            ids: ``(total,)`` concatenated ids of B texts.
            offsets: ``(B,)`` start of each text's ids.

        Returns:
            ``(total,)`` weights summing to 1 over each text's ids.
        """
        scores = nn.functional.embedding(ids, self.scores.weight, sparse=self.scores.sparse).squeeze(1)
        return segment_softmax(scores, offsets)

    def pool(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Attention-pooled bucket embeddings of each text (the formula above).

        Args:
            ids: ``(total,)`` concatenated ids of B texts (:meth:`NgramHasher.encode_flat`).
            offsets: ``(B,)`` start of each text's ids.

        Returns:
            ``(B, hidden_dim)``; texts without ids are zero.
        """
        weights = self.pooling_weights(ids, offsets)
        return nn.functional.embedding_bag(
            ids, self.bag.weight, offsets, mode="sum", per_sample_weights=weights, sparse=self.bag.sparse
        )

    def embed_hashed(self, hashed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeds the ``{"input_ids", "offsets"}`` of :meth:`hash_texts`: pool, ``LayerNorm``, MLP head."""
        return self.head(self.norm(self.pool(hashed["input_ids"], hashed["offsets"])))

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeds a checked ``(B, L)`` id matrix (0 = padding), pooled from its non-padding ids."""
        flat, offsets = flat_from_padded(ids)
        return self.embed_hashed({"input_ids": flat, "offsets": offsets})
