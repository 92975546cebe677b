"""Recognise a factory's result as a whole flow (a distribution) and reach its inner parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch.distributions import Distribution

from invlin.validate.adapters._common import lookup
from invlin.validate.conditioning import call_factory
from invlin.validate.distribution.adapter import (
    DistributionAdapter,
    GenericDistributionAdapter,
    NflowsFlowAdapter,
    NormflowsFlowAdapter,
    TorchDistributionAdapter,
    ZukoFlowAdapter,
)
from invlin.validate.protocol import Adapter

__all__ = ["SUPPORTED", "FlowPart", "as_distribution", "part_factory"]

#: What :func:`as_distribution` recognises, in the order it tries.
SUPPORTED: tuple[str, ...] = (
    "zuko.lazy.LazyDistribution (zuko flows; called with the context or None)",
    "nflows.distributions.Distribution (nflows.flows.Flow)",
    "normflows NormalizingFlow / ConditionalNormalizingFlow",
    "torch.distributions.Distribution (TransformedDistribution, pyro, zuko NormalizingFlow)",
    "pyro ConditionalDistribution (ConditionalTransformedDistribution; .condition(c))",
    "any object with log_prob and sample or rsample",
)


def _is(obj: object, module: str, name: str) -> bool:
    cls = lookup(module, name)
    return cls is not None and isinstance(obj, cls)


def _kind(obj: object) -> type[DistributionAdapter] | None:
    if isinstance(obj, Adapter):
        return None
    if _is(obj, "zuko.lazy", "LazyDistribution"):
        return ZukoFlowAdapter
    if _is(obj, "nflows.distributions.base", "Distribution"):
        return NflowsFlowAdapter
    if _is(obj, "normflows.core", "NormalizingFlow") or _is(
        obj, "normflows.core", "ConditionalNormalizingFlow"
    ):
        return NormflowsFlowAdapter
    if isinstance(obj, Distribution) or _is(
        obj, "pyro.distributions.conditional", "ConditionalDistribution"
    ):
        return TorchDistributionAdapter
    has_sampler = callable(getattr(obj, "sample", None)) or callable(getattr(obj, "rsample", None))
    if callable(getattr(obj, "log_prob", None)) and has_sampler:
        return GenericDistributionAdapter
    return None


def as_distribution(
    obj: object, features: int, *, name: str | None = None, context_features: int = 0
) -> DistributionAdapter | None:
    """``obj`` wrapped in the matching :class:`DistributionAdapter`, or ``None`` when it is
    not a distribution (then it is a layer, for :func:`~invlin.validate.adapters.adapt`).
    Library classes are looked up only when their module is already imported."""
    if isinstance(obj, DistributionAdapter):
        return obj
    kind = _kind(obj)
    return (
        None if kind is None else kind(obj, features, name=name, context_features=context_features)
    )


class FlowPart(NamedTuple):
    """What a :func:`part_factory` builds: transform ``index`` of the flow ``flow`` makes."""

    flow: Callable[..., object]
    index: int


def part_factory(factory: Callable[..., object], index: int) -> Callable[..., object]:
    """A factory for the ``index``-th inner transform of the flow ``factory`` builds: it
    builds the flow (with the caller's seed, so with the same parameters) and returns that
    transform. Raises ``ValueError`` when the result is not a flow or has no such part. Its
    ``flow_part`` attribute (a :class:`FlowPart`) says which, for reproduction scripts."""

    def part(*, features: int, context_features: int = 0) -> object:
        flow = as_distribution(call_factory(factory, features, context_features), features)
        if flow is None:
            raise ValueError("the factory no longer returns a distribution")
        parts = flow.transforms()
        if not 0 <= index < len(parts):
            raise ValueError(f"the flow has {len(parts)} inner transforms, not transforms[{index}]")
        return parts[index].layer

    part.__qualname__ = f"{getattr(factory, '__qualname__', 'factory')}.transforms[{index}]"
    part.flow_part = FlowPart(factory, index)  # type: ignore[attr-defined]
    return part
