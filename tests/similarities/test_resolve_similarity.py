"""resolve_similarity: the one resolution of similarity / sigma / normalize_teacher (losses and miner)."""

import pytest
import torch

from pml_relaxed.losses import RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import GaussianKernel, LabelSimilarity, resolve_similarity


def test_default_is_the_gaussian_kernel_with_the_given_settings():
    kernel = resolve_similarity(None, sigma=0.5, normalize_teacher=False)
    assert isinstance(kernel, GaussianKernel) and kernel.sigma == 0.5 and kernel.normalize is False
    teacher = torch.randn(4, 3, dtype=torch.float64)
    distances = torch.cdist(teacher, teacher) ** 2
    assert torch.allclose(kernel(teacher), torch.exp(-distances / 0.5))


def test_a_given_similarity_is_used_as_is():
    similarity = LabelSimilarity()
    assert resolve_similarity(similarity) is similarity


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"similarity": torch.nn.Identity()},
            TypeError,
            r"similarity must be a pml_relaxed similarity .* got Identity",
        ),
        (
            {"similarity": LabelSimilarity(), "sigma": 2.0},
            ValueError,
            r"sigma and normalize_teacher configure the default GaussianKernel; with similarity=LabelSimilarity",
        ),
        ({"similarity": LabelSimilarity(), "normalize_teacher": False}, ValueError, r"normalize_teacher=False"),
        ({"similarity": None, "sigma": 0.0}, ValueError, r"sigma must be > 0; got 0.0"),
    ],
)
def test_bad_combinations_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        resolve_similarity(**kwargs)


@pytest.mark.parametrize("owner", [RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss, TeacherSimilarityMiner])
def test_losses_and_miner_resolve_the_same_way(owner):
    assert owner(sigma=0.25).similarity.sigma == 0.25
    similarity = LabelSimilarity()
    assert owner(similarity=similarity).similarity is similarity
    with pytest.raises(ValueError, match=r"with similarity=LabelSimilarity\(...\) set them there instead"):
        owner(similarity=similarity, sigma=2.0)
