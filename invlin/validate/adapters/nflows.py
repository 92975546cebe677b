"""Adapter for nflows ``Transform``: ``forward(inputs, context) -> (outputs, logabsdet)``."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from invlin.validate.adapters._common import (
    admissible_lu,
    check_pair,
    flat_call,
    flat_context,
    lookup,
    lu_nopivot,
    square,
)
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = ["PLUGIN", "NflowsAdapter", "detect", "lu_weight"]


class NflowsAdapter(Adapter):
    """An nflows ``Transform`` (an ``nn.Module``), called with ``context=c`` (``(B, M)``, a
    single ``(M,)`` context repeated for every row) or ``context=None`` when unconditional.

    nflows maps data → noise in ``forward`` and returns log|det ∂y/∂x|; ``inverse`` returns the
    inverse map's log|det ∂x/∂y| (already negated by nflows), so both pass through unchanged.
    nflows layers take one leading batch dimension: inputs of other batch shapes are flattened
    to ``(B, features)`` and reshaped back (see :func:`~._common.flat_call`).

    Linear layers (subclasses of ``nflows.transforms.linear.Linear``: ``LULinear``,
    ``NaiveLinear``, ``QRLinear``, ``SVDLinear``) expose :meth:`matrix`, assembled by the
    layer's own ``weight()`` on a float64 copy of its parameters; ``LULinear`` and
    ``NaiveLinear`` also accept :meth:`set_matrix`. Permutations expose their 0/1 matrix.
    """

    library = "nflows"

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layer
        c = flat_context(self.context_for(x, context), x)
        return flat_call(
            lambda t: check_pair(layer(t, context=c), f"{self.name}.forward"), x, self.features
        )

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layer
        c = flat_context(self.context_for(y, context), y)
        return flat_call(
            lambda t: check_pair(layer.inverse(t, context=c), f"{self.name}.inverse"),
            y,
            self.features,
        )

    # -- linear layers ---------------------------------------------------------------------
    def _kind(self) -> str:
        names = {c.__name__ for c in type(self.layer).__mro__ if c.__module__.startswith("nflows.")}
        for kind in ("LULinear", "NaiveLinear", "Linear", "Permutation"):
            if kind in names:
                return kind
        return ""

    def matrix(self) -> torch.Tensor | None:
        """W of ``y = W x + b`` in float64 (detached), or ``None`` for a non-linear layer."""
        kind = self._kind()
        n = self.features
        if kind == "Permutation":
            perm = self.layer._permutation.detach()  # type: ignore[attr-defined]
            return torch.eye(n, dtype=torch.float64, device=perm.device)[perm]
        if not kind:
            return None
        if kind == "LULinear":
            return lu_weight(self.layer)
        twin = copy.deepcopy(self.layer).to(torch.float64)
        with torch.no_grad():
            return twin.weight().detach().to(self.layer.bias.device)  # type: ignore[attr-defined]

    def admissible(self, w: torch.Tensor) -> torch.Tensor:
        """A matrix with ``w``'s κ that :meth:`set_matrix` can hold, or ``w`` itself.

        ``LULinear`` (no permutation, diag(U) = softplus(raw) + eps > eps): rows in pivot order,
        columns signed so every pivot is positive, and — when the smallest pivot is at most
        ``eps`` — the whole matrix scaled by 2·eps/(smallest pivot). Singular values are those
        of ``w`` times one common factor, so κ₁ and κ₂ are unchanged. Other layers: ``w``.
        """
        w = square(w, self.features).to(torch.float64)
        if self._kind() != "LULinear":
            return w
        fit = admissible_lu(w, positive_diagonal=True)
        smallest = float(torch.diagonal(torch.linalg.lu(fit)[2]).min())
        eps = float(self.layer.eps)  # type: ignore[attr-defined]
        return fit * (2 * eps / smallest) if smallest <= eps else fit

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """Write ``w`` into the parameters; the layer's cache is invalidated afterwards.

        ``LULinear``: w = L U with unit L and diag(U) = softplus(raw) + eps, so every pivot of
        w's (unpivoted) LU must exceed ``eps``, else :class:`Unsupported` (use
        :meth:`admissible`). ``NaiveLinear``: any w.
        """
        kind = self._kind()
        layer = self.layer
        w = square(w, self.features).to(torch.float64)
        if kind == "NaiveLinear":
            layer._weight.copy_(w.to(layer._weight))  # type: ignore[attr-defined]
        elif kind == "LULinear":
            lower, upper = lu_nopivot(w)
            diag = torch.diagonal(upper)
            eps = float(layer.eps)  # type: ignore[attr-defined]
            if not bool((diag > eps).all()):
                raise Unsupported(
                    f"LULinear needs every pivot of w above eps = {eps:g} "
                    f"(softplus diagonal); smallest is {float(diag.min()):.3g}"
                )
            rows, cols = layer.lower_indices  # type: ignore[attr-defined]
            ref = layer.lower_entries  # type: ignore[attr-defined]
            ref.copy_(lower[rows, cols].to(ref))
            rows, cols = layer.upper_indices  # type: ignore[attr-defined]
            layer.upper_entries.copy_(upper[rows, cols].to(ref))  # type: ignore[attr-defined]
            layer.unconstrained_upper_diag.copy_(  # type: ignore[attr-defined]
                _softplus_inverse(diag - eps).to(ref)
            )
        else:
            raise Unsupported(f"{self.name} has no settable matrix")
        layer.cache.invalidate()  # type: ignore[attr-defined]

    def domain(self) -> tuple[float, float] | None:
        """[0, 1] for spline layers built with ``tails=None`` and for ``Logit``, else R."""
        if getattr(self.layer, "tails", "absent") is None:
            return (0.0, 1.0)
        if any(c.__name__ == "Logit" for c in type(self.layer).__mro__):
            return (0.0, 1.0)
        return None


def _softplus_inverse(d: torch.Tensor) -> torch.Tensor:
    """raw with softplus(raw) = d > 0, i.e. d + log(−expm1(−d)), accurate for small and large d."""
    return d + torch.log(-torch.expm1(-d))


def lu_weight(layer: object) -> torch.Tensor:
    """L U of an nflows ``LULinear`` assembled in float64 from its parameters."""
    n = layer.features  # type: ignore[attr-defined]
    lo = layer.lower_entries.detach().to(torch.float64)  # type: ignore[attr-defined]
    up = layer.upper_entries.detach().to(torch.float64)  # type: ignore[attr-defined]
    raw = layer.unconstrained_upper_diag.detach().to(torch.float64)  # type: ignore[attr-defined]
    lower = torch.eye(n, dtype=torch.float64, device=lo.device)
    upper = torch.zeros(n, n, dtype=torch.float64, device=lo.device)
    rows, cols = layer.lower_indices  # type: ignore[attr-defined]
    lower[rows, cols] = lo
    rows, cols = layer.upper_indices  # type: ignore[attr-defined]
    upper[rows, cols] = up
    upper.diagonal().copy_(F.softplus(raw) + float(layer.eps))  # type: ignore[attr-defined]
    return lower @ upper


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """:class:`NflowsAdapter` for an ``nflows.transforms.Transform``."""
    cls = lookup("nflows.transforms.base", "Transform")
    return NflowsAdapter if cls is not None and isinstance(layer, cls) else None


PLUGIN = builtin(
    "nflows",
    detect=detect,
    convention=Convention(
        library="nflows",
        layer_type="nflows.transforms.Transform",
        forward_call="y, ld = t(x, context=None)",
        inverse_call="x, ld = t.inverse(y, context=None)",
        context="t(x, context=c), t.inverse(y, context=c); c of shape (B, m), one row per "
        "input row; layers built with context_features=m hand c to their conditioner net",
        direction="data → noise",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (nflows negates)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,)",
        adapter="(*batch, n) flattened to (B, n) and reshaped back; log|det| reshaped only if "
        "it is exactly (B,); values unchanged",
    ),
    catalog=lazy("invlin.validate._catalog_layers:nflows"),
    conditional=lazy("invlin.validate._catalog_layers:nflows_conditional"),
    priority=10,
)
