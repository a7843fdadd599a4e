"""Teacher kernels: teacher embeddings (query, reference) -> relaxed labels in [0, 1]."""

from .base_similarity import BaseSimilarity
from .contextual_similarity import ContextualSimilarity
from .gaussian_kernel import GaussianKernel
from .label_similarity import LabelSimilarity
from .mixed_similarity import MixedSimilarity
from .precomputed_similarity import PrecomputedSimilarity
from .resolve_similarity import resolve_similarity
from .teacher_inputs import TeacherInputs

__all__ = [
    "BaseSimilarity",
    "ContextualSimilarity",
    "GaussianKernel",
    "LabelSimilarity",
    "MixedSimilarity",
    "PrecomputedSimilarity",
    "TeacherInputs",
    "resolve_similarity",
]
