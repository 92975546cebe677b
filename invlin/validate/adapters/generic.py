"""Adapters for invlin's convention: ``forward(x) -> (y, ladj)``, ``inverse(y) -> (x, ladj)``."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import admissible_lu, check_pair, lookup, lu_nopivot, square
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = [
    "PLUGIN",
    "GenericAdapter",
    "InvlinLUAdapter",
    "P4InvLinearAdapter",
    "detect",
    "looks_generic",
]


def looks_generic(layer: object) -> bool:
    """True when ``layer`` is callable (or has ``forward``) and has a callable ``inverse``."""
    has_forward = callable(layer) or callable(getattr(layer, "forward", None))
    return has_forward and callable(getattr(layer, "inverse", None))


class GenericAdapter(Adapter):
    """A layer in invlin's convention, used as is.

    ``layer(x)`` (or ``layer.forward(x)`` for a non-callable object) must return
    ``(y, log|det ∂y/∂x|)`` and ``layer.inverse(y)`` must return ``(x, log|det ∂x/∂y|)``, with
    x, y of shape ``(*batch, features)`` and log|det| of shape ``batch``. Nothing is reshaped,
    negated or summed: invlin's convention is the validator's. A conditional layer takes its
    context as the keyword ``context`` (``(*batch, M)`` or ``(M,)``, passed on unchanged):
    ``layer(x, context=c)``, ``layer.inverse(y, context=c)``.
    """

    library = "custom"

    def __init__(
        self,
        layer: object,
        features: int,
        *,
        name: str | None = None,
        context_features: int = 0,
    ) -> None:
        if not looks_generic(layer):
            raise TypeError(f"{type(layer).__name__} has no callable forward and inverse")
        super().__init__(layer, features, name=name, context_features=context_features)
        module = type(layer).__module__ or ""
        if module == "invlin" or module.startswith("invlin."):
            self.library = "invlin"

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        call = self.layer if callable(self.layer) else self.layer.forward  # type: ignore[attr-defined]
        c = self.context_for(x, context)
        out = call(x) if c is None else call(x, context=c)
        return check_pair(out, f"{self.name}.forward")

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.context_for(y, context)
        inv = self.layer.inverse  # type: ignore[attr-defined]
        out = inv(y) if c is None else inv(y, context=c)
        return check_pair(out, f"{self.name}.inverse")


class P4InvLinearAdapter(GenericAdapter):
    """invlin's :class:`~invlin.nn.P4InvLinear`: ``W = A + u vᵀ``, A⁻¹ and log|det A| tracked."""

    def matrix(self) -> torch.Tensor:
        """``A + u vᵀ`` in the state dtype (float64 by default), detached; shape (n, n)."""
        layer = self.layer
        a = layer.weight.detach()  # type: ignore[attr-defined]
        u = layer.u.detach().to(a.dtype)  # type: ignore[attr-defined]
        v = layer.v.detach().to(a.dtype)  # type: ignore[attr-defined]
        return torch.addr(a, u, v)

    @torch.no_grad()
    def sign(self) -> torch.Tensor:
        """sign det(A + u vᵀ) as the layer tracks it: the ``sign`` buffer (sign det A, carried
        through merges by the determinant lemma) times sign(c), c = 1 + vᵀA⁻¹u; shape ()."""
        layer = self.layer
        return layer.sign * torch.sign(layer.factor())  # type: ignore[attr-defined]

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """A ← w, u ← 0, then :meth:`P4InvLinear.refresh` re-factors A⁻¹, sign and log|det A|.

        Raises ValueError (from the layer) when ``w`` is singular.
        """
        layer = self.layer
        a = layer.weight  # type: ignore[attr-defined]
        w = square(w, self.features)
        a.copy_(w.to(device=a.device, dtype=a.dtype))
        layer.u.zero_()  # type: ignore[attr-defined]
        layer.refresh()  # type: ignore[attr-defined]


class InvlinLUAdapter(GenericAdapter):
    """invlin's :class:`~invlin.nn.LULinear`: ``W = L U`` (L unit lower, U upper, free signs)."""

    def matrix(self) -> torch.Tensor:
        """``L U`` assembled in float64 from the parameters, detached; shape (n, n)."""
        return self.layer.weight(torch.float64).detach()  # type: ignore[attr-defined]

    def admissible(self, w: torch.Tensor) -> torch.Tensor:
        """A matrix with ``w``'s singular values whose LU needs no pivoting (rows permuted)."""
        return admissible_lu(square(w, self.features).to(torch.float64))

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """Factor ``w = L U`` (float64, no row swaps) into the parameters.

        Raises :class:`Unsupported` when ``w`` needs row pivoting (use :meth:`admissible`).
        """
        layer = self.layer
        lower, upper = lu_nopivot(square(w, self.features).to(torch.float64))
        ref = layer.upper_diag  # type: ignore[attr-defined]
        layer.lower_entries.copy_(torch.tril(lower, -1).to(ref.dtype))  # type: ignore[attr-defined]
        layer.upper_entries.copy_(torch.triu(upper, 1).to(ref.dtype))  # type: ignore[attr-defined]
        ref.copy_(torch.diagonal(upper).to(ref.dtype))
        if bool((ref == 0).any()):
            raise Unsupported("w is singular (a pivot of its LU is zero in the layer's dtype)")


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """invlin's linear layers get their matrix-aware adapters; any other object with forward and
    inverse (checked last: the most general convention) the generic one."""
    if isinstance(layer, lookup("invlin.nn", "P4InvLinear") or ()):
        return P4InvLinearAdapter
    if isinstance(layer, lookup("invlin.nn", "LULinear") or ()):
        return InvlinLUAdapter
    return GenericAdapter if looks_generic(layer) else None


PLUGIN = builtin(
    "invlin",
    detect=detect,
    convention=Convention(
        library="invlin",
        layer_type="invlin.nn layers; any object with forward/inverse returning (tensor, ladj)",
        forward_call="y, ld = layer(x)",
        inverse_call="x, ld = layer.inverse(y)",
        context="y, ld = layer(x, context=c) when a factory built it with context_features; "
        "invlin's own layers are unconditional",
        direction="data → latent (LU-Net); linear layers have no preferred direction",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (= −forward)",
        batch="any (*batch, n); log|det| of shape batch",
        adapter="none: this is the validator's convention",
    ),
    catalog=lazy("invlin.validate._catalog_layers:invlin"),
    priority=100,
    aliases=("custom",),
)
