"""InvertibleSequential: a chain of invertible layers whose log-determinants add up."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["InvertibleSequential"]


class InvertibleSequential(nn.Module):
    """Compose invertible layers: ``forward`` runs them in order, ``inverse`` in reverse.

    Every layer must follow the invlin convention ``forward(x) -> (y, logabsdet)`` and
    ``inverse(y) -> (x, logabsdet)`` with x of shape (*, n) and logabsdet of shape (*,); the chain
    returns the sum of the layers' log-determinants (of the inverse direction for ``inverse``).
    With no layers it is the identity with a zero log-determinant.

    >>> from invlin.nn.lu import LULinear
    >>> flow = InvertibleSequential(LULinear(2), LULinear(2))
    >>> z, ld = flow(torch.zeros(5, 2))
    >>> z.shape, ld.shape
    (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Module) or not callable(getattr(layer, "inverse", None)):
                raise ValueError(
                    f"layers[{i}] must be an nn.Module with an inverse method, "
                    f"got {type(layer).__name__}"
                )
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> nn.Module:
        return self.layers[index]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (y, Σ log|det ∂y/∂x|) with shapes (*, n) and (*,)."""
        total: torch.Tensor | None = None
        for layer in self.layers:
            x, ld = layer(x)
            total = ld if total is None else total + ld
        if total is None:
            if not isinstance(x, torch.Tensor) or x.ndim < 1:
                raise ValueError("x must be a torch.Tensor of shape (*, features)")
            total = x.new_zeros(x.shape[:-1])
        return x, total

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x, Σ log|det ∂x/∂y|) with shapes (*, n) and (*,), running layers in reverse."""
        total: torch.Tensor | None = None
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y)
            total = ld if total is None else total + ld
        if total is None:
            if not isinstance(y, torch.Tensor) or y.ndim < 1:
                raise ValueError("y must be a torch.Tensor of shape (*, features)")
            total = y.new_zeros(y.shape[:-1])
        return y, total
