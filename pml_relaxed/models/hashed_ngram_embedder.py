"""A small, fast text encoder: hashed word and character n-grams, pooled, then an MLP."""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import nn

from ._hashed_student import SENTENCE_MODULE_TYPE, HashedStudent, TextBatch
from .ngram_hasher import NgramHasher, check_texts

__all__ = ["HashedNgramEmbedder", "SENTENCE_MODULE_TYPE", "TextBatch"]


class HashedNgramEmbedder(HashedStudent):
    """Embeds texts from hashed word uni/bigrams and character 3-5 grams (a fastText-like student).

    Pipeline: text -> :class:`NgramHasher` bucket ids -> ``nn.EmbeddingBag(num_buckets, hidden_dim)``
    pooled as a weighted mean (weights ``idf[id]``, normalised to sum to 1 per text; all ones,
    i.e. a plain mean, until :meth:`fit_idf` is called) -> ``LayerNorm`` -> :class:`MLP` ->
    ``embedding_dim``. Word n-grams capture meaning; character n-grams make it robust to typos,
    inflections and unseen words (on Banking77 they are worth most of the accuracy). IDF
    weighting is optional: it helps an untrained model but did not help after distillation.

    Training: the dense gradient of the ``num_buckets x hidden_dim`` table makes each optimizer
    step cost O(num_buckets * hidden_dim). On CPU, ``torch.optim.Adam(..., fused=True)`` is about
    2x faster than the default; ``sparse=True`` with ``SparseAdam`` for ``self.bag`` is faster still.
    A learning rate around 3e-3 worked well for Adam on Banking77.

    ``forward`` accepts either a list of strings, or the padded id matrix returned by
    :meth:`encode_batch` / :class:`~pml_relaxed.models.TextCollator`. The latter is a single
    ``LongTensor`` and therefore survives PML's ``c_f.to_device(data, device=..., dtype=...)``;
    if a trainer casts it to a float dtype it is converted back (exact for ids < 2**24 in
    float32). A list is hashed batch-wise (:meth:`NgramHasher.encode_flat`) and pooled from flat
    ids with offsets; :meth:`encode` embeds a whole corpus of raw strings for serving.

    Args:
        embedding_dim: output dimension (e.g. 16, 32 or 64).
        num_buckets: number of hash buckets (rows of the embedding table, row 0 = padding).
        hidden_dim: width of the bucket embeddings.
        mlp_hidden_dims: hidden widths of the MLP head (may be empty for a linear head; on
            Banking77 validation intents a linear head suited 7 of the 14 benchmark methods,
            most label losses among them).
        char_ngram_range: character n-gram sizes, ``(0, 0)`` disables them.
        word_ngram_range: word n-gram sizes, ``(1, 1)`` or ``(1, 2)``.
        max_features: at most this many hashed features per text.
        sparse: use sparse gradients for the embedding table (then use an optimizer that
            supports them, e.g. ``torch.optim.SparseAdam`` for ``self.bag`` parameters);
            dense gradients touch all ``num_buckets * hidden_dim`` entries at every step.
        cache_size: maximum number of texts (and words) whose ids :meth:`NgramHasher.text_ids` caches.
        init_std: standard deviation of the normal initialisation of the bucket embeddings.
            The pooled vector is layer-normalised, so a small scale makes each optimizer step
            relatively larger: on Banking77 distillation, 0.1 beat PyTorch's default 1.0 by about
            +9 points of Recall@1 after 10 epochs with Adam (lr 1e-3), and on its validation
            intents 0.03 suited 5 of the 14 benchmark methods (relaxed contrastive among them).
            Much smaller values bring the pooled variance at initialisation (about
            ``init_std**2 / n`` for a text of n features) down to LayerNorm's epsilon (1e-5),
            which damps the first steps; at 0.03 that is already the case for long texts.

    Shape:
        Input: B strings, or a ``(B, L)`` integer id matrix padded with 0. Output
        ``(B, embedding_dim)``, not normalised.

    Raises:
        TypeError: a constructor argument of the wrong type; in ``forward``, input that is neither
            a list of str nor an integer-valued tensor.
        ValueError: a constructor argument out of range; in ``forward``, an id matrix that is not
            2D, has non-integer values or ids outside ``[0, num_buckets)``.

    Examples:
        >>> model = HashedNgramEmbedder(embedding_dim=32, num_buckets=2**16)
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
        idf = torch.ones(num_buckets)
        idf[0] = 0.0
        self.register_buffer("idf", idf)
        self._build_pooling(num_buckets, sparse)
        config.update(word_ngram_range=list(hasher.word_ngram_range), max_features=max_features)
        self._store_config(config)

    def _build_pooling(self, num_buckets: int, sparse: bool) -> None:
        """Creates the pooling's own parameters: none for the (IDF-weighted) mean; a subclass adds its own."""

    @torch.no_grad()
    def fit_idf(self, texts: Iterable[str]) -> "HashedNgramEmbedder":
        """Sets the pooling weights to smoothed IDF values computed on a corpus.

        ``idf[b] = log((1 + N) / (1 + df[b])) + 1`` (scikit-learn's smoothed IDF), where ``N`` is
        the number of texts and ``df[b]`` the number of texts containing bucket ``b``. Buckets
        never seen get the largest weight, as a rare feature would.

        Args:
            texts: the training corpus, a list of str.

        Returns:
            ``self``, for chaining.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
            ValueError: ``texts`` is empty.
        """
        texts = check_texts("texts", texts)
        if len(texts) == 0:
            raise ValueError("texts must hold at least one text to compute IDF weights; got 0 texts")
        df = torch.zeros(self.num_buckets, dtype=torch.float64)
        for text in texts:
            df[torch.unique(self.hasher.text_ids(text))] += 1.0
        idf = torch.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
        idf[0] = 0.0
        self.idf.copy_(idf.to(self.idf.dtype))
        return self

    def pool(self, ids: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """IDF-weighted mean of the bucket embeddings of each text.

        Args:
            ids: ``(B, L)`` int64 ids, 0 = padding; or, with ``offsets``, the 1D concatenated ids of
                :meth:`NgramHasher.encode_flat`.
            offsets: ``(B,)`` start of each text's ids in the 1D ``ids``, or ``None`` for a padded matrix.

        Returns:
            ``(B, hidden_dim)``; texts without ids are zero.
        """
        if offsets is None:
            weights = self.idf[ids]
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
            return self.bag(ids, per_sample_weights=weights)
        lengths = torch.diff(offsets, append=offsets.new_tensor([ids.numel()]))
        if bool((self.idf[1:] == 1).all()):  # plain mean: the weights are 1 / length, no gather
            weights = (1.0 / lengths.clamp_min(1).to(self.idf.dtype)).repeat_interleave(lengths)
        else:
            weights = self.idf[ids]
            text_of_id = torch.repeat_interleave(torch.arange(len(offsets), device=ids.device), lengths)
            totals = weights.new_zeros(len(offsets)).index_add_(0, text_of_id, weights)
            weights = weights / totals.clamp_min(1e-12)[text_of_id]
        # Flat ids hold no padding, so no padding_idx: that lets PyTorch use its fast (fbgemm) kernel, about
        # 3x faster; it sums in another rounding order than the padded path (float32 rounding apart).
        return nn.functional.embedding_bag(
            ids, self.bag.weight, offsets, mode="sum", per_sample_weights=weights, sparse=self.bag.sparse
        )

    def embed(self, ids: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Embeds hashed ids: :meth:`pool`, ``LayerNorm``, MLP head.

        Args:
            ids: a ``(B, L)`` padded id matrix, or 1D concatenated ids with ``offsets``
                (:meth:`NgramHasher.encode_flat`).
            offsets: ``(B,)`` start of each text in the 1D ``ids``, or ``None``.

        Returns:
            ``(B, embedding_dim)`` un-normalised embeddings.
        """
        return self.head(self.norm(self.pool(ids, offsets)))

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeds a checked ``(B, L)`` id matrix (0 = padding): :meth:`embed` without offsets."""
        return self.embed(ids)

    def embed_hashed(self, hashed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeds the ``{"input_ids", "offsets"}`` of :meth:`hash_texts`: :meth:`embed` of the flat ids."""
        return self.embed(hashed["input_ids"], hashed["offsets"])
