import pytest
import torch

from pml_relaxed.datasets import TwoViewCollate


def test_two_independent_views_per_image_with_instance_ids():
    calls = []

    def augment(images):
        calls.append(images.clone())
        return images + len(calls)

    views, ids = TwoViewCollate(augment)([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    assert views.shape == (4, 1, 2, 2) and ids.tolist() == [0, 0, 1, 1]
    assert [float(v.mean()) for v in views] == [1.0, 2.0, 2.0, 3.0]  # rows 2b, 2b + 1: views 1 and 2 of image b
    assert len(calls) == 2 and all(c.shape == (2, 1, 2, 2) for c in calls)  # one call per view and batch


def test_a_non_callable_augment_is_refused():
    with pytest.raises(TypeError, match="augment must map"):
        TwoViewCollate(None)
