"""Curated conditional layers (``context_features`` M > 0) of each library, as seeded factories.

``invlin validate --library sbi --context-features 3`` validates these instead of the
unconditional catalog (:func:`invlin.validate.catalog.catalog`). Every factory is called as
``factory(features=N, context_features=M, seed=0)``. The one list of them is the adapter
plug-ins' ``conditional`` field (:class:`invlin.validate.registry.AdapterPlugin`): a library has
a conditional catalog exactly when its plug-in declares one, third-party plug-ins included.
"""

from __future__ import annotations

import dataclasses

from invlin.validate import registry
from invlin.validate.catalog import Entry, Factories, catalog

__all__ = ["FACTORIES", "conditional_catalog", "conditional_libraries"]


def conditional_libraries() -> tuple[str, ...]:
    """The ``--library`` names whose plug-in declares conditional layers, in listing order."""
    with_conditional = {p.name for p in registry.plugins() if p.conditional is not None}
    return tuple(name for name in registry.names() if name in with_conditional)


def conditional_catalog(library: str) -> list[Entry]:
    """The conditional layers of ``library``, each with a TARGET string of its own.

    Raises what :func:`~invlin.validate.catalog.catalog` raises for an unknown or missing
    library, and ValueError naming the libraries that have some when ``library`` has none.
    """
    catalog(library)  # an unknown library, or one not installed, is refused as there
    build = registry.plugin(library).conditional
    if build is None:
        raise ValueError(
            f"the {library} catalog has no conditional layers (for context_features > 0); "
            f"libraries that have some: {', '.join(conditional_libraries())}"
        )
    return [
        dataclasses.replace(e, target=f"{__name__}:FACTORIES.{library}.{e.name}") for e in build()
    ]


#: ``FACTORIES.<library>.<entry name>`` is that conditional entry's factory (its TARGET).
FACTORIES = Factories(conditional_catalog, "conditional catalog")
