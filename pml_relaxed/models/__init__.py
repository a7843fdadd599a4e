"""Encoders for teachers and students: images (Conv4), vectors (MLP) and texts.

``SentenceTransformerTeacher`` imports sentence-transformers lazily, when it is instantiated.
"""
from .cached_teacher import CachedTeacher
from .conv4 import Conv4
from .hashed_ngram_embedder import HashedNgramEmbedder
from .mlp import MLP
from .ngram_dropout import NgramDropout
from .ngram_hasher import NgramHasher
from .sentence_transformer_teacher import SentenceTransformerTeacher
from .text_collator import TextCollator

__all__ = [
    "Conv4",
    "MLP",
    "HashedNgramEmbedder",
    "NgramHasher",
    "NgramDropout",
    "TextCollator",
    "SentenceTransformerTeacher",
    "CachedTeacher",
]
