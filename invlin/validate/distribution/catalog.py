"""Curated whole flows (distributions) of each library, as seeded factories with TARGETs.

``invlin validate --library zuko`` validates these after the library's layers (and
``--context-features M`` the conditional ones, whose factories take ``context_features``).
The entries live in :mod:`invlin.validate._catalog_layers` (``FLOWS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from invlin.validate.catalog import Entry, catalog

__all__ = ["FACTORIES", "flow_catalog", "flow_libraries"]


def flow_libraries() -> tuple[str, ...]:
    """The libraries with whole flows in the catalog."""
    from invlin.validate._catalog_layers import FLOWS

    return tuple(FLOWS)


def flow_catalog(library: str, *, conditional: bool = False) -> list[Entry]:
    """The whole flows of ``library`` (conditional ones when ``conditional``), each with a
    TARGET of its own; ``[]`` for a library without any. Raises what
    :func:`~invlin.validate.catalog.catalog` raises for an unknown or missing library."""
    catalog(library)  # an unknown library, or one not installed, is refused as there
    from invlin.validate._catalog_layers import FLOWS

    if library not in FLOWS:
        return []
    kind = "conditional" if conditional else "unconditional"
    return [
        dataclasses.replace(e, target=f"{__name__}:FACTORIES.{kind}.{library}.{e.name}")
        for e in FLOWS[library](conditional)
    ]


class _Library:
    def __init__(self, library: str, conditional: bool) -> None:
        self._library, self._conditional = library, conditional

    def __getattr__(self, name: str) -> Callable[..., object]:
        if name.startswith("_"):
            raise AttributeError(name)
        for entry in flow_catalog(self._library, conditional=self._conditional):
            if entry.name == name:
                return entry.factory
        raise AttributeError(f"the {self._library} flow catalog has no flow {name!r}")


class _Kind:
    def __init__(self, conditional: bool) -> None:
        self._conditional = conditional

    def __getattr__(self, library: str) -> _Library:
        if library.startswith("_"):
            raise AttributeError(library)
        return _Library(library, self._conditional)


class _Factories:
    """``FACTORIES.<unconditional|conditional>.<library>.<name>``: one flow's factory, so that
    a TARGET string can name it."""

    unconditional = _Kind(False)
    conditional = _Kind(True)


#: ``FACTORIES.<kind>.<library>.<entry name>`` is that flow's factory (see ``Entry.target``).
FACTORIES = _Factories()
