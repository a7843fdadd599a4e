"""The classic few-shot Conv-4 image encoder with a linear embedding head."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .. import _validation as v

_NUM_BLOCKS = 4


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Four conv3x3-BN-ReLU-maxpool2 blocks, flattened, then a linear embedding head.

    This is the Conv-4 trunk used throughout the few-shot literature (e.g. Omniglot, miniImageNet).
    ``width`` sets the number of channels of every block, so ``Conv4(width=32)`` is a narrower
    student of ``Conv4(width=64)``. Each block halves the spatial size (floor), so a 28x28 input
    gives a ``width x 1 x 1`` feature map and an 84x84 input a ``width x 5 x 5`` one.

    The model is split in two parts that can be handed to PML trainers as
    ``models={"trunk": model.trunk, "embedder": model.embedder}`` (see :meth:`trunk_and_embedder`):
    ``trunk`` maps images to flattened features ``(batch, feature_dim)`` and ``embedder`` is the
    ``nn.Linear(feature_dim, embedding_dim)`` head. The output is not normalised.

    Args:
        in_channels: number of input channels (1 for Omniglot, 3 for RGB).
        width: channels of each of the four conv blocks.
        embedding_dim: output dimension of the linear head; ``None`` drops the head
            (``embedder`` is ``nn.Identity`` and the output is the ``feature_dim`` trunk features).
        image_size: height and width of the (square) input images; must be >= 16 so that
            four 2x2 poolings leave at least one pixel.

    Shape:
        Input ``(batch, in_channels, image_size, image_size)``; output ``(batch, embedding_dim)``
        (or ``(batch, feature_dim)`` when ``embedding_dim`` is None).

    Raises:
        TypeError: a non-int argument.
        ValueError: a non-positive argument or ``image_size < 16``; in ``forward``, an input of the
            wrong shape.

    Examples:
        >>> import torch
        >>> model = Conv4(in_channels=1, width=32, embedding_dim=64, image_size=28)
        >>> model(torch.randn(5, 1, 28, 28)).shape
        torch.Size([5, 64])
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 64,
        embedding_dim: Optional[int] = 128,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        self.in_channels = v.check_int("in_channels", in_channels, 1)
        self.width = v.check_int("width", width, 1)
        self.image_size = v.check_int("image_size", image_size, minimum=2**_NUM_BLOCKS)
        if embedding_dim is not None:
            v.check_int("embedding_dim", embedding_dim, 1)
        spatial = image_size
        for _ in range(_NUM_BLOCKS):
            spatial //= 2
        self.feature_dim = width * spatial * spatial
        self.embedding_dim = self.feature_dim if embedding_dim is None else embedding_dim

        blocks = [_conv_block(in_channels if i == 0 else width, width) for i in range(_NUM_BLOCKS)]
        self.trunk = nn.Sequential(*blocks, nn.Flatten())
        # channels-last conv weights make the convolutions and poolings about 1.3-1.5x faster on CPU
        # (oneDNN's preferred layout; measured on Omniglot batches); outputs are unchanged.
        self.trunk.to(memory_format=torch.channels_last)
        self.embedder: nn.Module = (
            nn.Identity() if embedding_dim is None else nn.Linear(self.feature_dim, embedding_dim)
        )

    def trunk_and_embedder(self) -> Tuple[nn.Module, nn.Module]:
        """Returns the two parts of this model (sharing its parameters) for a PML trainer.

        Returns:
            ``(trunk, embedder)``: ``trunk`` maps ``(batch, in_channels, H, W)`` images to
            ``(batch, feature_dim)`` features, ``embedder`` maps those to ``(batch, embedding_dim)``.
        """
        return self.trunk, self.embedder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embeds a batch of images.

        Args:
            images: ``(batch, in_channels, image_size, image_size)`` floating-point tensor.

        Returns:
            ``(batch, embedding_dim)`` un-normalised embeddings.

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` does not have the expected shape.
        """
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            actual = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"images must be a floating-point torch.Tensor; got {actual}")
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}); "
                f"got {tuple(images.shape)}"
            )
        return self.embedder(self.trunk(images))
