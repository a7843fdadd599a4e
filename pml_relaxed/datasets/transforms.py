"""Pure-torch image transforms (no torchvision), plus the paper's optional torchvision pipeline.

``RandomAffine``, ``GaussianNoise`` and ``Compose`` act on float image tensors of shape (C, H, W)
or batches (B, C, H, W), e.g. to make two augmented views of Omniglot or digit images.
``ResizeToTensor`` turns a PIL image into a float tensor; ``paper_transforms`` builds the CUB /
Cars / SOP augmentation of Kim et al. (CVPR 2021) and needs ``pip install pml-relaxed[vision]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .. import _validation as v
from ._pillow import pillow_image

if TYPE_CHECKING:
    from PIL.Image import Image

Number = Union[int, float]
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number; got {type(value).__name__} ({value!r})")
    return float(value)


def _range(name: str, value: object, symmetric: bool) -> Tuple[float, float]:
    """A number v >= 0 -> (-v, v) when symmetric; a pair (lo, hi) with lo <= hi -> itself."""
    if symmetric and not isinstance(value, (tuple, list)):
        v = _number(name, value)
        if v < 0:
            raise ValueError(f"{name} must be >= 0 or a (min, max) pair; got {value!r}")
        return -v, v
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair; got {value!r}")
    lo, hi = _number(f"{name}[0]", value[0]), _number(f"{name}[1]", value[1])
    if lo > hi:
        raise ValueError(f"{name} must satisfy min <= max; got {value!r}")
    return lo, hi


def _generator(generator: object) -> Optional[torch.Generator]:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    return generator


def _check_images(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of shape (C, H, W) or (B, C, H, W); got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"input must have shape (C, H, W) or (B, C, H, W); got shape {tuple(x.shape)}")
    return x


class RandomAffine:
    """Random rotation, translation, scaling and x-shear, one draw per image.

    Implemented with ``affine_grid`` + bilinear ``grid_sample``; pixels that come from outside the
    image are set to ``fill``. Angles are in degrees, positive = counter-clockwise as displayed, in pixel
    space (aspect ratio respected).

    Args:
        degrees: rotation range: v >= 0 means [-v, v], or a (min, max) pair.
        translate: largest shift as a fraction of the image size, in [0, 1] (same for x and y).
        scale: (min, max) zoom factors, 0 < min <= max.
        shear: x-shear range in degrees, v >= 0 means [-v, v], or a (min, max) pair in (-90, 90).
        fill: value of the pixels that enter from outside the image.
        generator: optional torch.Generator for reproducible draws.

    Raises:
        TypeError: for non-numeric arguments or a generator that is not a torch.Generator.
        ValueError: for out-of-range arguments (see above).
    """

    def __init__(
        self,
        degrees: Union[Number, Sequence[Number]] = 10.0,
        translate: Number = 0.1,
        scale: Sequence[Number] = (0.9, 1.1),
        shear: Union[Number, Sequence[Number]] = 0.0,
        fill: Number = 0.0,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.degrees = _range("degrees", degrees, symmetric=True)
        self.translate = _number("translate", translate)
        if not 0.0 <= self.translate <= 1.0:
            raise ValueError(f"translate must be in [0, 1]; got {translate!r}")
        self.scale = _range("scale", scale, symmetric=False)
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be a (min, max) pair with min > 0; got {scale!r}")
        self.shear = _range("shear", shear, symmetric=True)
        if not -90.0 < self.shear[0] <= self.shear[1] < 90.0:
            raise ValueError(f"shear must lie strictly inside (-90, 90) degrees; got {shear!r}")
        self.fill = _number("fill", fill)
        self.generator = _generator(generator)

    def _thetas(self, batch: int, height: int, width: int) -> torch.Tensor:
        """(batch, 2, 3) float64 matrices mapping output to input normalised coordinates."""
        u = torch.rand(batch, 5, generator=self.generator, dtype=torch.float64)
        # minus: with rows pointing down, this makes positive angles counter-clockwise on screen
        angle = -torch.deg2rad(self.degrees[0] + (self.degrees[1] - self.degrees[0]) * u[:, 0])
        shift = (2.0 * u[:, 1:3] - 1.0) * self.translate * torch.tensor([width, height], dtype=torch.float64)
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 3]
        shear = torch.deg2rad(self.shear[0] + (self.shear[1] - self.shear[0]) * u[:, 4])
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear_mat = torch.eye(2, dtype=torch.float64).repeat(batch, 1, 1)
        shear_mat[:, 0, 1] = torch.tan(shear)
        forward = zoom[:, None, None] * rot @ shear_mat  # pixel space, centred: q = A p + t
        inverse = torch.linalg.inv(forward)
        half = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
        linear = torch.linalg.inv(half) @ inverse @ half
        offset = -(torch.linalg.inv(half) @ inverse @ shift[:, :, None])
        return torch.cat([linear, offset], dim=2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Transforms (C, H, W) or (B, C, H, W) float images; returns the same shape and dtype.

        Raises:
            TypeError: if x is not a floating-point tensor.
            ValueError: if x is not 3D or 4D.
        """
        x = _check_images(x)
        batch = x if x.ndim == 4 else x.unsqueeze(0)
        theta = self._thetas(batch.shape[0], batch.shape[2], batch.shape[3]).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        out = F.grid_sample(batch - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out + self.fill
        return out if x.ndim == 4 else out.squeeze(0)

    def __repr__(self) -> str:
        return (
            f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale}, "
            f"shear={self.shear}, fill={self.fill})"
        )


class GaussianNoise:
    """Adds i.i.d. N(0, std^2) noise to a float tensor, optionally clamping the result.

    Args:
        std: noise standard deviation, >= 0.
        clamp: optional (min, max) range for the output, e.g. (0, 1).
        generator: optional torch.Generator for reproducible draws.

    Raises:
        TypeError: for a non-numeric std or a bad generator.
        ValueError: if std < 0 or clamp is not a (min, max) pair with min < max.
    """

    def __init__(
        self,
        std: Number,
        clamp: Optional[Sequence[Number]] = None,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.std = _number("std", std)
        if self.std < 0:
            raise ValueError(f"std must be >= 0; got {std!r}")
        self.clamp = None if clamp is None else _range("clamp", clamp, symmetric=False)
        if self.clamp is not None and self.clamp[0] == self.clamp[1]:
            raise ValueError(f"clamp must satisfy min < max; got {clamp!r}")
        self.generator = _generator(generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Returns ``x + std * noise`` with the shape and dtype of ``x`` (any shape).

        Raises:
            TypeError: if x is not a floating-point tensor.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"input must be a floating-point torch.Tensor; got {getattr(x, 'dtype', type(x))}")
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        out = x + self.std * noise
        return out if self.clamp is None else out.clamp(*self.clamp)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std}, clamp={self.clamp})"


class Compose:
    """Applies callables one after the other.

    Args:
        transforms: sequence of callables.

    Raises:
        TypeError: if transforms is not a sequence or holds a non-callable.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        if not isinstance(transforms, (list, tuple)):
            raise TypeError(f"transforms must be a list or tuple of callables; got {type(transforms).__name__}")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable; got {type(t).__name__}")
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class ResizeToTensor:
    """PIL image -> float RGB tensor of shape (3, image_size, image_size) in [0, 1] (no torchvision).

    The image is converted to RGB and resized (bilinear, aspect ratio not kept).

    Args:
        image_size: side of the square output, >= 1.

    Raises:
        TypeError: if image_size is not an int, or the input is not a PIL image.
        ValueError: if image_size < 1.
    """

    def __init__(self, image_size: int = 224) -> None:
        self.image_size = v.check_int("image_size", image_size, 1)

    def __call__(self, img: Image) -> torch.Tensor:
        pil = pillow_image("ResizeToTensor")
        if not isinstance(img, pil.Image):
            raise TypeError(f"input must be a PIL.Image.Image; got {type(img).__name__}")
        img = img.convert("RGB").resize((self.image_size, self.image_size), pil.BILINEAR)
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)

    def __repr__(self) -> str:
        return f"ResizeToTensor(image_size={self.image_size})"


def paper_transforms(train: bool, image_size: int = 224) -> Callable:
    """The paper's torchvision pipeline for CUB / Cars / SOP, ImageNet-normalised.

    Train: RandomResizedCrop(image_size) + RandomHorizontalFlip. Test: Resize(image_size * 256 / 224)
    + CenterCrop(image_size). Both end with ToTensor + Normalize(IMAGENET_MEAN, IMAGENET_STD), so
    they map a PIL image to a float tensor of shape (3, image_size, image_size).

    Args:
        train: build the training (augmenting) pipeline, else the deterministic test one.
        image_size: side of the output crop, >= 1.

    Returns:
        A ``torchvision.transforms.Compose``.

    Raises:
        TypeError: if train is not a bool or image_size is not an int.
        ValueError: if image_size < 1.
        ImportError: if torchvision is not installed.
    """
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool; got {type(train).__name__} ({train!r})")
    image_size = ResizeToTensor(image_size).image_size
    try:
        from torchvision import transforms as T
    except ImportError as err:
        raise ImportError(
            "paper_transforms needs torchvision, which is not installed; run `pip install pml-relaxed[vision]` "
            "or pass transform=None to use the built-in ResizeToTensor"
        ) from err
    if train:
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size)]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
