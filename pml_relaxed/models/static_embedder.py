"""A static (bag-of-tokens) text embedder: a Rust tokenizer, one trainable vector per token, mean-pooled."""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ._batch_hashing import exclusive_cumsum
from ._model_folder import PathLike, check_folder_path, read_config, read_weights, save_weights, write_config
from .ngram_hasher import check_texts

#: the tokenizer file of a saved :class:`StaticEmbedder` (the ``tokenizers`` library's JSON format)
TOKENIZER_NAME = "tokenizer.json"

TextBatch = Union[Sequence[str], torch.Tensor]


class StaticEmbedder(nn.Module):
    """Embeds a text as the mean of its tokens' vectors, Model2Vec's model, with trainable vectors.

    Pipeline: text -> ``tokenizers.Tokenizer`` ids (no special tokens, the unknown token dropped, at
    most ``max_length`` tokens) -> ``nn.EmbeddingBag(vocab_size + 1, dim, mode="mean")``. Row 0 of the
    table is padding, so token ``t`` has row ``t + 1`` and padded id matrices use 0 like
    :class:`HashedNgramEmbedder`'s. :meth:`from_model2vec` starts from a Model2Vec model (e.g. one
    distilled from the teacher) so that training refines it, e.g. with
    :class:`~pml_relaxed.losses.RelaxedContrastiveLoss` on in-domain texts; :meth:`to_model2vec`
    hands the result back to Model2Vec, :meth:`to_sentence_transformer` to sentence-transformers, and
    :meth:`save_pretrained` / :meth:`from_pretrained` save and load it (JSON and safetensors, no pickle).

    ``forward`` accepts a list of strings or the padded ``(B, L)`` int64 matrix of :meth:`encode_batch`.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (copied; padding is disabled, truncation set to ``max_length``).
        embeddings: ``(vocab_size, dim)`` initial token vectors, one per tokenizer id.
        unk_token_id: id of the unknown token, dropped from every text (Model2Vec drops it too), or ``None``.
        max_length: at most this many tokens per text, or ``None`` for no limit.

    Raises:
        TypeError: ``tokenizer`` is not a ``tokenizers.Tokenizer`` or ``embeddings`` not a 2D float tensor.
        ValueError: ``embeddings`` has fewer rows than the tokenizer's vocabulary.

    Examples:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "card": 1, "lost": 2}, unk_token="[UNK]"))
        >>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> model = StaticEmbedder(tokenizer, torch.randn(3, 8), unk_token_id=0)
        >>> model(["lost card", "card"]).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        tokenizer: Any,
        embeddings: torch.Tensor,
        unk_token_id: Optional[int] = None,
        max_length: Optional[int] = 512,
    ) -> None:
        super().__init__()
        try:
            from tokenizers import Tokenizer
        except ImportError as err:  # pragma: no cover - tokenizers comes with the text extra
            raise ImportError("StaticEmbedder needs the tokenizers package: pip install pml-relaxed[text]") from err
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a tokenizers.Tokenizer; got {type(tokenizer).__name__}")
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
            raise TypeError(
                "embeddings must be a 2D float tensor (vocab_size, dim); got "
                f"{type(embeddings).__name__} {tuple(getattr(embeddings, 'shape', ()))}"
            )
        vocab_size = tokenizer.get_vocab_size()
        if embeddings.shape[0] < vocab_size:
            raise ValueError(
                f"embeddings must have a row for each of the tokenizer's {vocab_size} ids; "
                f"got {embeddings.shape[0]} rows"
            )
        self.tokenizer = copy.deepcopy(tokenizer)
        self.tokenizer.no_padding()
        if max_length is None:
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(int(max_length))
        self.unk_token_id = unk_token_id
        self.max_length = max_length
        self.embedding_dim = int(embeddings.shape[1])
        self.bag = nn.EmbeddingBag(embeddings.shape[0] + 1, self.embedding_dim, mode="mean", padding_idx=0)
        with torch.no_grad():
            self.bag.weight[0].zero_()
            self.bag.weight[1:].copy_(embeddings)

    @classmethod
    def from_model2vec(cls, model: Any) -> "StaticEmbedder":
        """A trainable copy of a ``model2vec.StaticModel`` (its token mapping and weights folded into the vectors).

        Raises:
            TypeError: ``model`` lacks a StaticModel's ``embedding`` and ``tokenizer``.
        """
        if not hasattr(model, "embedding") or not hasattr(model, "tokenizer"):
            raise TypeError(f"model must be a model2vec.StaticModel; got {type(model).__name__}")
        vectors = np.asarray(model.embedding, dtype=np.float32)
        mapping = getattr(model, "token_mapping", None)
        if mapping is not None:
            vectors = vectors[np.asarray(mapping, dtype=np.int64)]
        weights = getattr(model, "weights", None)
        if weights is not None:
            vectors = vectors * np.asarray(weights, dtype=np.float32)[:, None]
        return cls(
            model.tokenizer,
            torch.from_numpy(np.ascontiguousarray(vectors)),
            unk_token_id=getattr(model, "unk_token_id", None),
            max_length=getattr(model, "max_length", 512),
        )

    def to_model2vec(self, normalize: bool = True) -> Any:
        """This model as a ``model2vec.StaticModel`` (the current vectors, float32), e.g. to ``save_pretrained``.

        Raises:
            ImportError: model2vec is not installed.
        """
        try:
            from model2vec import StaticModel
        except ImportError as err:
            raise ImportError('to_model2vec needs model2vec: pip install "pml-relaxed[model2vec]"') from err
        vectors = self.bag.weight[1:].detach().cpu().float().numpy().copy()
        return StaticModel(vectors=vectors, tokenizer=self.tokenizer, normalize=normalize, max_length=self.max_length)

    def to_sentence_transformer(self) -> Any:
        """This model as a ``SentenceTransformer`` built from sentence-transformers' own ``StaticEmbedding``.

        The current vectors and tokenizer (truncation included) go into sentence-transformers' module, so
        ``model.save(path)`` writes a folder that loads with a plain ``SentenceTransformer(path)``, no
        ``trust_remote_code`` and no pml-relaxed needed. Its ``encode`` returns this model's vectors for every
        text without the unknown token; sentence-transformers keeps the unknown token in the mean, where
        this model drops it (as Model2Vec does).

        Returns:
            A ``sentence_transformers.SentenceTransformer`` on this model's device (a copy of the vectors).

        Raises:
            ImportError: sentence-transformers is not installed.

        Examples:
            >>> from tokenizers import Tokenizer, models, pre_tokenizers
            >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "card": 1, "lost": 2}, unk_token="[UNK]"))
            >>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
            >>> model = StaticEmbedder(tokenizer, torch.randn(3, 8), unk_token_id=0)
            >>> served = model.to_sentence_transformer()
            >>> torch.allclose(torch.from_numpy(served.encode(["lost card"])), model.encode(["lost card"]))
            True
        """
        try:
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.sentence_transformer.modules import StaticEmbedding
        except ImportError as err:  # pragma: no cover - exercised only without the text extra
            raise ImportError(
                "to_sentence_transformer needs sentence-transformers >= 6: pip install pml-relaxed[text]"
            ) from err
        vectors = self.bag.weight[1:].detach().float().clone()
        module = StaticEmbedding(copy.deepcopy(self.tokenizer), embedding_weights=vectors)
        return SentenceTransformer(modules=[module], device=str(self.bag.weight.device))

    def save_pretrained(self, path: PathLike) -> None:
        """Saves the model to a folder that :meth:`from_pretrained` loads.

        Writes ``pml_relaxed_config.json`` (``unk_token_id``, ``max_length``), ``tokenizer.json`` (the
        ``tokenizers`` library's JSON) and ``model.safetensors`` (the ``(vocab_size + 1, dim)`` table,
        row 0 padding); no code and no pickle. Existing files of these names are overwritten.

        Args:
            path: the folder (created if missing).

        Raises:
            TypeError: ``path`` is not a str or a path.
            ImportError: ``safetensors`` is not installed.

        Examples:
            >>> import tempfile
            >>> from tokenizers import Tokenizer, models, pre_tokenizers
            >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "card": 1, "lost": 2}, unk_token="[UNK]"))
            >>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
            >>> model = StaticEmbedder(tokenizer, torch.randn(3, 8), unk_token_id=0, max_length=16)
            >>> folder = tempfile.mkdtemp()
            >>> model.save_pretrained(folder)
            >>> loaded = StaticEmbedder.from_pretrained(folder)
            >>> torch.equal(loaded.encode(["lost card"]), model.encode(["lost card"]))
            True
            >>> loaded.unk_token_id, loaded.max_length
            (0, 16)
        """
        folder = check_folder_path("path", path)
        folder.mkdir(parents=True, exist_ok=True)
        write_config(folder, self, {"unk_token_id": self.unk_token_id, "max_length": self.max_length})
        self.tokenizer.save(str(folder / TOKENIZER_NAME))
        save_weights(self, folder)

    @classmethod
    def from_pretrained(cls, path: PathLike, device: Union[str, torch.device] = "cpu") -> "StaticEmbedder":
        """Loads a model saved by :meth:`save_pretrained`, in eval mode (``.train()`` to go on training).

        Reads ``pml_relaxed_config.json`` and ``tokenizer.json`` (JSON) and ``model.safetensors`` only:
        nothing in the folder is imported, run or unpickled (``*.py``, ``modules.json`` and pickled
        ``*.bin`` / ``*.pkl`` files are ignored).

        Args:
            path: the saved folder.
            device: device to put the model on.

        Returns:
            The model, with the saved tokenizer, options and vectors.

        Raises:
            TypeError: ``path`` is not a str or a path.
            FileNotFoundError: the folder lacks ``pml_relaxed_config.json``, ``tokenizer.json`` or
                ``model.safetensors``.
            ValueError: the configuration is not that of a :class:`StaticEmbedder`, or the weights lack
                the ``bag.weight`` table.
            ImportError: ``tokenizers`` or ``safetensors`` is not installed.
        """
        from tokenizers import Tokenizer

        folder = check_folder_path("path", path)
        config = read_config(folder, cls)
        tokenizer_path = folder / TOKENIZER_NAME
        if not tokenizer_path.is_file():
            raise FileNotFoundError(
                f"{str(tokenizer_path)!r} does not exist: is {str(folder)!r} a saved StaticEmbedder folder?"
            )
        state = read_weights(folder)
        table = state.get("bag.weight")
        if table is None or table.ndim != 2:
            raise ValueError(f"{str(folder)!r}: model.safetensors must hold the 2D 'bag.weight' table")
        model = cls(Tokenizer.from_file(str(tokenizer_path)), table[1:], **config)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def token_ids(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Table rows of each text's tokens (token id + 1), concatenated, and the ``(B,)`` offsets of each text.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        texts = check_texts("texts", texts)
        rows = [encoding.ids for encoding in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
        if self.unk_token_id is not None:
            rows = [[t for t in row if t != self.unk_token_id] for row in rows]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((t for row in rows for t in row), dtype=np.int64, count=int(lengths.sum())) + 1
        return torch.from_numpy(flat), torch.from_numpy(exclusive_cumsum(lengths))

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """The padded ``(B, L)`` int64 matrix of table rows (0 = padding) that ``forward`` accepts, ``L >= 1``.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        ids, offsets = self.token_ids(texts)
        lengths = torch.diff(offsets, append=offsets.new_tensor([ids.numel()]))
        width = max(int(lengths.max()), 1) if len(lengths) else 1
        padded = torch.zeros(len(lengths), width, dtype=torch.long)
        rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        padded[rows, torch.arange(ids.numel()) - offsets.repeat_interleave(lengths)] = ids
        return padded

    def forward(self, inputs: TextBatch) -> torch.Tensor:
        """Embeds a batch: a list of B str, or a ``(B, L)`` matrix from :meth:`encode_batch`.

        Returns:
            ``(B, embedding_dim)``; a text without known tokens embeds as zeros.

        Raises:
            TypeError: ``inputs`` is neither a list of str nor an integer tensor.
            ValueError: an id matrix that is not 2D or has ids outside the table.
        """
        device = self.bag.weight.device
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim != 2 or (inputs.is_floating_point() and not bool((inputs == inputs.round()).all())):
                raise ValueError(f"inputs as a tensor must be a 2D integer id matrix; got shape {tuple(inputs.shape)}")
            ids = inputs.long().to(device)
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.bag.num_embeddings):
                raise ValueError(
                    f"inputs ids must be in [0, {self.bag.num_embeddings}); got values in "
                    f"[{int(ids.min())}, {int(ids.max())}]"
                )
            return self.bag(ids)
        if isinstance(inputs, (list, tuple)):
            ids, offsets = self.token_ids(inputs)
            return nn.functional.embedding_bag(ids.to(device), self.bag.weight, offsets.to(device), mode="mean")
        raise TypeError(f"inputs must be a list of str or a (batch, length) id tensor; got {type(inputs).__name__}")

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embeds raw texts in batches in eval mode without gradients: ``(N, embedding_dim)``, not normalised.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str, ``batch_size`` not an int.
            ValueError: ``batch_size < 1``.
        """
        texts = check_texts("texts", texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int >= 1; got {type(batch_size).__name__} ({batch_size!r})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
        parts = [self(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.embedding_dim, device=self.bag.weight.device)
