"""Whole flows seen as distributions: one small adapter per library convention.

A :class:`DistributionAdapter` normalises ``log_prob``, sampling and the density returned along
the sampling path over zuko, nflows, normflows, torch/pyro and any object with ``log_prob`` and
``sample``/``rsample``. Shapes: ``x`` is ``(count, event_size)``, a context ``c`` is one vector
``(context_features,)`` shared by every row, ``log_prob`` returns ``(count,)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch.distributions import Distribution

from invlin.validate.adapters._common import move_tensors
from invlin.validate.protocol import Unsupported

__all__ = [
    "DistributionAdapter",
    "GenericDistributionAdapter",
    "NflowsFlowAdapter",
    "NormflowsFlowAdapter",
    "Part",
    "TorchDistributionAdapter",
    "ZukoFlowAdapter",
]


class Part:
    """One inner transform of a flow: ``layer`` (to be wrapped by ``adapt``) and its ``label``
    (``"transforms[2]: MaskedAutoregressiveTransform"``)."""

    __slots__ = ("label", "layer")

    def __init__(self, index: int, layer: object) -> None:
        self.layer = layer
        self.label = f"transforms[{index}]: {type(layer).__name__}"


class DistributionAdapter:
    """A flow (or any density with a sampler) over ``R^event_size``.

    Subclasses implement :meth:`log_prob` and :meth:`sample`; :meth:`sample_and_log_prob`
    raises :class:`Unsupported` unless the library returns a density along its sampling path.
    ``context_features`` is the length of the context vector the flow takes (0: none).
    """

    library: str = "custom"

    def __init__(
        self, dist: object, features: int, *, name: str | None = None, context_features: int = 0
    ) -> None:
        self.dist = dist
        self.features = int(features)
        self.name = name or type(dist).__name__
        declared = getattr(dist, "context_features", None)
        own = declared if isinstance(declared, int) and not isinstance(declared, bool) else 0
        self.context_features = max(int(context_features), own)

    @property
    def event_size(self) -> int:
        """Length of one sample (the flow's ``features``)."""
        return self.features

    # -- the three operations --------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x | context)`` of shape ``(count,)`` for ``x`` of shape ``(count, n)``."""
        raise NotImplementedError

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """``count`` samples, shape ``(count, n)``."""
        raise NotImplementedError

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``(count, n)`` and the density the library computed along the sampling
        path, ``(count,)``; :class:`Unsupported` when the library offers none."""
        raise Unsupported(f"{self.name} returns no density along its sampling path")

    def transforms(self) -> list[Part]:
        """The flow's inner transforms, each to be validated as a layer (may be empty)."""
        return []

    # -- dtype/device ------------------------------------------------------------------------
    @property
    def module(self) -> torch.nn.Module | None:
        """The distribution when it is an ``nn.Module``."""
        return self.dist if isinstance(self.dist, torch.nn.Module) else None

    def parameters(self) -> list[torch.Tensor]:
        """Trainable tensors (empty for a plain torch distribution)."""
        m = self.module
        return [p for p in m.parameters() if p.requires_grad] if m is not None else []

    def to(self, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
        """Move the distribution in place (a module, or the tensors of a plain object)."""
        if self.module is not None:
            self.module.to(dtype=dtype, device=device)
        else:
            move_tensors(self.dist, dtype=dtype, device=device, seen=set())
        return self

    def _rows(self, context: torch.Tensor | None, count: int) -> torch.Tensor | None:
        """The context repeated for ``count`` rows: ``(count, context_features)``."""
        return None if context is None else context.reshape(1, -1).expand(count, -1)


def _parts(layers: Sequence[object]) -> list[Part]:
    return [Part(i, t) for i, t in enumerate(layers)]


class TorchDistributionAdapter(DistributionAdapter):
    """A ``torch.distributions.Distribution`` (``TransformedDistribution``, pyro's, zuko's
    ``NormalizingFlow``); a pyro ``ConditionalTransformedDistribution`` is conditioned by
    ``.condition(c)``. Event shape ``(n,)``; ``rsample`` is preferred over ``sample``."""

    def __init__(self, dist: object, features: int, **kw: Any) -> None:
        super().__init__(dist, features, **kw)
        module = type(dist).__module__ or ""
        self.library = next((lib for lib in ("pyro", "zuko") if module.startswith(lib)), "torch")

    def _at(self, context: torch.Tensor | None) -> Any:
        if context is not None:
            condition = getattr(self.dist, "condition", None)
            if not callable(condition):
                raise Unsupported(f"{self.name} takes no context")
            return condition(context)
        return self.dist

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._at(context).log_prob(x)

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        d = self._at(context)
        draw = d.rsample if getattr(d, "has_rsample", False) else d.sample
        return draw((count,))

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._at(context)
        both = getattr(d, "rsample_and_log_prob", None)
        if not callable(both):
            raise Unsupported(f"{self.name} returns no density along its sampling path")
        return both((count,))

    def transforms(self) -> list[Part]:
        inner = getattr(self.dist, "transforms", None)
        if inner is None:  # zuko NormalizingFlow: one (possibly composed) transform
            t = getattr(self.dist, "transform", None)
            inner = getattr(t, "transforms", [t] if t is not None else [])
        return _parts(list(inner))


class ZukoFlowAdapter(DistributionAdapter):
    """A zuko ``LazyDistribution`` (``Flow``): ``flow(c)`` is the distribution given the
    context (``None`` when unconditional); it offers ``rsample_and_log_prob``. The inner
    transforms are the lazy transforms of ``flow.transform``."""

    library = "zuko"

    def _at(self, context: torch.Tensor | None) -> Distribution:
        return self.dist(context)  # type: ignore[operator]

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._at(self._rows(context, x.shape[0])).log_prob(x)

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._at(context).rsample((count,))

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._at(context).rsample_and_log_prob((count,))

    def transforms(self) -> list[Part]:
        t = getattr(self.dist, "transform", None)
        inner = getattr(t, "transforms", None)
        return _parts(list(inner) if inner is not None else ([t] if t is not None else []))


class NflowsFlowAdapter(DistributionAdapter):
    """An nflows ``Distribution`` (``flows.Flow``): ``log_prob(x, context)`` with one context
    row per input row; ``sample(count, context)`` and ``sample_and_log_prob`` give
    ``(contexts, count, n)`` for a context batch, so one context is passed as ``(1, M)``."""

    library = "nflows"

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.dist.log_prob(x, context=self._rows(context, x.shape[0]))  # type: ignore[attr-defined]

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            return self.dist.sample(count)  # type: ignore[attr-defined]
        return self.dist.sample(count, context=context.reshape(1, -1))[0]  # type: ignore[attr-defined]

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.dist.sample_and_log_prob  # type: ignore[attr-defined]
        if context is None:
            return both(count)
        x, lp = both(count, context=context.reshape(1, -1))
        return x[0], lp[0]

    def transforms(self) -> list[Part]:
        t = getattr(self.dist, "_transform", None)
        inner = getattr(t, "_transforms", None)
        return _parts(list(inner) if inner is not None else ([t] if t is not None else []))


class NormflowsFlowAdapter(DistributionAdapter):
    """A normflows ``NormalizingFlow`` / ``ConditionalNormalizingFlow``: ``sample(count)``
    returns ``(x, log q(x))`` — the density along the sampling path; a conditional flow takes
    one context row per sample."""

    library = "normflows"

    def _ctx(self, context: torch.Tensor | None, count: int) -> dict[str, torch.Tensor]:
        return {} if context is None else {"context": self._rows(context, count)}

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.dist.log_prob(x, **self._ctx(context, x.shape[0]))  # type: ignore[attr-defined]

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dist.sample(count, **self._ctx(context, count))  # type: ignore[attr-defined]

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.sample_and_log_prob(count, context)[0]

    def transforms(self) -> list[Part]:
        return _parts(list(getattr(self.dist, "flows", [])))


class GenericDistributionAdapter(DistributionAdapter):
    """Any object with ``log_prob(x[, context])`` and ``sample``/``rsample``: called as
    ``sample((count,))`` (torch convention) or ``sample(count)`` when its first parameter is
    annotated ``int`` or named ``num_samples``/``n``/``count`` (nflows-like), with
    ``context=`` when given; ``sample_and_log_prob(count[, context])`` or
    ``rsample_and_log_prob((count,))`` when present; inner transforms from ``transforms``."""

    def _kw(self, context: torch.Tensor | None, count: int) -> dict[str, torch.Tensor]:
        return {} if context is None else {"context": self._rows(context, count)}

    def _draw(self, fn: Any, count: int, context: torch.Tensor | None) -> Any:
        kw = {} if context is None else {"context": context}
        try:
            first = next(iter(inspect.signature(fn).parameters.values()), None)
        except (TypeError, ValueError):
            first = None
        by_int = first is not None and (
            first.annotation in (int, "int") or first.name in ("num_samples", "n", "count")
        )
        return fn(count, **kw) if by_int else fn((count,), **kw)

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.dist.log_prob(x, **self._kw(context, x.shape[0]))  # type: ignore[attr-defined]

    def sample(self, count: int, context: torch.Tensor | None = None) -> torch.Tensor:
        fn = getattr(self.dist, "rsample", None) or self.dist.sample  # type: ignore[attr-defined]
        return self._draw(fn, count, context)

    def sample_and_log_prob(
        self, count: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fn = getattr(self.dist, "sample_and_log_prob", None) or getattr(
            self.dist, "rsample_and_log_prob", None
        )
        if not callable(fn):
            raise Unsupported(f"{self.name} returns no density along its sampling path")
        return self._draw(fn, count, context)

    def transforms(self) -> list[Part]:
        inner = getattr(self.dist, "transforms", None)
        return _parts(list(inner)) if isinstance(inner, (list, tuple, torch.nn.ModuleList)) else []
