"""A hashed n-gram student (:class:`HashedNgramEmbedder` and its siblings) as a sentence-transformers input module.

This module imports sentence-transformers (``pip install pml-relaxed[text]``); ``pml_relaxed.models``
imports it only when ``HashedNgramSentenceModule`` is first used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

try:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.input_module import InputModule
except ImportError as err:  # pragma: no cover - exercised only without the text extra
    raise ImportError(
        "HashedNgramSentenceModule needs sentence-transformers >= 6: install the text extras with "
        "`pip install pml-relaxed[text]`"
    ) from err

from ._hashed_student import HashedStudent
from ._model_folder import CONFIG_NAME, read_json
from .attention_pooled_ngram_embedder import AttentionPooledNgramEmbedder
from .conv_ngram_embedder import ConvNgramEmbedder
from .hashed_ngram_embedder import HashedNgramEmbedder
from .ngram_hasher import check_texts

#: the students a saved folder may name (its ``pml_relaxed_config.json`` "class"); no other class is ever built
STUDENT_CLASSES = {cls.__name__: cls for cls in (HashedNgramEmbedder, AttentionPooledNgramEmbedder, ConvNgramEmbedder)}


class HashedNgramSentenceModule(InputModule):
    """Runs a hashed n-gram student inside ``sentence_transformers.SentenceTransformer``.

    The student is a :class:`HashedNgramEmbedder`, an :class:`AttentionPooledNgramEmbedder` or a
    :class:`ConvNgramEmbedder`. ``preprocess`` hashes the texts of a batch with the student's
    ``hash_texts`` (for :class:`HashedNgramEmbedder`, ``{"input_ids", "offsets"}``: the 1D ids and
    per-text offsets of :meth:`NgramHasher.encode_flat`); ``forward`` adds ``"sentence_embedding"``,
    the student's ``(B, embedding_dim)`` output, so ``SentenceTransformer.encode`` returns exactly
    the student's ``encode`` vectors (un-normalised unless ``normalize_embeddings=True``).
    :meth:`save` writes the files of the student's ``save_files``; :meth:`load` reads them
    from a local folder or, through sentence-transformers, from the Hugging Face hub, and builds the
    student class the folder's ``pml_relaxed_config.json`` names (one of :data:`STUDENT_CLASSES`).

    Load a folder written by a student's ``save_pretrained`` (or by ``SentenceTransformer.save``
    of a model holding this module) with ``SentenceTransformer(modules=[HashedNgramSentenceModule.load(path)])``:
    :meth:`load` reads the folder's JSON configuration and safetensors weights and nothing else, so no
    code from the folder runs. ``SentenceTransformer(path, trust_remote_code=True)`` also loads it, but
    that flag lets sentence-transformers import whatever class the folder's ``modules.json`` names,
    a ``modeling_*.py`` in the folder included: it runs the folder's code if someone put code there,
    so keep it for folders you trust (sentence-transformers >= 6 refuses the folder without the flag).

    Args:
        embedder: the trained student; its weights are shared, not copied.

    Raises:
        TypeError: ``embedder`` is not one of the hashed n-gram students.

    Examples:
        >>> embedder = HashedNgramEmbedder(embedding_dim=16, num_buckets=2**12)
        >>> model = HashedNgramSentenceModule(embedder).to_sentence_transformer()
        >>> model.encode(["lost my card", "exchange rate"]).shape
        (2, 16)
    """

    def __init__(self, embedder: HashedStudent) -> None:
        super().__init__()
        if not isinstance(embedder, HashedStudent):
            names = ", ".join(STUDENT_CLASSES)
            raise TypeError(f"embedder must be a hashed n-gram student ({names}); got {type(embedder).__name__}")
        self.embedder = embedder

    def preprocess(self, inputs: List[str], prompt: Optional[str] = None, **kwargs: Any) -> Dict[str, torch.Tensor]:
        """Hashes a batch of texts (``prompt`` prepended to each when given).

        Args:
            inputs: B strings.
            prompt: text put before each input (sentence-transformers' prompts), or ``None``.
            **kwargs: sentence-transformers' per-call preprocessing options (e.g. ``task``); hashing has
                none, so they are ignored.

        Returns:
            The student's ``hash_texts`` tensors, e.g. ``{"input_ids": (total,) int64, "offsets": (B,) int64}``.

        Raises:
            TypeError: an input is not a str.
        """
        texts = check_texts("inputs", inputs)
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        return self.embedder.hash_texts(texts)

    def forward(self, features: Dict[str, Any], **kwargs: Any) -> Dict[str, Any]:
        """Adds ``features["sentence_embedding"]``, ``(B, embedding_dim)``; ``kwargs`` (encode options) are unused."""
        features["sentence_embedding"] = self.embedder.embed_hashed(features)
        return features

    def get_embedding_dimension(self) -> int:
        """The embedder's ``embedding_dim``."""
        return self.embedder.embedding_dim

    @property
    def max_seq_length(self) -> float:
        """No limit on the text length (only the first ``max_features`` hashed features are used)."""
        return math.inf

    def get_config_dict(self) -> Dict[str, Any]:
        """The embedder's constructor arguments (shown in ``repr``)."""
        return self.embedder.get_config()

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Writes the embedder's configuration and safetensors weights into ``output_path``.

        ``safe_serialization`` must stay True (weights are always safetensors); other arguments of
        sentence-transformers' ``save`` are not used.

        Raises:
            ValueError: ``safe_serialization`` is False.
        """
        if not safe_serialization:
            raise ValueError("safe_serialization must be True: HashedNgramSentenceModule saves only safetensors")
        self.embedder.save_files(Path(output_path))

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: Optional[Union[bool, str]] = None,
        cache_folder: Optional[str] = None,
        revision: Optional[str] = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> "HashedNgramSentenceModule":
        """Loads the module from a saved folder or a hub repository (sentence-transformers' loading options).

        Only ``pml_relaxed_config.json`` (JSON) and ``model.safetensors`` are read (the named student's
        ``from_pretrained``, the class looked up by name in :data:`STUDENT_CLASSES`): no code or pickle in
        the folder is imported, run or unpickled, and ``modules.json`` is not consulted.

        Args:
            model_name_or_path: a folder written by a student's ``save_pretrained`` or by
                ``SentenceTransformer.save``, or a hub repository id.
            subfolder: the module's folder inside it ("" for the root).
            token, cache_folder, revision, local_files_only: hub options, as in sentence-transformers.
            **kwargs: the options sentence-transformers passes to every module (``trust_remote_code``,
                ``model_kwargs``, ``backend``, ...); this module has no transformers model, so they are unused.

        Returns:
            The module, its embedder on CPU in eval mode.

        Raises:
            FileNotFoundError: the folder (or hub repository) does not exist, or lacks
                ``pml_relaxed_config.json`` or ``model.safetensors``.
            ValueError: the configuration names no student of :data:`STUDENT_CLASSES`, or is not that of the
                student it names.

        Examples:
            >>> import tempfile
            >>> from sentence_transformers import SentenceTransformer
            >>> folder = tempfile.mkdtemp()
            >>> student = HashedNgramEmbedder(embedding_dim=8, num_buckets=2**10)
            >>> student.save_pretrained(folder)
            >>> served = SentenceTransformer(modules=[HashedNgramSentenceModule.load(folder)], device="cpu")
            >>> torch.allclose(served.encode(["lost card"], convert_to_tensor=True), student.encode(["lost card"]))
            True
        """
        folder = cls.load_dir_path(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        if folder is None:
            raise FileNotFoundError(
                f"model_name_or_path {model_name_or_path!r} (subfolder {subfolder!r}) is neither a folder nor a "
                "hub repository"
            )
        config_path = Path(folder) / CONFIG_NAME
        saved_class = read_json(config_path).get("class")
        if saved_class not in STUDENT_CLASSES:
            names = ", ".join(STUDENT_CLASSES)
            raise ValueError(f"{str(config_path)!r} must name a hashed n-gram student ({names}); got {saved_class!r}")
        return cls(STUDENT_CLASSES[saved_class].from_pretrained(folder))

    def to_sentence_transformer(self) -> SentenceTransformer:
        """A ``SentenceTransformer`` whose only module is this one (on the embedder's device)."""
        device = str(next(self.embedder.parameters()).device)
        return SentenceTransformer(modules=[self], device=device)
