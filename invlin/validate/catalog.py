"""Curated invertible layers of each supported library, as seeded factories for the validator."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["FACTORIES", "LIBRARIES", "Entry", "catalog"]

#: Library names accepted by :func:`catalog` (and by ``invlin validate --library``).
LIBRARIES: tuple[str, ...] = ("invlin", "nflows", "zuko", "normflows", "freia", "pyro")

#: library → (module to import, pip package that provides it)
_PACKAGES: dict[str, tuple[str, str]] = {
    "invlin": ("invlin", "invlin"),
    "nflows": ("nflows", "nflows"),
    "zuko": ("zuko", "zuko"),
    "normflows": ("normflows", "normflows"),
    "freia": ("FrEIA", "FrEIA"),
    "pyro": ("pyro", "pyro-ppl"),
}

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
    """The curated layers of ``library`` (one of :data:`LIBRARIES`).

    Every factory takes ``features`` (int, ≥ 2 for coupling and autoregressive layers) and an
    optional ``seed`` (default 0), draws its parameters under that seed without disturbing the
    global RNG, and moves them away from the identity many layers start at: every trainable
    parameter gets N(0, 0.1²) noise added (data-dependent initialisations are marked done
    first). Conditional layers are built unconditional (no context).

    Raises ValueError for an unknown library and ModuleNotFoundError naming the pip package
    when the library is not installed.
    """
    if library not in _PACKAGES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    module, package = _PACKAGES[library]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the {library} catalog needs the {package!r} package: pip install {package}",
            name=module,
        ) from exc
    from invlin.validate import _catalog_layers as layers

    return [
        dataclasses.replace(e, target=f"{__name__}:FACTORIES.{library}.{e.name}")
        for e in getattr(layers, library)()
    ]


class _LibraryFactories:
    """``FACTORIES.<library>.<name>``: the factory of one catalog entry, looked up by name."""

    def __init__(self, library: str) -> None:
        self._library = library

    def __getattr__(self, name: str) -> Callable[..., object]:
        if name.startswith("_"):
            raise AttributeError(name)
        for entry in catalog(self._library):
            if entry.name == name:
                return entry.factory
        raise AttributeError(f"the {self._library} catalog has no layer {name!r}")


class _Factories:
    """Attribute access to every catalog factory, so a TARGET string can name one:
    ``invlin.validate.catalog:FACTORIES.nflows.LULinear``."""

    def __getattr__(self, library: str) -> _LibraryFactories:
        if library not in LIBRARIES:
            raise AttributeError(f"no catalog for {library!r}; libraries are {LIBRARIES}")
        return _LibraryFactories(library)


#: ``FACTORIES.<library>.<entry name>`` is that entry's factory (see :attr:`Entry.target`).
FACTORIES = _Factories()


# -- helpers used by the per-library builders ------------------------------------------------
def seeded(build: Callable[[int], object]) -> Callable[..., object]:
    """Wrap ``build(features)`` into a factory ``(features=, seed=0)`` run under its own seed."""

    @functools.wraps(build)
    def factory(features: int, *, seed: int = 0) -> object:
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive integer, got {features!r}")
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
