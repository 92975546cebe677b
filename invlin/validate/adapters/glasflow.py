"""Plug-in for glasflow: its transforms come from the fork of nflows it bundles
(``glasflow.nflows``), so they follow nflows' calls and conventions."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import lookup
from invlin.validate.adapters.nflows import NflowsAdapter
from invlin.validate.catalog import Entry, at_least, perturb, seeded
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter
from invlin.validate.registry import builtin

__all__ = ["PLUGIN", "GlasflowAdapter", "catalog", "conditional_catalog", "detect"]

_HIDDEN = 16  # conditioner width, as in every catalog


class GlasflowAdapter(NflowsAdapter):
    """A ``glasflow.nflows`` transform: nflows' convention (see :class:`NflowsAdapter`); its
    linear layers are recognised by their class names in the forked modules."""

    library = "glasflow"

    def _kind(self) -> str:
        names = {
            c.__name__
            for c in type(self.layer).__mro__
            if c.__module__.startswith(("glasflow.nflows.", "nflows."))
        }
        for kind in ("LULinear", "NaiveLinear", "Linear", "Permutation"):
            if kind in names:
                return kind
        return ""


def detect(layer: object) -> type[Adapter] | None:
    """:class:`GlasflowAdapter` for a ``glasflow.nflows`` transform (with
    ``GLASFLOW_USE_NFLOWS=true`` glasflow uses nflows itself, and the nflows plug-in answers)."""
    cls = lookup("glasflow.nflows.transforms.base", "Transform")
    return GlasflowAdapter if cls is not None and isinstance(layer, cls) else None


def _flow_transform(cls_name: str, n: int, m: int | None) -> torch.nn.Module:
    """The transform of a glasflow flow ``cls_name`` with two transforms of width 16."""
    import glasflow.flows as gf

    at_least(n, 2, cls_name)
    flow = getattr(gf, cls_name)(
        n_inputs=n, n_transforms=2, n_conditional_inputs=m, n_neurons=_HIDDEN
    )
    return perturb(flow._transform)  # Flow keeps the transform as _transform (no accessor)


def _affine_coupling(n: int) -> torch.nn.Module:
    from glasflow.nflows.nn.nets import ResidualNet
    from glasflow.nflows.utils import create_alternating_binary_mask
    from glasflow.transforms.coupling import AffineCouplingTransform

    at_least(n, 2, "AffineCouplingTransform")

    def net(n_in: int, n_out: int) -> torch.nn.Module:
        return ResidualNet(n_in, n_out, hidden_features=_HIDDEN, num_blocks=1)

    mask = create_alternating_binary_mask(n, even=True)
    return perturb(AffineCouplingTransform(mask, net, scale_activation="log2"))


def catalog() -> list[Entry]:
    """glasflow 0.4 flows' transforms and its own coupling layer (data → noise)."""
    from glasflow.nflows.transforms import LULinear

    return [
        Entry("LULinear", seeded(lambda n: perturb(LULinear(n), 0.3)), "the forked nflows LU"),
        Entry(
            "RealNVP",
            seeded(lambda n: _flow_transform("RealNVP", n, None)),
            "2 affine couplings, residual nets of width 16",
        ),
        Entry(
            "CouplingNSF",
            seeded(lambda n: _flow_transform("CouplingNSF", n, None)),
            "2 rational-quadratic spline couplings",
        ),
        Entry(
            "MaskedAffineAutoregressive",
            seeded(lambda n: _flow_transform("MaskedAffineAutoregressiveFlow", n, None)),
            "2 MADE affine layers",
        ),
        Entry(
            "AffineCouplingTransform",
            seeded(_affine_coupling),
            "glasflow's coupling with scale_activation='log2'",
        ),
    ]


def conditional_catalog() -> list[Entry]:
    """The conditional flows (``n_conditional_inputs`` = context features) as layers."""
    from invlin.validate._catalog_layers import conditional_seeded

    return [
        Entry(
            name,
            conditional_seeded(lambda n, m, cls=cls: _flow_transform(cls, n, m)),
            "context into every conditioner net",
        )
        for name, cls in (
            ("RealNVP", "RealNVP"),
            ("CouplingNSF", "CouplingNSF"),
            ("MaskedAffineAutoregressive", "MaskedAffineAutoregressiveFlow"),
        )
    ]


PLUGIN = builtin(
    "glasflow",
    detect=detect,
    convention=Convention(
        library="glasflow",
        layer_type="glasflow.nflows.transforms.Transform (glasflow's fork of nflows)",
        forward_call="y, ld = t(x, context=None)",
        inverse_call="x, ld = t.inverse(y, context=None)",
        context="as nflows: t(x, context=c), c of shape (B, m), for flows built with "
        "n_conditional_inputs=m (Flow.forward(x, conditional=c) passes it on)",
        direction="data → noise",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (negated by the fork, as nflows)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,)",
        adapter="as nflows: (*batch, n) flattened to (B, n); values unchanged",
    ),
    catalog=catalog,
    conditional=conditional_catalog,
    priority=15,
)
