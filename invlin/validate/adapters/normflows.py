"""Adapter for normflows ``Flow``: ``forward(z) -> (z', log_det)`` maps latent → data."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import check_pair, flat_call, flat_context, lookup, square
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = ["PLUGIN", "NormflowsAdapter", "detect"]


class NormflowsAdapter(Adapter):
    """A normflows ``Flow``, called without a context, or — a conditional flow (built with
    ``context_features`` / ``num_context_channels``) — as ``forward(z, context=c)`` and
    ``inverse(z, context=c)`` (``(B, M)``; a single ``(M,)`` context repeated for every row).

    normflows' ``forward`` is the sampling direction (latent → data) and returns
    log|det ∂out/∂in| of that map; ``inverse`` (data → latent, used by ``log_prob``) returns
    log|det| of the inverse map (``NormalizingFlow.log_prob`` adds it, ``sample`` subtracts the
    forward one). Both are therefore already in the validator's convention and pass through
    unchanged; only the direction differs from nflows/zuko, and the adapter's ``forward`` is
    normflows' ``forward``. Inputs are flattened to one batch dimension, as normflows expects.

    Linear layers: ``InvertibleAffine`` (``z ↦ z M`` with M = (P L U)⁻¹ or W⁻¹ in forward:
    :meth:`matrix` is Mᵀ, formed as the float64 inverse of the held matrix) with
    :meth:`set_matrix`, and ``LULinearPermute`` (matrix only).
    """

    library = "normflows"

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layer
        c = flat_context(self.context_for(x, context), x)

        def call(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = layer(t) if c is None else layer(t, context=c)
            return check_pair(out, f"{self.name}.forward")

        return flat_call(call, x, self.features)

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layer
        c = flat_context(self.context_for(y, context), y)

        def call(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = layer.inverse(t) if c is None else layer.inverse(t, context=c)
            return check_pair(out, f"{self.name}.inverse")

        return flat_call(call, y, self.features)

    def _held(self) -> torch.Tensor:
        """The float64 matrix H the layer holds; its forward map is x ↦ H⁻ᵀ x."""
        layer = self.layer
        if not layer.use_lu:  # type: ignore[attr-defined]
            return layer.W.detach().to(torch.float64)  # type: ignore[attr-defined]
        f64 = torch.float64
        lower = torch.tril(layer.L.detach().to(f64), -1) + torch.eye(  # type: ignore[attr-defined]
            self.features, dtype=f64, device=layer.L.device
        )  # type: ignore[attr-defined]
        diag = layer.sign_S.to(f64) * torch.exp(layer.log_S.detach().to(f64))  # type: ignore[attr-defined]
        upper = torch.triu(layer.U.detach().to(f64), 1) + torch.diag(diag)  # type: ignore[attr-defined]
        return layer.P.to(f64) @ lower @ upper  # type: ignore[attr-defined]

    def _kind(self) -> str:
        names = {c.__name__ for c in type(self.layer).__mro__}
        for kind in ("InvertibleAffine", "LULinearPermute"):
            if kind in names:
                return kind
        return ""

    def matrix(self) -> torch.Tensor | None:
        """W of the forward map in float64 (an inverse in float64: relative error ≲ κ·ε₆₄)."""
        kind = self._kind()
        if kind == "InvertibleAffine":
            return torch.linalg.inv(self._held()).mT
        if kind == "LULinearPermute":
            # forward = permutation.inverse ∘ linear.inverse; linear is y = L U x + b.
            from invlin.validate.adapters.nflows import lu_weight

            lin = self.layer.linear  # type: ignore[attr-defined]
            perm = self.layer.permutation._permutation.detach()  # type: ignore[attr-defined]
            p = torch.eye(self.features, dtype=torch.float64, device=perm.device)[perm]
            return p.mT @ torch.linalg.inv(lu_weight(lin))
        return None

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """``InvertibleAffine``: hold H = w⁻ᵀ (float64 inverse), as P L U with partial pivoting
        (``use_lu=True``: P, sign(S) are buffers, so any invertible w fits) or as W."""
        if self._kind() != "InvertibleAffine":
            raise Unsupported(f"{self.name} has no settable matrix")
        layer = self.layer
        held = torch.linalg.inv(square(w, self.features).to(torch.float64)).mT
        if not layer.use_lu:  # type: ignore[attr-defined]
            layer.W.copy_(held.to(layer.W))  # type: ignore[attr-defined]
            return
        p, lower, upper = torch.linalg.lu(held)
        diag = torch.diagonal(upper)
        if bool((diag == 0).any()):
            raise ValueError("w must be invertible")
        ref = layer.log_S  # type: ignore[attr-defined]
        layer.P.copy_(p.to(layer.P))  # type: ignore[attr-defined]
        layer.L.copy_(lower.to(ref))  # type: ignore[attr-defined]
        layer.U.copy_(torch.triu(upper, 1).to(ref))  # type: ignore[attr-defined]
        layer.sign_S.copy_(torch.sign(diag).to(layer.sign_S))  # type: ignore[attr-defined]
        ref.copy_(torch.log(diag.abs()).to(ref))

    def domain(self) -> tuple[float, float] | None:
        """[0, 1] for spline layers built with ``tails=None``, else R."""
        for part in self.layer.modules():  # type: ignore[attr-defined]
            if getattr(part, "tails", "absent") is None:
                return (0.0, 1.0)
        return None


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """:class:`NormflowsAdapter` for a ``normflows.flows.Flow``."""
    cls = lookup("normflows.flows.base", "Flow")
    return NormflowsAdapter if cls is not None and isinstance(layer, cls) else None


PLUGIN = builtin(
    "normflows",
    detect=detect,
    convention=Convention(
        library="normflows",
        layer_type="normflows.flows.Flow",
        forward_call="y, ld = flow(x)",
        inverse_call="x, ld = flow.inverse(y)",
        context="flow(z, context=c), flow.inverse(z, context=c) for the layers that take one "
        "(autoregressive, spline and coupling-spline layers built with num_context_channels=m); "
        "c of shape (B, m); ConditionalNormalizingFlow.log_prob(x, context)",
        direction="latent → data (sampling); inverse is the log_prob direction",
        forward_logdet="+log|det ∂y/∂x| (sample() subtracts it from log q)",
        inverse_logdet="+log|det ∂x/∂y| (log_prob() adds it)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,) — some layers return ()",
        adapter="(*batch, n) flattened to (B, n); no negation (normflows' forward is the "
        "adapter's forward); a () log|det| is passed on for the shape check",
    ),
    catalog=lazy("invlin.validate._catalog_layers:normflows"),
    conditional=lazy("invlin.validate._catalog_layers:normflows_conditional"),
    priority=30,
)
