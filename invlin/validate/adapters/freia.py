"""Adapter for FrEIA ``InvertibleModule``: ``module([x], rev=False, jac=True) -> ((y,), jac)``."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import flat_call, flat_context, lookup, square
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = ["PLUGIN", "FreiaAdapter", "detect"]


class FreiaAdapter(Adapter):
    """A FrEIA ``InvertibleModule`` built with ``dims_in=[(features,)]``; a conditional one
    (``dims_c=[(M,)]``) gets its context as FrEIA's ``c=[context]`` (``(B, M)``; a single
    ``(M,)`` context repeated for every row).

    ``forward``: ``module([x], rev=False, jac=True)`` returns ``((y,), log|det ∂y/∂x|)``;
    ``inverse``: ``module([y], rev=True, jac=True)`` returns ``((x,), −log|det ∂y/∂x|)``, which
    FrEIA's base class documents as log|det ∂x/∂y| — the validator's convention, so nothing is
    negated. The one-element output list is unpacked (a list of another length is a TypeError),
    a Python number returned as log|det| becomes a 0-d tensor (its shape is reported, not
    broadcast), and inputs are flattened to one batch dimension as FrEIA expects.

    Linear layers: ``FixedLinearTransform`` (matrix and set_matrix).
    """

    library = "freia"

    def _call(
        self, t: torch.Tensor, rev: bool, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        who = f"{self.name}({'rev' if rev else 'forward'})"
        if c is None:
            out = self.layer([t], rev=rev, jac=True)  # type: ignore[operator]
        else:
            out = self.layer([t], c=[c], rev=rev, jac=True)  # type: ignore[operator]
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"{who} must return (outputs, log|det|), got {type(out).__name__}")
        outs, ld = out
        if not isinstance(outs, (tuple, list)) or len(outs) != 1:
            raise TypeError(f"{who} must return a one-element output list")
        y = outs[0]
        if not isinstance(ld, torch.Tensor):
            ld = torch.as_tensor(ld, dtype=y.dtype, device=y.device)
        return y, ld

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = flat_context(self.context_for(x, context), x)
        return flat_call(lambda t: self._call(t, False, c), x, self.features)

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = flat_context(self.context_for(y, context), y)
        return flat_call(lambda t: self._call(t, True, c), y, self.features)

    def _fixed_linear(self) -> bool:
        return any(c.__name__ == "FixedLinearTransform" for c in type(self.layer).__mro__)

    def matrix(self) -> torch.Tensor | None:
        """``FixedLinearTransform``: M of y = M x + b (the layer stores Mᵀ), in float64."""
        if not self._fixed_linear():
            return None
        return self.layer.M.detach().to(torch.float64).mT  # type: ignore[attr-defined]

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """Set M, M⁻¹ and log|det M| of a ``FixedLinearTransform`` as its constructor does
        (inverse and slogdet computed in the layer's dtype)."""
        if not self._fixed_linear():
            raise Unsupported(f"{self.name} has no settable matrix")
        layer = self.layer
        m = square(w, self.features).to(layer.M)  # type: ignore[attr-defined]
        layer.M.copy_(m.t())  # type: ignore[attr-defined]
        layer.M_inv.copy_(m.t().inverse())  # type: ignore[attr-defined]
        layer.logDetM.copy_(torch.slogdet(m)[1])  # type: ignore[attr-defined]

    def domain(self) -> tuple[float, float] | None:
        return None


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """:class:`FreiaAdapter` for a ``FrEIA.modules.InvertibleModule``."""
    cls = lookup("FrEIA.modules.base", "InvertibleModule")
    return FreiaAdapter if cls is not None and isinstance(layer, cls) else None


PLUGIN = builtin(
    "freia",
    detect=detect,
    convention=Convention(
        library="freia",
        layer_type="FrEIA.modules.InvertibleModule built with dims_in=[(n,)]",
        forward_call="(y,), ld = m([x], rev=False, jac=True)",
        inverse_call="(x,), ld = m([y], rev=True, jac=True)",
        context="m([x], c=[c], rev=..., jac=True) for a module built with dims_c=[(m,)]; "
        "c of shape (B, m)",
        direction="data → latent",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="−log|det ∂y/∂x| = +log|det ∂x/∂y| (documented in InvertibleModule)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,) — fixed layers may return "
        "a Python float",
        adapter="one-element output list unpacked; (*batch, n) flattened to (B, n); a Python "
        "number becomes a 0-d tensor (shape reported, not broadcast); values unchanged",
    ),
    catalog=lazy("invlin.validate._catalog_layers:freia"),
    conditional=lazy("invlin.validate._catalog_layers:freia_conditional"),
    priority=20,
)
