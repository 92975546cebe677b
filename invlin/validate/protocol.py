"""The one interface through which the validator sees any invertible layer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch

__all__ = ["Adapter", "Unsupported"]


class Unsupported(Exception):
    """Raised by an adapter for an operation its layer does not offer (the check is skipped)."""


class Adapter(ABC):
    """A layer seen as a bijection ``f`` on ``(*batch, features)`` tensors.

    Convention (normalised over all libraries, see :mod:`invlin.validate.conventions`):

    * :meth:`forward` is the map the library calls "forward" and returns ``(y, ladj)`` with
      ``ladj = log|det ∂y/∂x|`` of shape ``batch``;
    * :meth:`inverse` returns ``(x, ladj_inv)`` with ``ladj_inv = log|det ∂x/∂y|`` (so it equals
      ``-ladj`` at corresponding points).

    An adapter never repairs a library's result: if a library documents "inverse returns the
    forward log|det|", the adapter negates it, but a wrong value stays wrong.
    """

    #: library name ("nflows", "zuko", "normflows", "freia", "pyro", "torch", "invlin", "custom").
    library: str = "custom"

    def __init__(self, layer: object, features: int, *, name: str | None = None) -> None:
        self.layer = layer
        self.features = int(features)
        self.name = name or type(layer).__name__

    # -- required ---------------------------------------------------------------------------
    @abstractmethod
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (*batch, features) → ``(y, ladj)`` with ``ladj`` of shape ``batch``."""

    @abstractmethod
    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` (*batch, features) → ``(x, ladj_inv)`` with ``ladj_inv = log|det ∂x/∂y|``."""

    # -- optional (default implementations for torch.nn.Module layers) ----------------------
    @property
    def module(self) -> torch.nn.Module | None:
        """The underlying ``nn.Module`` (``None`` when the layer is not one)."""
        return self.layer if isinstance(self.layer, torch.nn.Module) else None

    def parameters(self) -> list[torch.Tensor]:
        """Trainable tensors of the layer (may be empty)."""
        m = self.module
        return [p for p in m.parameters() if p.requires_grad] if m is not None else []

    def to(self, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
        """Move the layer in place and return ``self``; raise :class:`Unsupported` if impossible."""
        m = self.module
        if m is None:
            raise Unsupported(f"{self.name} is not an nn.Module and cannot be moved")
        m.to(dtype=dtype, device=device)
        return self

    def train(self, mode: bool = True) -> None:
        """Switch train/eval mode; raise :class:`Unsupported` when the layer has no modes."""
        m = self.module
        if m is None:
            raise Unsupported(f"{self.name} has no train/eval mode")
        m.train(mode)

    def matrix(self) -> torch.Tensor | None:
        """The (features, features) matrix ``W`` if ``f(x) = W x + b``, else ``None``."""
        return None

    def set_matrix(self, w: torch.Tensor) -> None:
        """Make the layer's linear map equal ``w`` (as far as the parameterisation allows).

        Used to test ill-conditioned weights; raise :class:`Unsupported` when not possible.
        After the call, :meth:`matrix` must return the matrix the layer really holds.
        """
        raise Unsupported(f"{self.name} has no settable matrix")

    def domain(self) -> tuple[float, float] | None:
        """Interval every input coordinate must lie in (``None``: all of R)."""
        return None

    def codomain(self) -> tuple[float, float] | None:
        """Interval every output coordinate lies in (``None``: all of R or not known).

        A finite end is the limit of the map, not a value it takes: an output rounded onto it
        (tanh(−20) = −1.0 in float64) has an infinite preimage.
        """
        return None


#: A factory called with ``features=N`` that returns a layer in any supported convention.
Factory = Callable[..., object]
Shapes = Sequence[tuple[int, ...]]
