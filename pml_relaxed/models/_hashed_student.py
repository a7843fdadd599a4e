"""What every hashed n-gram text student shares: input routing, ``encode``, saving and loading.

:class:`HashedStudent` is the base of :class:`~pml_relaxed.models.HashedNgramEmbedder`,
:class:`~pml_relaxed.models.AttentionPooledNgramEmbedder` and :class:`~pml_relaxed.models.ConvNgramEmbedder`.
A subclass builds its ``hasher`` (an :class:`NgramHasher`) and its layers, stores its constructor arguments
with :meth:`HashedStudent._store_config`, and implements :meth:`HashedStudent.embed_ids` (a padded id matrix)
and :meth:`HashedStudent.embed_hashed` (the features of :meth:`HashedStudent.hash_texts`).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Sequence, Tuple, Type, TypeVar, Union

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
StudentType = TypeVar("StudentType", bound="HashedStudent")

#: the sentence-transformers module class named in a saved folder's ``modules.json`` (one for every student)
SENTENCE_MODULE_TYPE = "pml_relaxed.models.hashed_ngram_sentence_module.HashedNgramSentenceModule"

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)


def check_init_std(init_std: object) -> float:
    """Checks the standard deviation of a table's normal initialisation: a real number > 0.

    Raises:
        TypeError: ``init_std`` is not a real number.
        ValueError: ``init_std`` is not > 0.
    """
    if isinstance(init_std, bool) or not isinstance(init_std, (int, float)):
        raise TypeError(f"init_std must be a float > 0; got {type(init_std).__name__} ({init_std!r})")
    if not init_std > 0:
        raise ValueError(f"init_std must be > 0; got {init_std!r}")
    return float(init_std)


def normal_table(num_rows: int, width: int, init_std: float, sparse: bool) -> nn.EmbeddingBag:
    """An ``nn.EmbeddingBag(num_rows, width)`` (sum mode, row 0 padding, zero) drawn from ``N(0, init_std**2)``."""
    bag = nn.EmbeddingBag(num_rows, width, mode="sum", padding_idx=0, sparse=bool(sparse))
    with torch.no_grad():
        bag.weight.normal_(0.0, init_std)
        bag.weight[0].zero_()
    return bag


class HashedStudent(nn.Module):
    """Base of the hashed n-gram text students: ``forward``, ``encode``, ``save_pretrained``, ``from_pretrained``.

    ``forward`` takes a list of B strings (hashed by :meth:`hash_texts`, then :meth:`embed_hashed`) or the
    padded ``(B, L)`` integer id matrix of :meth:`encode_batch` (checked, then :meth:`embed_ids`); an id
    matrix cast to a float dtype by a trainer is converted back. Saved folders hold
    ``pml_relaxed_config.json`` (class name and constructor arguments) and ``model.safetensors``, plus
    sentence-transformers' metadata naming :class:`~pml_relaxed.models.HashedNgramSentenceModule`;
    loading reads the JSON and safetensors files only.
    """

    #: constructor arguments that JSON stores as lists and the constructor takes as tuples
    TUPLE_ARGUMENTS: Tuple[str, ...] = ("char_ngram_range", "word_ngram_range", "mlp_hidden_dims")

    hasher: NgramHasher
    num_buckets: int
    embedding_dim: int

    def _build_bag_layers(
        self,
        hasher: NgramHasher,
        hidden_dim: int,
        mlp_hidden_dims: Sequence[int],
        embedding_dim: int,
        init_std: float,
        sparse: bool,
    ) -> Dict[str, Any]:
        """Sets ``hasher``, ``num_buckets``, ``bag`` (:func:`normal_table`), ``norm`` (LayerNorm), ``head`` (MLP).

        Returns:
            The constructor arguments these define, as :meth:`get_config` reports them.

        Raises:
            TypeError, ValueError: ``hidden_dim``, ``mlp_hidden_dims``, ``embedding_dim`` or ``init_std``
                of the wrong type or out of range.
        """
        v.check_int("hidden_dim", hidden_dim, 1)
        init_std = check_init_std(init_std)
        self.hasher = hasher
        self.num_buckets = hasher.num_buckets
        self.bag = normal_table(hasher.num_buckets, hidden_dim, init_std, sparse)
        self.norm = nn.LayerNorm(hidden_dim)
        self.head = MLP(hidden_dim, list(mlp_hidden_dims), embedding_dim)
        self.embedding_dim = self.head.out_dim
        return {
            "embedding_dim": self.embedding_dim,
            "num_buckets": hasher.num_buckets,
            "hidden_dim": hidden_dim,
            "mlp_hidden_dims": list(self.head.hidden_dims),
            "char_ngram_range": list(hasher.char_ngram_range),
            "sparse": bool(sparse),
            "cache_size": hasher.cache_size,
            "init_std": init_std,
        }

    def _store_config(self, config: Dict[str, Any]) -> None:
        self._config = copy.deepcopy(config)

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments of this model (JSON-serialisable), as :meth:`save_pretrained` stores them."""
        return copy.deepcopy(self._config)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Hashes texts into the padded ``(B, L)`` int64 id matrix that ``forward`` accepts (0 = padding).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        return self.hasher.encode_batch(texts)

    def hash_texts(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Hashes a batch of texts into the tensors :meth:`embed_hashed` reads.

        Args:
            texts: B strings.

        Returns:
            ``{"input_ids": (total,) int64, "offsets": (B,) int64}``: the concatenated ids of
            :meth:`NgramHasher.encode_flat` and the start of each text's ids.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, offsets = self.hasher.encode_flat(texts)
        return {"input_ids": ids, "offsets": offsets}

    def embed_hashed(self, hashed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeds the output of :meth:`hash_texts` (on the model's device): ``(B, embedding_dim)``."""
        raise NotImplementedError

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeds a checked ``(B, L)`` int64 id matrix (0 = padding): ``(B, embedding_dim)``."""
        raise NotImplementedError

    def check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Checks a padded id matrix and returns it as int64 (float dtypes holding integers are converted back).

        Raises:
            TypeError: a tensor of a non-integer, non-float dtype.
            ValueError: not 2D, non-integer values, or ids outside ``[0, num_buckets)``.
        """
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
        elif ids.dtype not in _INTEGER_DTYPES:
            raise TypeError(f"inputs as a tensor must be an integer tensor; got dtype {ids.dtype}")
        if ids.numel() > 0:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= self.num_buckets:
                raise ValueError(f"inputs ids must be in [0, {self.num_buckets}); got values in [{low}, {high}]")
        return ids.long()

    def forward(self, inputs: TextBatch) -> torch.Tensor:
        """Embeds a batch of texts.

        Args:
            inputs: list of B str, or a ``(B, L)`` id matrix from :meth:`encode_batch`.

        Returns:
            ``(B, embedding_dim)`` un-normalised embeddings.

        Raises:
            TypeError: ``inputs`` is neither a list of str nor an integer-valued tensor.
            ValueError: a malformed id matrix (see :meth:`check_ids`).
        """
        device = self._device()
        if isinstance(inputs, torch.Tensor):
            return self.embed_ids(self.check_ids(inputs).to(device))
        if isinstance(inputs, (list, tuple)):
            hashed = self.hash_texts(inputs)
            return self.embed_hashed({key: value.to(device) for key, value in hashed.items()})
        raise TypeError(f"inputs must be a list of str or a (batch, length) id tensor; got {type(inputs).__name__}")

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
            >>> from pml_relaxed.models import HashedNgramEmbedder
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
            return torch.zeros(0, self.embedding_dim, device=self._device())
        return torch.cat(parts)

    def save_pretrained(self, path: PathLike) -> None:
        """Saves the model to a folder that :meth:`from_pretrained` and ``SentenceTransformer`` both load.

        Writes ``pml_relaxed_config.json`` (the class name and :meth:`get_config`), ``model.safetensors``
        (weights and buffers) and sentence-transformers' ``modules.json`` and
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
            >>> from pml_relaxed.models import HashedNgramEmbedder
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
    def from_pretrained(
        cls: Type[StudentType], path: PathLike, device: Union[str, torch.device] = "cpu"
    ) -> StudentType:
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
            ValueError: the configuration is not that of this class.
            ImportError: ``safetensors`` is not installed.
        """
        folder = check_folder_path("path", path)
        config = read_config(folder, cls)
        for key in cls.TUPLE_ARGUMENTS:
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        model = cls(**config)
        load_weights(model, folder)
        return model.to(device).eval()

    def extra_repr(self) -> str:
        return f"hasher={self.hasher!r}"
