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

    Context (conditional layers): :attr:`context_features` M > 0 says the layer is conditioned
    on a context c; ``forward(x, context=c)`` and ``inverse(y, context=c)`` take c of shape
    ``(*batch, M)`` (one context per row) or ``(M,)`` (one context for every row) and hand it
    to the layer in its library's convention. A call without a context uses
    :attr:`bound_context` when one is bound (see :mod:`invlin.validate.conditioning`: that is
    how every check runs on a conditional layer unchanged). An unconditional adapter (M = 0)
    given a context raises :class:`Unsupported`: a context is never silently dropped.
    """

    #: library name ("nflows", "zuko", "normflows", "freia", "pyro", "torch", "invlin", "custom").
    library: str = "custom"

    #: number M of context features the layer is conditioned on (0: unconditional).
    context_features: int = 0
    #: the context a call without one uses: ``(M,)`` for every row, or ``(b, M)`` for batches
    #: of exactly b rows (``None``: no context). float64; cast to the input's dtype and device.
    bound_context: torch.Tensor | None = None

    def __init__(
        self,
        layer: object,
        features: int,
        *,
        name: str | None = None,
        context_features: int = 0,
    ) -> None:
        self.layer = layer
        self.features = int(features)
        self.name = name or type(layer).__name__
        if (
            isinstance(context_features, bool)
            or not isinstance(context_features, int)
            or context_features < 0
        ):
            raise ValueError(f"context_features must be an integer >= 0, got {context_features!r}")
        self.context_features = context_features
        self.bound_context = None

    # -- required ---------------------------------------------------------------------------
    @abstractmethod
    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (*batch, features) → ``(y, ladj)`` with ``ladj`` of shape ``batch``; ``context``
        ``(*batch, M)`` or ``(M,)`` (see :meth:`context_for`)."""

    @abstractmethod
    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` (*batch, features) → ``(x, ladj_inv)`` with ``ladj_inv = log|det ∂x/∂y|``."""

    # -- context ----------------------------------------------------------------------------
    def context_for(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        """The context a call on ``x`` (*batch, features) hands the layer, or ``None``.

        ``context`` given: it must be a tensor of shape ``(M,)`` or ``(*batch, M)`` and is
        returned in ``x``'s dtype and device, its shape kept (each adapter passes a ``(M,)``
        context on as its library broadcasts one, or expands it to every row where the library
        has no broadcasting convention). ``context`` ``None``: :attr:`bound_context` expanded
        to ``(*batch, M)`` (a ``(b, M)`` bound context only for a batch of b rows), or
        ``None`` when nothing is bound. Raises :class:`Unsupported` when a context is given to
        an unconditional adapter (M = 0), ``ValueError`` naming ``context`` for a wrong shape.
        """
        m = self.context_features
        batch = tuple(x.shape[:-1])
        if context is None:
            bound = self.bound_context
            if bound is None or m == 0:
                return None
            if bound.ndim == 2 and tuple(bound.shape) != (*batch, m):
                raise ValueError(
                    f"the bound context has shape {tuple(bound.shape)}: it serves batches of "
                    f"{bound.shape[0]} rows, got x of shape {tuple(x.shape)}"
                )
            c = bound.to(device=x.device, dtype=x.dtype)
            return c.expand(*batch, m).contiguous()
        if m == 0:
            raise Unsupported(
                f"{self.name} is unconditional (context_features 0): it takes no context"
            )
        if not isinstance(context, torch.Tensor):
            raise ValueError(f"context must be a tensor, got {type(context).__name__}")
        if tuple(context.shape) not in ((m,), (*batch, m)):
            raise ValueError(
                f"context must have shape ({m},) or {(*batch, m)} for x of shape "
                f"{tuple(x.shape)}, got {tuple(context.shape)}"
            )
        return context.to(device=x.device, dtype=x.dtype)

    def whole_context(self) -> torch.Tensor | None:
        """The bound context as one ``(M,)`` tensor in the dtype and device of the layer's
        parameters (float64 without any), for code that builds the library's transform with no
        input at hand; ``None`` when the layer is unconditional or only a per-row ``(b, M)``
        context is bound."""
        bound = self.bound_context
        if self.context_features == 0 or bound is None or bound.ndim != 1:
            return None
        ref = next(iter(self.parameters()), None)
        if ref is None:
            return bound
        return bound.to(device=ref.device, dtype=ref.dtype)

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


#: A factory called with ``features=N`` (and ``context_features=M`` for a conditional layer)
#: that returns a layer in any supported convention.
Factory = Callable[..., object]
Shapes = Sequence[tuple[int, ...]]
