"""Detect a layer's library convention and wrap it in the matching :class:`Adapter`."""

from __future__ import annotations

from collections.abc import Callable

from torch.distributions import Transform

from invlin.validate.adapters._common import lookup
from invlin.validate.adapters.distributions import DistributionsAdapter, transform_library
from invlin.validate.adapters.freia import FreiaAdapter
from invlin.validate.adapters.generic import (
    GenericAdapter,
    InvlinLUAdapter,
    P4InvLinearAdapter,
    looks_generic,
)
from invlin.validate.adapters.nflows import NflowsAdapter
from invlin.validate.adapters.normflows import NormflowsAdapter
from invlin.validate.adapters.zuko import ZukoAdapter
from invlin.validate.protocol import Adapter

__all__ = [
    "SUPPORTED",
    "DistributionsAdapter",
    "FreiaAdapter",
    "GenericAdapter",
    "InvlinLUAdapter",
    "NflowsAdapter",
    "NormflowsAdapter",
    "P4InvLinearAdapter",
    "ZukoAdapter",
    "adapt",
]

#: The conventions :func:`adapt` recognises, in the order it tries them.
SUPPORTED: tuple[str, ...] = (
    "invlin.validate.Adapter (passed through)",
    "invlin layers (P4InvLinear, LULinear, LUNet, InvertibleSequential, activations)",
    "nflows.transforms.Transform",
    "FrEIA.modules.InvertibleModule",
    "normflows.flows.Flow",
    "zuko.lazy.LazyTransform / zuko.flows.Flow (called with context None)",
    "torch.distributions.Transform (incl. pyro and zuko transforms)",
    "any object with forward(x) -> (y, ladj) and inverse(y) -> (x, ladj)",
)


def _invlin(layer: object) -> Callable[..., Adapter] | None:
    from invlin.nn import LULinear, P4InvLinear

    if isinstance(layer, P4InvLinear):
        return P4InvLinearAdapter
    if isinstance(layer, LULinear):
        return InvlinLUAdapter
    return None


def _is(layer: object, module: str, name: str) -> bool:
    cls = lookup(module, name)
    return cls is not None and isinstance(layer, cls)


def _nflows(layer: object) -> Callable[..., Adapter] | None:
    return NflowsAdapter if _is(layer, "nflows.transforms.base", "Transform") else None


def _freia(layer: object) -> Callable[..., Adapter] | None:
    return FreiaAdapter if _is(layer, "FrEIA.modules.base", "InvertibleModule") else None


def _normflows(layer: object) -> Callable[..., Adapter] | None:
    return NormflowsAdapter if _is(layer, "normflows.flows.base", "Flow") else None


def _zuko(layer: object) -> Callable[..., Adapter] | None:
    lazy = _is(layer, "zuko.lazy", "LazyTransform") or _is(layer, "zuko.lazy", "Flow")
    plain = isinstance(layer, Transform) and transform_library(layer) == "zuko"
    return ZukoAdapter if lazy or plain else None


def _distributions(layer: object) -> Callable[..., Adapter] | None:
    return DistributionsAdapter if isinstance(layer, Transform) else None


def _generic(layer: object) -> Callable[..., Adapter] | None:
    return GenericAdapter if looks_generic(layer) else None


_DETECTORS: list[Callable[[object], Callable[..., Adapter] | None]] = [
    _invlin,
    _nflows,
    _freia,
    _normflows,
    _zuko,
    _distributions,
    _generic,
]


def adapt(layer: object, features: int, *, name: str | None = None) -> Adapter:
    """Wrap ``layer`` (a bijection on ``(*batch, features)`` tensors) in an :class:`Adapter`.

    The library is recognised by ``isinstance`` against its classes, looked up only when that
    library is already imported (nothing is imported here). An :class:`Adapter` is returned as
    is. Raises ``TypeError`` naming the type when no convention matches, and ``ValueError`` for
    a ``features`` that is not a positive integer.
    """
    if isinstance(layer, Adapter):
        return layer
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive integer, got {features!r}")
    for detect in _DETECTORS:
        factory = detect(layer)
        if factory is not None:
            return factory(layer, features, name=name)
    kind = f"{type(layer).__module__}.{type(layer).__qualname__}"
    listing = "; ".join(SUPPORTED)
    raise TypeError(
        f"cannot adapt a {kind}: it follows none of the supported conventions ({listing})"
    )
