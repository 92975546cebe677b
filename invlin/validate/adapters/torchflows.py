"""Plug-in for torchflows: a ``Bijection`` is ``forward(x, context) -> (z, log_det)`` and
``inverse(z, context) -> (x, log_det)`` — the validator's own convention, context included."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import check_pair, lookup
from invlin.validate.catalog import Entry, at_least, perturb, seeded
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter
from invlin.validate.registry import builtin

__all__ = ["PLUGIN", "TorchflowsAdapter", "catalog", "conditional_catalog", "detect"]


class TorchflowsAdapter(Adapter):
    """A torchflows ``Bijection`` (an ``nn.Module``): ``forward`` maps data → latent and returns
    log|det ∂z/∂x| of shape ``batch``; ``inverse`` returns log|det ∂x/∂z| (torchflows negates
    it itself). Any batch shape is accepted, so nothing is reshaped, negated or summed; a
    context ``(*batch, m)`` is passed as ``context=``, a single ``(m,)`` context expanded to
    every row (torchflows requires the batch shapes to match)."""

    library = "torchflows"

    def _context(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        c = self.context_for(x, context)
        if c is not None and c.ndim == 1:
            c = c.expand(*x.shape[:-1], c.shape[0])
        return c

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.layer(x, context=self._context(x, context))  # type: ignore[operator]
        return check_pair(out[:2] if isinstance(out, tuple) else out, f"{self.name}.forward")

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.layer.inverse(y, context=self._context(y, context))  # type: ignore[attr-defined]
        return check_pair(out[:2] if isinstance(out, tuple) else out, f"{self.name}.inverse")


def detect(layer: object) -> type[Adapter] | None:
    """:class:`TorchflowsAdapter` for a ``torchflows.bijections.base.Bijection``."""
    cls = lookup("torchflows.bijections.base", "Bijection")
    return TorchflowsAdapter if cls is not None and isinstance(layer, cls) else None


def _build(cls_name: str, n: int, m: int | None, noise: float = 0.1) -> torch.nn.Module:
    import torchflows.bijections.finite.autoregressive.layers as layers
    import torchflows.bijections.finite.matrix.decomposition as matrices

    cls = getattr(layers, cls_name, None) or getattr(matrices, cls_name)
    if "Coupling" in cls_name or "Autoregressive" in cls_name:
        at_least(n, 2, cls_name)
    context = {"context_shape": (m,)} if m else {}
    return perturb(cls(event_shape=(n,), **context), noise)


_LAYERS = (
    ("LUMatrix", "W = L U, N(0, 0.3²) on every parameter"),
    ("AffineCoupling", "half-split affine coupling"),
    ("RQSCoupling", "rational-quadratic spline coupling"),
    ("AffineForwardMaskedAutoregressive", "MADE affine"),
    ("RQSForwardMaskedAutoregressive", "MADE rational-quadratic spline"),
)


def catalog() -> list[Entry]:
    """torchflows 1.2 bijections: LU matrix, couplings and masked autoregressive layers."""
    return [
        Entry(
            name,
            seeded(lambda n, name=name: _build(name, n, None, 0.3 if "Matrix" in name else 0.1)),
            note,
        )
        for name, note in _LAYERS
    ]


def conditional_catalog() -> list[Entry]:
    """The coupling and autoregressive layers built with ``context_shape=(m,)``."""
    from invlin.validate._catalog_layers import conditional_seeded

    return [
        Entry(name, conditional_seeded(lambda n, m, name=name: _build(name, n, m)), note)
        for name, note in _LAYERS
        if "Matrix" not in name  # InvertibleMatrix ignores the context (documented)
    ]


PLUGIN = builtin(
    "torchflows",
    detect=detect,
    convention=Convention(
        library="torchflows",
        layer_type="torchflows.bijections.base.Bijection",
        forward_call="z, ld = b(x, context=None)",
        inverse_call="x, ld = b.inverse(z, context=None)",
        context="b(x, context=c), b.inverse(z, context=c) for layers built with "
        "context_shape=(m,); c of shape (*batch, m), the batch shapes must match",
        direction="data → latent (Flow.log_prob uses forward; sample uses inverse)",
        forward_logdet="+log|det ∂z/∂x|",
        inverse_logdet="+log|det ∂x/∂z| (torchflows negates)",
        batch="any (*batch, n); log|det| of shape batch",
        adapter="none (invlin's convention); a (m,) context is expanded to every row",
    ),
    catalog=catalog,
    conditional=conditional_catalog,
    priority=35,
)
