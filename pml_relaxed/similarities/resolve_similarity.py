"""The one place where a loss or miner turns its ``similarity`` / ``sigma`` / ``normalize_teacher`` into a kernel."""

from __future__ import annotations

from typing import Optional

from .. import _validation as v
from .base_similarity import BaseSimilarity
from .gaussian_kernel import GaussianKernel


def resolve_similarity(
    similarity: Optional[BaseSimilarity], sigma: float = 1.0, normalize_teacher: bool = True
) -> BaseSimilarity:
    """The teacher kernel of a relaxed loss or teacher miner: ``similarity``, else the paper's Gaussian kernel.

    ``sigma`` and ``normalize_teacher`` configure the default ``GaussianKernel(sigma, normalize_teacher)``
    only; a given ``similarity`` carries its own settings, so they must stay at their defaults with it.

    Args:
        similarity: a :class:`BaseSimilarity`, or None for the Gaussian kernel.
        sigma: bandwidth of the default kernel, > 0.
        normalize_teacher: L2-normalise teacher embeddings in the default kernel.

    Returns:
        ``similarity`` itself, or a new ``GaussianKernel``.

    Raises:
        TypeError: a similarity that is not a BaseSimilarity, a sigma that is not a real number, a
            normalize_teacher that is not a bool.
        ValueError: sigma <= 0, or sigma / normalize_teacher changed together with a similarity.

    Examples:
        >>> from pml_relaxed.similarities import LabelSimilarity, resolve_similarity
        >>> resolve_similarity(None, sigma=0.5)
        GaussianKernel(sigma=0.5, normalize=True)
        >>> resolve_similarity(LabelSimilarity())
        LabelSimilarity()
    """
    sigma = v.check_positive("sigma", sigma)
    normalize_teacher = v.check_bool("normalize_teacher", normalize_teacher)
    if similarity is None:
        return GaussianKernel(sigma=sigma, normalize=normalize_teacher)
    if not isinstance(similarity, BaseSimilarity):
        raise TypeError(
            f"similarity must be a pml_relaxed similarity (BaseSimilarity); got {type(similarity).__name__}"
        )
    if sigma != 1.0 or normalize_teacher is not True:
        raise ValueError(
            "sigma and normalize_teacher configure the default GaussianKernel; with similarity="
            f"{type(similarity).__name__}(...) set them there instead; got sigma={sigma!r}, "
            f"normalize_teacher={normalize_teacher!r}"
        )
    return similarity
