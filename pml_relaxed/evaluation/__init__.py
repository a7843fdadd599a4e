"""Retrieval evaluation: Recall@K on top of PML's AccuracyCalculator, and embedding helpers."""

from .backend import faiss_backend
from .evaluate import DEFAULT_METRICS, compute_embeddings, evaluate_embeddings
from .recall_at_k_calculator import RecallAtKCalculator, recall_at_k

__all__ = [
    "RecallAtKCalculator",
    "recall_at_k",
    "evaluate_embeddings",
    "compute_embeddings",
    "DEFAULT_METRICS",
    "faiss_backend",
]
