"""Encoders for teachers and students: images (Conv4), vectors (MLP) and texts.

Text students: ``HashedNgramEmbedder`` (a mean of hashed n-gram vectors), ``AttentionPooledNgramEmbedder``
(learned per-n-gram pooling weights) and ``ConvNgramEmbedder`` (a convolution over token vectors).

``SentenceTransformerTeacher`` imports sentence-transformers lazily, when it is instantiated, and
``HashedNgramSentenceModule`` (a sentence-transformers module) when it is first accessed.
"""

from .attention_pooled_ngram_embedder import AttentionPooledNgramEmbedder
from .cached_teacher import CachedTeacher
from .conv4 import Conv4
from .conv_ngram_embedder import ConvNgramEmbedder
from .hashed_ngram_embedder import HashedNgramEmbedder
from .indexed_text_student import IndexedTextStudent, pack_text_rows
from .mlp import MLP
from .ngram_dropout import NgramDropout
from .ngram_hasher import NgramHasher
from .sentence_transformer_teacher import SentenceTransformerTeacher
from .static_embedder import StaticEmbedder
from .teacher_cache import TeacherCache
from .text_collator import TextCollator
from .token_ngram_hasher import TokenNgramHasher

__all__ = [
    "Conv4",
    "MLP",
    "HashedNgramEmbedder",
    "NgramHasher",
    "NgramDropout",
    "TextCollator",
    "SentenceTransformerTeacher",
    "CachedTeacher",
    "StaticEmbedder",
    "AttentionPooledNgramEmbedder",
    "ConvNgramEmbedder",
    "TokenNgramHasher",
    "IndexedTextStudent",
    "pack_text_rows",
    "TeacherCache",
]


def __getattr__(name: str):
    # HashedNgramSentenceModule subclasses a sentence-transformers class: import it (and them) on first use.
    if name == "HashedNgramSentenceModule":
        from .hashed_ngram_sentence_module import HashedNgramSentenceModule

        return HashedNgramSentenceModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
