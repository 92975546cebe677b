"""Contexts of conditional layers: the factory call, drawn contexts and the bound context.

A factory of a conditional layer takes ``context_features=M`` (M > 0) besides ``features=N``;
its adapter gets :attr:`~invlin.validate.protocol.Adapter.context_features` = M and a
*bound context* (:func:`bind_context`), which every call made without a context uses.

The binding rule. Every check of a run sees one context c ~ N(0, I_M), drawn from the run's
seed alone (:func:`ordinary_context`) and rounded to float32, so that a float32 layer and its
float64 copy see the very same values; the adapter hands it to the layer as a ``(*batch, M)``
tensor, the same c on every row. One context for every row, not one per row: the checks
compare a row computed in different batches — alone and in chunks (batch_shape), the subset
of rows the inverse is asked for (round_trip), the float64 copy's Jacobian batch — so a context
tied to a row's position would change with the layout and fail a correct layer. Forward and
inverse of the same rows therefore always see the same context. Contexts that differ from row
to row, extreme contexts and the broadcast of a single ``(M,)`` context are judged by the
``context`` check (:mod:`invlin.validate.checks.context`), which draws its own with
:func:`draw_contexts`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from invlin.validate.protocol import Adapter

__all__ = [
    "accepts_context",
    "bind_context",
    "call_factory",
    "context_features_value",
    "draw_contexts",
    "given_context",
    "ordinary_context",
]

_STREAM = 0xC0  # separates the context draws from every other stream seeded with the seed


def context_features_value(value: Any, name: str = "context_features") -> int:
    """``value`` if it is an int ≥ 0 (0: unconditional), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def accepts_context(factory: Callable[..., object]) -> bool:
    """Whether ``factory`` can be called with the keyword ``context_features`` (a parameter of
    that name or ``**kwargs``); ``True`` when its signature cannot be read (the call decides)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "context_features" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def call_factory(factory: Callable[..., object], features: int, context_features: int) -> object:
    """``factory(features=N)``, or ``factory(features=N, context_features=M)`` for M > 0."""
    if context_features:
        return factory(features=features, context_features=context_features)
    return factory(features=features)


def draw_contexts(
    context_features: int,
    rows: int | None,
    *,
    seed: int,
    scale: float = 1.0,
    stream: int = 0,
) -> np.ndarray:
    """Seeded contexts ``scale``·g, g ~ N(0, 1): shape ``(rows, M)``, or ``(M,)`` for
    ``rows=None``; float64 values exact in float32 (rounded through float32 after scaling), so
    every dtype's layer and the float64 copy see the same context. ``stream`` separates
    independent draws of one seed."""
    m = context_features_value(context_features)
    rng = np.random.default_rng([int(seed), _STREAM, int(stream), m])
    g = rng.standard_normal(m if rows is None else (int(rows), m))
    return (g * float(scale)).astype(np.float32).astype(np.float64)


def ordinary_context(context_features: int, seed: int) -> np.ndarray:
    """The bound context of a run with ``seed``: N(0, I_M), shape ``(M,)`` (see the module
    docstring for the rule)."""
    return draw_contexts(context_features, None, seed=seed)


def bind_context(adapter: Adapter, context_features: int, seed: int) -> Adapter:
    """Make ``adapter`` conditional on ``context_features`` (M) features with the bound
    :func:`ordinary_context` of ``seed`` (nothing bound for M = 0); returns ``adapter``."""
    m = context_features_value(context_features)
    adapter.context_features = m
    adapter.bound_context = (
        torch.as_tensor(ordinary_context(m, seed), dtype=torch.float64) if m else None
    )
    return adapter


@contextmanager
def given_context(adapter: Adapter, context: torch.Tensor | np.ndarray) -> Iterator[Adapter]:
    """Within the block, calls of ``adapter`` without a context use ``context`` (``(M,)`` for
    every row, or ``(b, M)`` for batches of exactly b rows); the bound context is restored
    after. Lets code that calls ``forward(x)`` (a float64 Jacobian, say) use given contexts."""
    before = adapter.bound_context
    adapter.bound_context = torch.as_tensor(np.asarray(context, dtype=np.float64))
    try:
        yield adapter
    finally:
        adapter.bound_context = before
