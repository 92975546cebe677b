"""The one table of each library's calling and log|det| conventions and how adapters map them."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["CONVENTIONS", "Convention", "convention", "conventions_markdown"]


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
    direction: str  # what the library's forward maps, in flow terms
    forward_logdet: str
    inverse_logdet: str
    batch: str
    adapter: str  # exactly what the adapter does to the library's answers


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        library="invlin",
        layer_type="invlin.nn layers; any object with forward/inverse returning (tensor, ladj)",
        forward_call="y, ld = layer(x)",
        inverse_call="x, ld = layer.inverse(y)",
        direction="data → latent (LU-Net); linear layers have no preferred direction",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (= −forward)",
        batch="any (*batch, n); log|det| of shape batch",
        adapter="none: this is the validator's convention",
    ),
    Convention(
        library="nflows",
        layer_type="nflows.transforms.Transform",
        forward_call="y, ld = t(x, context=None)",
        inverse_call="x, ld = t.inverse(y, context=None)",
        direction="data → noise",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (nflows negates)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,)",
        adapter="(*batch, n) flattened to (B, n) and reshaped back; log|det| reshaped only if "
        "it is exactly (B,); values unchanged",
    ),
    Convention(
        library="zuko",
        layer_type="zuko.lazy.LazyTransform, zuko.flows.Flow (its .transform), zuko Transform",
        forward_call="t = lazy(None); y, ld = t.call_and_ladj(x)",
        inverse_call="x, ld = t.inv.call_and_ladj(y)",
        direction="data → latent",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (torch's inverse transform negates)",
        batch="any (*batch, n); elementwise transforms (event_dim 0) give (*batch, n)",
        adapter="lazy layer rebuilt with context None at every call; event_dim 0 log|det| "
        "summed over the last axis; values unchanged",
    ),
    Convention(
        library="normflows",
        layer_type="normflows.flows.Flow",
        forward_call="y, ld = flow(x)",
        inverse_call="x, ld = flow.inverse(y)",
        direction="latent → data (sampling); inverse is the log_prob direction",
        forward_logdet="+log|det ∂y/∂x| (sample() subtracts it from log q)",
        inverse_logdet="+log|det ∂x/∂y| (log_prob() adds it)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,) — some layers return ()",
        adapter="(*batch, n) flattened to (B, n); no negation (normflows' forward is the "
        "adapter's forward); a () log|det| is passed on for the shape check",
    ),
    Convention(
        library="freia",
        layer_type="FrEIA.modules.InvertibleModule built with dims_in=[(n,)]",
        forward_call="(y,), ld = m([x], rev=False, jac=True)",
        inverse_call="(x,), ld = m([y], rev=True, jac=True)",
        direction="data → latent",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="−log|det ∂y/∂x| = +log|det ∂x/∂y| (documented in InvertibleModule)",
        batch="exactly one leading batch dim: (B, n); log|det| (B,) — fixed layers may return "
        "a Python float",
        adapter="one-element output list unpacked; (*batch, n) flattened to (B, n); a Python "
        "number becomes a 0-d tensor (shape reported, not broadcast); values unchanged",
    ),
    Convention(
        library="pyro / torch",
        layer_type="torch.distributions.Transform (pyro TransformModule included)",
        forward_call="y = t(x); ld = t.log_abs_det_jacobian(x, y)",
        inverse_call="x = t.inv(y); ld = t.inv.log_abs_det_jacobian(y, x)",
        direction="latent → data (TransformedDistribution samples through t)",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (torch's inverse transform negates)",
        batch="any (*batch, n); elementwise transforms (event_dim 0) give (*batch, n)",
        adapter="event_dim 0 log|det| summed over the last axis; values unchanged; with "
        "cache_size=1, t.inv(y) on the very tensor t returned gives the cached x "
        "(pass a clone to force a real inverse)",
    ),
)


def convention(library: str) -> Convention:
    """The row for ``library`` ("pyro" and "torch" share one row)."""
    key = "pyro / torch" if library in ("pyro", "torch") else library
    for row in CONVENTIONS:
        if row.library == key:
            return row
    names = sorted({c.library for c in CONVENTIONS} | {"pyro", "torch"})
    raise ValueError(f"library must be one of {names}, got {library!r}")


_HEADERS = {
    "library": "library",
    "layer_type": "layer type",
    "forward_call": "forward call",
    "inverse_call": "inverse call",
    "direction": "forward maps",
    "forward_logdet": "forward log|det|",
    "inverse_logdet": "inverse log|det|",
    "batch": "batch shape",
    "adapter": "what invlin's adapter does",
}


def conventions_markdown() -> str:
    """:data:`CONVENTIONS` as a Markdown table (one row per library)."""
    names = [f.name for f in fields(Convention)]

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(_HEADERS[n]) for n in names) + " |", "|" + "---|" * len(names)]
    for row in CONVENTIONS:
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
