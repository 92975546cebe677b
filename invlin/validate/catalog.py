"""Curated invertible layers of each supported library, as seeded factories for the validator.

The libraries are the adapter plug-ins of :mod:`invlin.validate.registry` that declare a
catalog; ``LIBRARIES`` (computed on use, as third-party entry points extend it) is their
``--library`` names.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from invlin._validation import positive_int
from invlin.validate import registry

__all__ = ["FACTORIES", "Entry", "Factories", "catalog", "libraries"]


def libraries() -> tuple[str, ...]:
    """The ``--library`` names: every declared plug-in, in listing order (nothing imported;
    :func:`catalog` says when one has no catalog)."""
    return registry.names()


def __getattr__(name: str) -> Any:
    if name == "LIBRARIES":
        return libraries()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HIDDEN = 16  # hidden width of every conditioner network: small, so checks stay fast
_NOISE = 0.1  # standard deviation added to every trainable parameter (see _perturb)


@dataclass(frozen=True)
class Entry:
    """One catalog layer: ``factory(features=n, seed=0)`` returns a fresh, seeded layer.

    ``target`` is an importable ``module:attribute`` string for the same factory (set by
    :func:`catalog`), usable as ``invlin validate TARGET`` and in reproduction scripts.
    """

    name: str
    factory: Callable[..., object]
    note: str = ""
    target: str = ""


def catalog(library: str) -> list[Entry]:
    """The curated layers of ``library`` (one of :func:`libraries`), from its plug-in.

    Every factory takes ``features`` (int, ≥ 2 for coupling and autoregressive layers) and an
    optional ``seed`` (default 0), draws its parameters under that seed without disturbing the
    global RNG, and moves them away from the identity many layers start at: every trainable
    parameter gets N(0, 0.1²) noise added (data-dependent initialisations are marked done
    first). Conditional layers are built unconditional (no context).

    Raises ValueError for an unknown library or one without a catalog, ModuleNotFoundError
    naming the pip package when the library is not installed, and
    :class:`~invlin.validate.registry.PluginError` for a plug-in that cannot be loaded.
    """
    if library not in registry.names():
        raise ValueError(f"library must be one of {libraries()}, got {library!r}")
    plugin = registry.plugin(library)
    if plugin.catalog is None:
        raise ValueError(f"the {library} plug-in declares no catalog")
    try:
        importlib.import_module(plugin.module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the {library} catalog needs the {plugin.package!r} package: "
            f"pip install {plugin.package}",
            name=plugin.module,
        ) from exc
    return [
        dataclasses.replace(e, target=f"{__name__}:FACTORIES.{library}.{e.name}")
        for e in plugin.catalog()
    ]


class Factories:
    """Attribute access to the factories of a list of catalogs, so a TARGET string can name
    one: ``FACTORIES.<library>.<entry name>`` (e.g. ``invlin.validate.catalog:
    FACTORIES.nflows.LULinear``). ``lookup(library)`` gives that library's entries; ``what``
    names the list in errors ("catalog", "conditional catalog")."""

    def __init__(self, lookup: Callable[[str], list[Entry]], what: str) -> None:
        self._lookup = lookup
        self._what = what

    def __getattr__(self, library: str) -> _Library:
        if library.startswith("_") or library not in registry.names():
            raise AttributeError(f"no {self._what} for {library!r}; libraries are {libraries()}")
        return _Library(self, library)


@dataclass(frozen=True)
class _Library:
    """``FACTORIES.<library>``: its entries' factories as attributes, looked up by name."""

    factories: Factories
    library: str

    def __getattr__(self, name: str) -> Callable[..., object]:
        if name.startswith("_"):
            raise AttributeError(name)
        for entry in self.factories._lookup(self.library):
            if entry.name == name:
                return entry.factory
        what = self.factories._what
        raise AttributeError(f"the {self.library} {what} has no layer {name!r}")


#: ``FACTORIES.<library>.<entry name>`` is that entry's factory (see :attr:`Entry.target`).
FACTORIES = Factories(catalog, "catalog")


# -- helpers used by the per-library builders ------------------------------------------------
def seeded(build: Callable[[int], object]) -> Callable[..., object]:
    """Wrap ``build(features)`` into a factory ``(features=, seed=0)`` run under its own seed."""

    @functools.wraps(build)
    def factory(features: int, *, seed: int = 0) -> object:
        positive_int(features, "features")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(features)

    return factory


def at_least(n: int, minimum: int, name: str) -> None:
    """ValueError naming the layer when ``features`` is below what it needs."""
    if n < minimum:
        raise ValueError(f"{name} needs features >= {minimum}, got {n}")


@torch.no_grad()
def perturb(module: torch.nn.Module, scale: float = _NOISE) -> torch.nn.Module:
    """Add N(0, scale²) noise to every trainable floating parameter of ``module`` (in place)."""
    for p in module.parameters():
        if p.requires_grad and p.is_floating_point():
            p.add_(torch.randn_like(p) * scale)
    return module


def mlp(n_in: int, n_out: int) -> torch.nn.Module:
    """A one-hidden-layer conditioner network n_in → 16 → n_out (tanh)."""
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, _HIDDEN), torch.nn.Tanh(), torch.nn.Linear(_HIDDEN, n_out)
    )


def well_conditioned(n: int) -> torch.Tensor:
    """A random (n, n) matrix I + 0.3·G/√n (κ of order one)."""
    return torch.eye(n) + 0.3 * torch.randn(n, n) / n**0.5
