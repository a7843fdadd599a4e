"""A hashed n-gram text student whose pooling learns how much each n-gram counts (attention pooling)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .hashed_ngram_embedder import HashedNgramEmbedder


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


class AttentionPooledNgramEmbedder(HashedNgramEmbedder):
    """Hashed n-grams pooled with learned per-n-gram weights (attention pooling), then ``LayerNorm`` and an MLP.

    A :class:`HashedNgramEmbedder` whose pooling learns how much each n-gram counts. Each hash bucket ``b``
    has a vector ``E[b]`` (``hidden_dim``) and a learned scalar score ``s[b]`` (``self.scores``). A text with
    feature ids ``i_1..i_n`` (:class:`NgramHasher`: word uni/bigrams and character n-grams) is pooled as

    ``p = sum_j w_j * E[i_j]``,  ``w_j = idf[i_j] * exp(s[i_j]) / sum_k idf[i_k] * exp(s[i_k])``

    (a softmax of ``s + log idf`` over the text's ids), then ``LayerNorm`` -> :class:`MLP` ->
    ``embedding_dim``. The scores start at 0 and ``idf`` at 1 (:meth:`fit_idf` sets it), so an untrained
    model pools exactly as a :class:`HashedNgramEmbedder` with the same tables; training lets
    informative n-grams ("refund", "pin") dominate and frequent ones ("my", "<th") fade, a learned,
    task-specific IDF, for one extra gather of ``n`` scalars per text.

    The constructor arguments, ``forward``, ``encode``, saving and the id matrices are
    :class:`HashedNgramEmbedder`'s (so the same :class:`TextCollator`, packed rows and
    :class:`NgramDropout` apply); ``sparse=True`` makes the score table's gradients sparse too. A saved
    folder loads only as the class that saved it.

    Shape:
        Input: B strings, or a ``(B, L)`` integer id matrix padded with 0. Output ``(B, embedding_dim)``,
        not normalised; a text without features gives ``head(LayerNorm(0))``.

    Raises:
        TypeError, ValueError: as :class:`HashedNgramEmbedder`.

    Examples:
        >>> model = AttentionPooledNgramEmbedder(embedding_dim=32, num_buckets=2**16)
        >>> model(["where is my card?", "my card has not arrived"]).shape
        torch.Size([2, 32])
    """

    def _build_pooling(self, num_buckets: int, sparse: bool) -> None:
        self.scores = nn.Embedding(num_buckets, 1, sparse=bool(sparse))
        nn.init.zeros_(self.scores.weight)

    def pooling_weights(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The weight ``w_j`` of each id within its text (the formula above).

        Args:
            ids: ``(total,)`` concatenated ids of B texts (no padding).
            offsets: ``(B,)`` start of each text's ids.

        Returns:
            ``(total,)`` weights summing to 1 over each text's ids.
        """
        scores = nn.functional.embedding(ids, self.scores.weight, sparse=self.scores.sparse).squeeze(1)
        return segment_softmax(scores + self.idf[ids].log(), offsets)

    def pool(self, ids: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention-pooled bucket embeddings of each text (the formula above), ``(B, hidden_dim)``.

        Takes what :meth:`HashedNgramEmbedder.pool` takes, a padded ``(B, L)`` matrix or flat ids with
        ``offsets``; a padded matrix is pooled from its non-padding ids. Texts without ids are zero.
        """
        if offsets is None:
            ids, offsets = flat_from_padded(ids)
        weights = self.pooling_weights(ids, offsets)
        return nn.functional.embedding_bag(
            ids, self.bag.weight, offsets, mode="sum", per_sample_weights=weights, sparse=self.bag.sparse
        )
