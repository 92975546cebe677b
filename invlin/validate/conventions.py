"""The table of each library's calling, context and log|det| conventions and how adapters map
them: one :class:`Convention` row per adapter plug-in, declared by the plug-in itself
(:mod:`invlin.validate.registry`); ``CONVENTIONS`` is the same tuple as :func:`conventions`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Convention", "convention", "conventions", "conventions_markdown"]


@dataclass(frozen=True)
class Convention:
    """How one library calls a layer and what its log|det| means.

    The validator's own convention (:class:`invlin.validate.protocol.Adapter`): ``forward(x)``
    is the library's forward and returns ``log|det ∂y/∂x|`` of shape ``batch``; ``inverse(y)``
    returns ``log|det ∂x/∂y|`` (the negated value at corresponding points).
    """

    library: str
    layer_type: str
    forward_call: str
    inverse_call: str
    context: str  # how a conditional layer receives its context (or that it has none)
    direction: str  # what the library's forward maps, in flow terms
    forward_logdet: str
    inverse_logdet: str
    batch: str
    adapter: str  # exactly what the adapter does to the library's answers


def __getattr__(name: str) -> Any:
    # CONVENTIONS is computed on first use: the rows live in the plug-ins (one per library).
    if name == "CONVENTIONS":
        return conventions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def conventions() -> tuple[Convention, ...]:
    """Every plug-in's row, in listing order (:func:`invlin.validate.registry.names`)."""
    from invlin.validate.registry import names, plugins

    order = {name: i for i, name in enumerate(names())}
    return tuple(p.convention for p in sorted(plugins(), key=lambda p: order[p.name]))


def convention(library: str) -> Convention:
    """The row of the plug-in named ``library`` or aliased so ("torch" is pyro's row).

    Raises ValueError listing the known names.
    """
    from invlin.validate.registry import plugin

    return plugin(library).convention


_HEADERS = {
    "library": "library",
    "layer_type": "layer type",
    "forward_call": "forward call",
    "inverse_call": "inverse call",
    "context": "context",
    "direction": "forward maps",
    "forward_logdet": "forward log|det|",
    "inverse_logdet": "inverse log|det|",
    "batch": "batch shape",
    "adapter": "what invlin's adapter does",
}


def conventions_markdown() -> str:
    """:func:`conventions` as a Markdown table (one row per library)."""
    names = [f.name for f in fields(Convention)]

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(_HEADERS[n]) for n in names) + " |", "|" + "---|" * len(names)]
    for row in conventions():
        values = [getattr(row, n) for n in names]
        code = {"forward_call", "inverse_call"}
        lines.append(
            "| "
            + " | ".join(
                f"`{v}`" if n in code else cell(v) for n, v in zip(names, values, strict=True)
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
