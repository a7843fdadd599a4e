"""A small, fast text encoder: hashed word and character n-grams, pooled, then an MLP."""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .. import _validation as v
from ._model_folder import (
    PathLike,
    check_folder_path,
    load_weights,
    read_config,
    save_weights,
    write_config,
    write_sentence_transformers_metadata,
)
from .mlp import MLP
from .ngram_hasher import NgramHasher, check_texts

TextBatch = Union[Sequence[str], torch.Tensor]

#: the sentence-transformers module class named in a saved folder's ``modules.json``
SENTENCE_MODULE_TYPE = "pml_relaxed.models.hashed_ngram_sentence_module.HashedNgramSentenceModule"


class HashedNgramEmbedder(nn.Module):
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
        self.hasher = NgramHasher(
            num_buckets=num_buckets,
            char_ngram_range=char_ngram_range,
            word_ngram_range=word_ngram_range,
            max_features=max_features,
            cache_size=cache_size,
        )
        v.check_int("hidden_dim", hidden_dim, 1)
        self.num_buckets = num_buckets
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)):
            raise TypeError(f"init_std must be a float > 0; got {type(init_std).__name__} ({init_std!r})")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0; got {init_std!r}")
        self.bag = nn.EmbeddingBag(num_buckets, hidden_dim, mode="sum", padding_idx=0, sparse=sparse)
        with torch.no_grad():
            self.bag.weight.normal_(0.0, float(init_std))
            self.bag.weight[0].zero_()
        self.norm = nn.LayerNorm(hidden_dim)
        self.head = MLP(hidden_dim, list(mlp_hidden_dims), embedding_dim)
        self.embedding_dim = self.head.out_dim
        idf = torch.ones(num_buckets)
        idf[0] = 0.0
        self.register_buffer("idf", idf)
        self._config = {
            "embedding_dim": self.embedding_dim,
            "num_buckets": num_buckets,
            "hidden_dim": hidden_dim,
            "mlp_hidden_dims": list(self.head.hidden_dims),
            "char_ngram_range": list(self.hasher.char_ngram_range),
            "word_ngram_range": list(self.hasher.word_ngram_range),
            "max_features": max_features,
            "sparse": bool(sparse),
            "cache_size": cache_size,
            "init_std": float(init_std),
        }

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashes texts into the padded ``(B, L)`` int64 id matrix that ``forward`` accepts.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        return self.hasher.encode_batch(texts)

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

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2:
            raise ValueError(f"inputs as a tensor must be a 2D (batch, length) id matrix; got shape {tuple(ids.shape)}")
        if ids.is_floating_point():
            rounded = ids.round()
            if not bool((rounded == ids).all()):
                raise ValueError(
                    f"inputs as a tensor must hold integer bucket ids; got non-integer values in dtype "
                    f"{ids.dtype} (was the id matrix cast to a low-precision dtype? use dtype=None)"
                )
            ids = rounded.long()
        elif ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"inputs as a tensor must be an integer tensor; got dtype {ids.dtype}")
        if ids.numel() > 0:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= self.num_buckets:
                raise ValueError(f"inputs ids must be in [0, {self.num_buckets}); got values in [{low}, {high}]")
        return ids.long()

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

    def forward(self, inputs: TextBatch) -> torch.Tensor:
        """Embeds a batch of texts.

        Args:
            inputs: list of B str, or a ``(B, L)`` id matrix from :meth:`encode_batch`.

        Returns:
            ``(B, embedding_dim)`` un-normalised embeddings.

        Raises:
            TypeError: ``inputs`` is neither a list of str nor an integer-valued tensor.
            ValueError: a malformed id matrix (see :class:`HashedNgramEmbedder`).
        """
        device = self.bag.weight.device
        if isinstance(inputs, torch.Tensor):
            return self.embed(self._check_ids(inputs).to(device))
        if isinstance(inputs, (list, tuple)):
            ids, offsets = self.hasher.encode_flat(inputs)
            return self.embed(ids.to(device), offsets.to(device))
        raise TypeError(f"inputs must be a list of str or a (batch, length) id tensor; got {type(inputs).__name__}")

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments of this model (JSON-serialisable), as :meth:`save_pretrained` stores them."""
        return copy.deepcopy(self._config)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embeds a list of raw texts in batches, tokenising and hashing included, in eval mode, without gradients.

        The training mode of the model is restored afterwards. Every text is embedded on its own (no
        batch statistics), so the result does not depend on ``batch_size``.

        Args:
            texts: N strings.
            batch_size: texts per forward pass, >= 1.

        Returns:
            ``(N, embedding_dim)`` float tensor on the model's device (not normalised).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str, or ``batch_size`` is not an int.
            ValueError: ``batch_size < 1``.

        Examples:
            >>> model = HashedNgramEmbedder(embedding_dim=16, num_buckets=2**12)
            >>> model.encode(["lost my card", "card not arrived", "exchange rate"], batch_size=2).shape
            torch.Size([3, 16])
        """
        texts = check_texts("texts", texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int >= 1; got {type(batch_size).__name__} ({batch_size!r})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
        was_training = self.training
        self.eval()
        try:
            parts = [self(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        finally:
            self.train(was_training)
        if not parts:
            return torch.zeros(0, self.embedding_dim, device=self.bag.weight.device)
        return torch.cat(parts)

    def save_pretrained(self, path: PathLike) -> None:
        """Saves the model to a folder that :meth:`from_pretrained` and ``SentenceTransformer`` both load.

        Writes ``pml_relaxed_config.json`` (:meth:`get_config`), ``model.safetensors`` (weights, IDF
        pooling weights included) and sentence-transformers' ``modules.json`` and
        ``config_sentence_transformers.json``, whose single module is
        :class:`~pml_relaxed.models.HashedNgramSentenceModule`; no code is written. :meth:`from_pretrained`
        and ``SentenceTransformer(modules=[HashedNgramSentenceModule.load(path)])`` read only the JSON
        configuration and the safetensors weights: they run no code from the folder, whatever else it
        holds. ``SentenceTransformer(path, trust_remote_code=True)`` imports the class that
        ``modules.json`` names, which in a tampered folder can be a ``modeling_*.py`` of the folder: it
        runs the folder's code, so use it only for folders you trust. Existing files of these names are
        overwritten.

        Args:
            path: the folder (created if missing).

        Raises:
            TypeError: ``path`` is not a str or a path.
            ImportError: ``safetensors`` is not installed.

        Examples:
            >>> import tempfile
            >>> model = HashedNgramEmbedder(embedding_dim=8, num_buckets=2**10)
            >>> folder = tempfile.mkdtemp()
            >>> model.save_pretrained(folder)
            >>> loaded = HashedNgramEmbedder.from_pretrained(folder)
            >>> torch.equal(loaded.encode(["lost card"]), model.encode(["lost card"]))
            True
        """
        folder = check_folder_path("path", path)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_files(folder)
        write_sentence_transformers_metadata(folder, SENTENCE_MODULE_TYPE)

    def save_files(self, folder: PathLike) -> None:
        """Writes only ``pml_relaxed_config.json`` and ``model.safetensors`` into an existing folder."""
        folder = check_folder_path("folder", folder)
        write_config(folder, self, self.get_config())
        save_weights(self, folder)

    @classmethod
    def from_pretrained(cls, path: PathLike, device: Union[str, torch.device] = "cpu") -> "HashedNgramEmbedder":
        """Loads a model saved by :meth:`save_pretrained`, in eval mode.

        Reads ``pml_relaxed_config.json`` (JSON) and ``model.safetensors`` only: nothing in the folder is
        imported, run or unpickled (``modules.json``, ``*.py`` and pickled ``*.bin`` / ``*.pkl`` files are
        ignored).

        Args:
            path: the saved folder.
            device: device to put the model on.

        Returns:
            The model, with the saved configuration and weights.

        Raises:
            TypeError: ``path`` is not a str or a path.
            FileNotFoundError: the folder lacks ``pml_relaxed_config.json`` or ``model.safetensors``.
            ValueError: the configuration is not that of a :class:`HashedNgramEmbedder`.
            ImportError: ``safetensors`` is not installed.
        """
        folder = check_folder_path("path", path)
        config = read_config(folder, cls)
        for key in ("mlp_hidden_dims", "char_ngram_range", "word_ngram_range"):
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        model = cls(**config)
        load_weights(model, folder)
        return model.to(device).eval()

    def extra_repr(self) -> str:
        return f"hasher={self.hasher!r}"
