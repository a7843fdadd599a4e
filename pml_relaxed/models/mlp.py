"""A plain ReLU multi-layer perceptron."""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .. import _validation as v


class MLP(nn.Module):
    """``Linear -> [BatchNorm] -> ReLU -> [Dropout]`` for each hidden layer, then a final ``Linear``.

    The output layer has no activation, so the output is a free (un-normalised) embedding.
    ``MLP(64, [], 16)`` is a single linear layer.

    Args:
        in_dim: input dimension (e.g. 64 for the 8x8 sklearn digits).
        hidden_dims: widths of the hidden layers, possibly empty.
        out_dim: output dimension.
        batch_norm: add ``BatchNorm1d`` after each hidden ``Linear``.
        dropout: dropout probability after each hidden activation, in ``[0, 1)``.

    Shape:
        Input ``(batch, in_dim)``; output ``(batch, out_dim)``.

    Raises:
        TypeError: a non-int dimension, ``hidden_dims`` not a sequence, a non-number ``dropout``.
        ValueError: a dimension < 1 or ``dropout`` outside ``[0, 1)``; in ``forward``, an input whose
            last dimension is not ``in_dim``.

    Examples:
        >>> import torch
        >>> model = MLP(64, [128, 128], 16, batch_norm=True)
        >>> model(torch.randn(8, 64)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = v.check_int("in_dim", in_dim, 1)
        self.out_dim = v.check_int("out_dim", out_dim, 1)
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
            raise TypeError(
                f"hidden_dims must be a sequence of ints (possibly empty); got {type(hidden_dims).__name__}"
            )
        self.hidden_dims = [v.check_int(f"hidden_dims[{i}]", h, 1) for i, h in enumerate(hidden_dims)]
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1); got {type(dropout).__name__} ({dropout!r})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")

        layers: List[nn.Module] = []
        prev = in_dim
        for h in self.hidden_dims:
            layers.append(nn.Linear(prev, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        layers.append(nn.Linear(prev, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the MLP.

        Args:
            x: ``(batch, in_dim)`` floating-point tensor.

        Returns:
            ``(batch, out_dim)`` tensor.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: ``x`` is not 2D with ``in_dim`` columns.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            actual = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"x must be a floating-point torch.Tensor; got {actual}")
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape (batch, {self.in_dim}); got {tuple(x.shape)}")
        return self.net(x)
