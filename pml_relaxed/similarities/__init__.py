"""Teacher kernels: teacher embeddings (query, reference) -> relaxed labels in [0, 1]."""
from .base_similarity import BaseSimilarity
from .gaussian_kernel import GaussianKernel
from .label_similarity import LabelSimilarity
from .mixed_similarity import MixedSimilarity
from .resolve_similarity import resolve_similarity

__all__ = ["BaseSimilarity", "GaussianKernel", "LabelSimilarity", "MixedSimilarity", "resolve_similarity"]
