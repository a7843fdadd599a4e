"""Pure-torch transforms, and the torchvision-only paper pipeline (with a stand-in torchvision)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from PIL import Image

from pml_relaxed.datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    GaussianNoise,
    RandomAffine,
    ResizeToTensor,
    paper_transforms,
)


def _identity_affine(**kwargs) -> RandomAffine:
    return RandomAffine(degrees=0, translate=0, scale=(1, 1), **kwargs)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 12), (4, 1, 28, 28)])
def test_affine_identity_keeps_image(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    out = _identity_affine()(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(out, x, atol=1e-5)


def test_affine_keeps_dtype_float64():
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    assert RandomAffine()(x).dtype == torch.float64


def test_affine_rotation_is_counter_clockwise_rot90():
    x = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(1))
    out = RandomAffine(degrees=(90, 90), translate=0, scale=(1, 1))(x)
    assert torch.allclose(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)


def test_affine_zoom_out_fills_border():
    x = torch.ones(1, 20, 20)
    out = RandomAffine(degrees=0, translate=0, scale=(0.5, 0.5), fill=0.25)(x)
    assert torch.allclose(out[0, 0, 0], torch.tensor(0.25))
    assert torch.allclose(out[0, 10, 10], torch.tensor(1.0))


def test_affine_translation_moves_a_dot():
    x = torch.zeros(1, 11, 11)
    x[0, 5, 5] = 1.0
    out = RandomAffine(degrees=0, translate=0.3, scale=(1, 1), generator=torch.Generator().manual_seed(0))(x)
    assert torch.isclose(out.sum(), torch.tensor(1.0), atol=1e-5)  # whole dot still inside
    assert float(out[0, 5, 5]) < 0.99


def test_affine_draws_differ_between_calls_and_batch_items():
    x = torch.rand(1, 16, 16).expand(3, 1, 16, 16).contiguous()
    t = RandomAffine(degrees=20, translate=0.1, scale=(0.8, 1.2), shear=10)
    a, b = t(x), t(x)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a[0], a[1])


def test_affine_generator_makes_draws_reproducible():
    x = torch.rand(2, 1, 16, 16)
    a = RandomAffine(shear=5, generator=torch.Generator().manual_seed(7))(x)
    b = RandomAffine(shear=5, generator=torch.Generator().manual_seed(7))(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"degrees": -1}, ValueError, "degrees must be >= 0"),
        ({"degrees": (10, -10)}, ValueError, "degrees must satisfy min <= max"),
        ({"degrees": "10"}, TypeError, "degrees must be a finite real number"),
        ({"translate": 1.5}, ValueError, r"translate must be in \[0, 1\]; got 1.5"),
        ({"scale": (1.1, 0.9)}, ValueError, "scale must satisfy min <= max"),
        ({"scale": (0, 1)}, ValueError, "min > 0"),
        ({"scale": 1.0}, ValueError, r"scale must be a \(min, max\) pair; got 1.0"),
        ({"shear": (-95, 0)}, ValueError, r"shear must lie strictly inside \(-90, 90\)"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_affine_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        RandomAffine(**kwargs)


@pytest.mark.parametrize(
    "x, err, match",
    [
        (torch.zeros(5, 5), ValueError, r"shape \(C, H, W\) or \(B, C, H, W\); got shape \(5, 5\)"),
        (torch.zeros(1, 5, 5, dtype=torch.uint8), TypeError, "floating-point tensor; got dtype torch.uint8"),
        ([[0.0]], TypeError, "input must be a torch.Tensor"),
    ],
)
def test_affine_bad_input(x, err, match):
    with pytest.raises(err, match=match):
        RandomAffine()(x)


def test_noise_zero_std_is_identity_and_shape_kept():
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(GaussianNoise(0.0)(x), x)


def test_noise_has_requested_std_and_is_reproducible():
    x = torch.zeros(200, 500)
    a = GaussianNoise(0.5, generator=torch.Generator().manual_seed(0))(x)
    b = GaussianNoise(0.5, generator=torch.Generator().manual_seed(0))(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert abs(float(a.std()) - 0.5) < 0.01 and abs(float(a.mean())) < 0.01
    assert not torch.equal(GaussianNoise(0.5)(x), GaussianNoise(0.5)(x))


def test_noise_clamp():
    out = GaussianNoise(5.0, clamp=(0.0, 1.0))(torch.full((1000,), 0.5))
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"std": -0.1}, ValueError, "std must be >= 0; got -0.1"),
        ({"std": None}, TypeError, "std must be a finite real number"),
        ({"std": 0.1, "clamp": (1, 0)}, ValueError, "clamp must satisfy min <= max"),
        ({"std": 0.1, "clamp": (1, 1)}, ValueError, "clamp must satisfy min < max"),
    ],
)
def test_noise_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        GaussianNoise(**kwargs)


def test_noise_rejects_integer_tensor():
    with pytest.raises(TypeError, match="floating-point torch.Tensor; got torch.int64"):
        GaussianNoise(0.1)(torch.zeros(3, dtype=torch.long))


def test_compose_applies_in_order():
    assert Compose([lambda v: v + 1, lambda v: v * 2])(1) == 4
    assert Compose([])(5) == 5


def test_compose_bad_arguments():
    with pytest.raises(TypeError, match=r"transforms\[1\] must be callable; got int"):
        Compose([abs, 3])
    with pytest.raises(TypeError, match="transforms must be a list or tuple of callables; got dict"):
        Compose({"a": abs})


def test_resize_to_tensor_converts_to_rgb_float():
    img = Image.new("L", (10, 7), color=51)
    out = ResizeToTensor(16)(img)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((3, 16, 16), 0.2))


def test_resize_to_tensor_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be >= 1; got 0"):
        ResizeToTensor(0)
    with pytest.raises(TypeError, match="image_size must be an int >= 1; got float"):
        ResizeToTensor(2.0)
    with pytest.raises(TypeError, match="input must be a PIL.Image.Image; got Tensor"):
        ResizeToTensor(4)(torch.zeros(3, 4, 4))


def test_paper_transforms_without_torchvision_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"pip install pml-relaxed\[vision\]"):
        paper_transforms(train=True)


def _fake_torchvision(monkeypatch) -> None:
    """Installs a stand-in ``torchvision.transforms`` whose classes record their arguments."""
    module = types.ModuleType("torchvision.transforms")

    def step(name):
        def init(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

        return type(name, (), {"__init__": init})

    for name in [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "Resize",
        "CenterCrop",
        "ToTensor",
        "Normalize",
        "Compose",
    ]:
        setattr(module, name, step(name))
    package = types.ModuleType("torchvision")
    package.transforms = module
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", module)


@pytest.mark.parametrize(
    "train, expected",
    [
        (True, [("RandomResizedCrop", (224,)), ("RandomHorizontalFlip", ())]),
        (False, [("Resize", (256,)), ("CenterCrop", (224,))]),
    ],
)
def test_paper_transforms_pipeline(monkeypatch, train, expected):
    _fake_torchvision(monkeypatch)
    pipeline = paper_transforms(train=train)
    steps = pipeline.args[0]
    assert [(type(s).__name__, s.args) for s in steps[:2]] == expected
    assert [type(s).__name__ for s in steps[2:]] == ["ToTensor", "Normalize"]
    assert steps[3].kwargs == {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def test_paper_transforms_scales_resize_with_image_size(monkeypatch):
    _fake_torchvision(monkeypatch)
    steps = paper_transforms(train=False, image_size=112).args[0]
    assert steps[0].args == (128,) and steps[1].args == (112,)


def test_paper_transforms_bad_arguments():
    with pytest.raises(TypeError, match="train must be a bool; got str"):
        paper_transforms(train="yes")
    with pytest.raises(ValueError, match="image_size must be >= 1; got -3"):
        paper_transforms(train=True, image_size=-3)
