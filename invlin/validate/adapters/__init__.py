"""Detect a layer's library convention and wrap it in the matching :class:`Adapter`.

Each library's adapter module declares a plug-in (what it detects, its conventions row, its
catalog); :func:`adapt` asks every plug-in of :mod:`invlin.validate.registry` in detection
order. ``SUPPORTED`` lists the recognised conventions in that order.
"""

from __future__ import annotations

from typing import Any

from invlin._validation import positive_int
from invlin.validate.adapters.distributions import DistributionsAdapter
from invlin.validate.adapters.freia import FreiaAdapter
from invlin.validate.adapters.generic import GenericAdapter, InvlinLUAdapter, P4InvLinearAdapter
from invlin.validate.adapters.nflows import NflowsAdapter
from invlin.validate.adapters.normflows import NormflowsAdapter
from invlin.validate.adapters.zuko import ZukoAdapter
from invlin.validate.protocol import Adapter
from invlin.validate.registry import plugins

__all__ = [
    "DistributionsAdapter",
    "FreiaAdapter",
    "GenericAdapter",
    "InvlinLUAdapter",
    "NflowsAdapter",
    "NormflowsAdapter",
    "P4InvLinearAdapter",
    "ZukoAdapter",
    "adapt",
    "supported",
]

_PASSED = "invlin.validate.Adapter (passed through)"


def supported() -> tuple[str, ...]:
    """The conventions :func:`adapt` recognises, in the order it tries them (one per plug-in,
    its conventions row's layer type, after an :class:`Adapter` passed as is)."""
    return (_PASSED, *(f"{p.name}: {p.convention.layer_type}" for p in plugins()))


def __getattr__(name: str) -> Any:
    # SUPPORTED follows the registry, which third-party entry points extend: computed on use.
    if name == "SUPPORTED":
        return supported()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def adapt(
    layer: object, features: int, *, name: str | None = None, context_features: int = 0
) -> Adapter:
    """Wrap ``layer`` (a bijection on ``(*batch, features)`` tensors) in an :class:`Adapter`.

    The first plug-in (:func:`invlin.validate.registry.plugins`, in detection order) whose
    ``detect`` recognises the layer builds the adapter; detection looks a library's classes up
    only when that library is already imported (nothing is imported here). An
    :class:`Adapter` is returned as is. ``context_features`` M > 0 is handed to the adapter
    (a conditional layer). Raises ``TypeError`` naming the type when no convention matches,
    ``ValueError`` for a ``features`` that is not a positive integer, and
    :class:`~invlin.validate.registry.PluginError` for a plug-in that cannot be loaded.
    """
    if isinstance(layer, Adapter):
        return layer
    positive_int(features, "features")
    extra = {"context_features": context_features} if context_features else {}
    for plugin in plugins():
        factory = plugin.detect(layer)
        if factory is not None:
            return factory(layer, features, name=name, **extra)
    kind = f"{type(layer).__module__}.{type(layer).__qualname__}"
    listing = "; ".join(supported())
    raise TypeError(
        f"cannot adapt a {kind}: it follows none of the supported conventions ({listing})"
    )
