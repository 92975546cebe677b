"""Adapter for zuko: a lazy transform or flow called with its context (or ``None``);
``call_and_ladj``."""

from __future__ import annotations

import copy

import torch
from torch.distributions import Transform

from invlin.validate.adapters._common import admissible_lu, lookup, lu_nopivot, square, sum_event
from invlin.validate.adapters.distributions import DistributionsAdapter, transform_library
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = ["PLUGIN", "ZukoAdapter", "detect"]


def _names(obj: object) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


class ZukoAdapter(DistributionsAdapter):
    """A zuko ``LazyTransform`` (or ``Flow``: its ``.transform``), or a zuko ``Transform``.

    A lazy layer is called with its context ``c`` (``None`` when unconditional; ``(*batch, M)``
    or ``(M,)``, which zuko broadcasts) on every evaluation, so parameter updates are always
    seen; a ``Flow`` contributes ``flow(c).transform`` (data → latent, zuko's direction).
    ``forward`` is ``t.call_and_ladj(x)``, ``inverse`` is ``t.inv.call_and_ladj(y)`` (torch's
    inverse negates the log|det|). Elementwise transforms (event dim 0) have their log|det|
    summed over the features axis, as for :class:`DistributionsAdapter`.

    Linear layers: ``UnconditionalTransform(LULinearTransform, LU)`` (matrix and set_matrix),
    ``RotationTransform`` and ``PermutationTransform`` (matrix only).
    """

    library = "zuko"

    def transform(self, context: torch.Tensor | None = None) -> Transform:
        """The torch ``Transform`` built from the layer with ``context`` (``None``: none):
        ``layer(context)``, the ``.transform`` of a flow's distribution; a zuko ``Transform``
        is itself (and takes no context). No context given: the bound one
        (:meth:`~invlin.validate.protocol.Adapter.whole_context`), if any."""
        return _build(self.layer, self.whole_context() if context is None else context)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.transform(self.context_for(x, context))
        y, ld = t.call_and_ladj(x)
        return y, sum_event(ld, x, t.domain.event_dim)

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ti = self.transform(self.context_for(y, context)).inv
        x, ld = ti.call_and_ladj(y)
        return x, sum_event(ld, y, ti.domain.event_dim)

    def domain(self) -> tuple[float, float] | None:
        """(−B, B) when a part is a zuko ``MonotonicTransform`` (inverse by bisection searched
        in [−B, B] only), else the bounds of the transform's domain constraint, else R.

        Autoregressive and coupling parts are asked for their univariate transform at x = 0.
        """
        ref = next(iter(self.parameters()), None)
        probe = torch.zeros(
            1,
            self.features,
            dtype=ref.dtype if ref is not None else None,
            device=ref.device if ref is not None else None,
        )
        t = self.transform(self.context_for(probe, None))
        bounds = [b for part in _parts(t, probe) if (b := _bisection_bound(part))]
        if bounds:
            b = min(bounds)
            return (-b, b)
        return super().domain()

    # -- linear layers ---------------------------------------------------------------------
    def _float64_transform(self) -> Transform:
        layer = self.layer
        if isinstance(layer, torch.nn.Module):
            layer = copy.deepcopy(layer).to(torch.float64)
        c = self.whole_context()
        return _build(layer, None if c is None else c.to(torch.float64))

    def matrix(self) -> torch.Tensor | None:
        """W in float64 (from a float64 copy of the parameters), or ``None``."""
        with torch.no_grad():
            t = self._float64_transform()
        names = _names(t)
        if "LULinearTransform" in names:
            return (t.L @ t.U).detach()  # type: ignore[attr-defined]
        if "RotationTransform" in names:
            return t.R.detach()  # type: ignore[attr-defined]
        if "PermutationTransform" in names:
            order = t.order.detach()  # type: ignore[attr-defined]
            return torch.eye(self.features, dtype=torch.float64, device=order.device)[order]
        return None

    def _lu_parameter(self) -> torch.Tensor:
        layer = self.layer
        if (
            "UnconditionalTransform" in _names(layer)
            and getattr(layer, "f", None) is not None
            and getattr(layer.f, "__name__", "") == "LULinearTransform"
        ):  # type: ignore[attr-defined]
            return layer._0  # type: ignore[attr-defined]
        raise Unsupported(f"{self.name} has no settable matrix")

    def admissible(self, w: torch.Tensor) -> torch.Tensor:
        """w with its columns permuted so that ``w = L U`` (U unit upper) needs no pivoting."""
        w = square(w, self.features).to(torch.float64)
        return admissible_lu(w.mT).mT

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """Write ``w = L U`` (L lower, U unit upper) into the ``LU`` tensor of the layer.

        From the unpivoted LU of ``wᵀ = L' U'``: L = U'ᵀ and U = L'ᵀ. Raises
        :class:`Unsupported` when ``wᵀ`` needs pivoting (use :meth:`admissible`).
        """
        param = self._lu_parameter()
        w = square(w, self.features).to(torch.float64)
        lower_t, upper_t = lu_nopivot(w.mT)
        packed = upper_t.mT + torch.triu(lower_t.mT, 1)
        param.copy_(packed.to(param))


def _build(layer: object, context: torch.Tensor | None) -> Transform:
    """The Transform of a lazy layer or Flow called with ``context`` (``None``: none), or the
    layer itself (a plain zuko ``Transform``, which takes no context: TypeError if given one)."""
    if isinstance(layer, Transform):
        if context is not None:
            raise TypeError(f"{type(layer).__name__} is a plain Transform: it takes no context")
        return layer
    out = layer(context)  # type: ignore[operator]
    if not isinstance(out, Transform):
        out = getattr(out, "transform", out)  # a Flow gives a NormalizingFlow distribution
    if not isinstance(out, Transform):
        what = "None" if context is None else "context"
        raise TypeError(
            f"{type(layer).__name__}({what}) gave a {type(out).__name__}, not a torch Transform"
        )
    return out


def _parts(t: Transform, probe: torch.Tensor) -> list[Transform]:
    """The elementary transforms of ``t``: composed parts, and the univariate transform that an
    autoregressive or coupling part applies (obtained from its ``meta`` at x = 0)."""
    out: list[Transform] = []
    stack = [t]
    while stack:
        part = stack.pop()
        names = _names(part)
        if "ComposedTransform" in names or "ComposeTransform" in names:
            stack.extend(getattr(part, "transforms", None) or getattr(part, "parts", []))
        elif "AutoregressiveTransform" in names and callable(getattr(part, "meta", None)):
            with torch.no_grad():
                stack.append(part.meta(probe))  # type: ignore[attr-defined]
        elif isinstance(base := _wrapped(part), Transform):
            stack.append(base)
        else:
            out.append(part)
    return out


def _wrapped(t: Transform) -> Transform | None:
    """The base of a zuko ``DependentTransform`` or torch ``IndependentTransform``."""
    for attr in ("base", "base_transform"):
        base = getattr(t, attr, None)
        if isinstance(base, Transform):
            return base
    return None


def _bisection_bound(t: Transform) -> float | None:
    """B of a zuko ``MonotonicTransform`` (its inverse searches [−B, B]), else ``None``."""
    if "MonotonicTransform" in _names(t):
        return float(t.bound)  # type: ignore[attr-defined]
    return None


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """:class:`ZukoAdapter` for a zuko lazy transform or flow, or a torch ``Transform`` that
    zuko defines (before the torch plug-in, which would take any ``Transform``)."""
    lazy_types = tuple(
        c for c in (lookup("zuko.lazy", "LazyTransform"), lookup("zuko.lazy", "Flow")) if c
    )
    if lazy_types and isinstance(layer, lazy_types):
        return ZukoAdapter
    if isinstance(layer, Transform) and transform_library(layer) == "zuko":
        return ZukoAdapter
    return None


PLUGIN = builtin(
    "zuko",
    detect=detect,
    convention=Convention(
        library="zuko",
        layer_type="zuko.lazy.LazyTransform, zuko.flows.Flow (its .transform), zuko Transform",
        forward_call="t = lazy(None); y, ld = t.call_and_ladj(x)",
        inverse_call="x, ld = t.inv.call_and_ladj(y)",
        context="t = lazy(c) builds the transform for context c (shape (*batch, m), "
        "broadcast against x by the hyper-network); a Flow gives the distribution flow(c)",
        direction="data → latent",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (torch's inverse transform negates)",
        batch="any (*batch, n); elementwise transforms (event_dim 0) give (*batch, n)",
        adapter="lazy layer rebuilt with context None at every call; event_dim 0 log|det| "
        "summed over the last axis; values unchanged",
    ),
    catalog=lazy("invlin.validate._catalog_layers:zuko"),
    conditional=lazy("invlin.validate._catalog_layers:zuko_conditional"),
    priority=40,
)
