"""Plug-in for flowtorch: a ``Bijector`` maps ``y = b.forward(x)`` (latent → data) and gives
``b.log_abs_det_jacobian(x, y)``; its inverse is ``b.inverse(y)``."""

from __future__ import annotations

import torch

from invlin.validate.adapters._common import lookup, sum_event
from invlin.validate.catalog import Entry, at_least, perturb, seeded
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin

__all__ = ["PLUGIN", "FlowtorchAdapter", "catalog", "detect"]


class FlowtorchAdapter(Adapter):
    """A flowtorch ``Bijector`` instantiated for one event shape ``(features,)``.

    ``forward``: ``y = b.forward(x)``, ``ld = b.log_abs_det_jacobian(x, y)`` (log|det ∂y/∂x|);
    ``inverse``: ``x = b.inverse(y)``, ``ld = −b.log_abs_det_jacobian(x, y)``: flowtorch has no
    inverse log|det|, and ``Flow.log_prob`` subtracts the forward one, so the adapter negates it.
    Elementwise bijectors (``domain.event_dim`` 0) give an elementwise log|det|, summed over
    the features axis as for torch transforms. flowtorch returns a ``BijectiveTensor`` that
    remembers its input: the inverse of that very object is the remembered x (the validator's
    round trip passes copies; its cache check passes the object itself). flowtorch 0.8 takes
    no context (``Bijector.forward`` asserts ``context is None``).
    """

    library = "flowtorch"

    def _no_context(self, x: torch.Tensor, context: torch.Tensor | None) -> None:
        if self.context_for(x, context) is not None:
            raise Unsupported("flowtorch 0.8 bijectors take no context")

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._no_context(x, context)
        b = self.layer
        y = b.forward(x)  # type: ignore[attr-defined]
        ld = b.log_abs_det_jacobian(x, y)  # type: ignore[attr-defined]
        return y, sum_event(ld, x, b.domain.event_dim)  # type: ignore[attr-defined]

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._no_context(y, context)
        b = self.layer
        x = b.inverse(y)  # type: ignore[attr-defined]
        ld = b.log_abs_det_jacobian(x, y)  # type: ignore[attr-defined]
        return x, sum_event(-ld, y, b.codomain.event_dim)  # type: ignore[attr-defined]


def detect(layer: object) -> type[Adapter] | None:
    """:class:`FlowtorchAdapter` for an instantiated ``flowtorch.bijectors.Bijector``."""
    cls = lookup("flowtorch.bijectors.base", "Bijector")
    return FlowtorchAdapter if cls is not None and isinstance(layer, cls) else None


def _make(name: str, n: int) -> torch.nn.Module:
    """The bijector ``name`` for event shape (n,), conditioners of width 16."""
    import flowtorch.bijectors as fb
    import flowtorch.parameters as fp

    def dense() -> object:
        return fp.DenseAutoregressive(hidden_dims=(16,))

    if name in ("AffineAutoregressive", "SplineAutoregressive"):
        at_least(n, 2, name)
        lazy = getattr(fb, name)(dense())
    elif name in ("Affine", "Spline"):
        lazy = getattr(fb, name)(fp.Tensor())
    elif name == "Compose":
        at_least(n, 2, name)
        reverse = torch.arange(n - 1, -1, -1)
        lazy = fb.Compose(
            [fb.AffineAutoregressive(dense()), fb.Permute(permutation=reverse), fb.LeakyReLU()]
        )
    else:
        raise ValueError(f"no flowtorch catalog layer {name!r}")
    return perturb(lazy(shape=torch.Size([n])))


def catalog() -> list[Entry]:
    """flowtorch 0.8 bijectors (latent → data in ``forward``)."""
    # flowtorch.bijectors draws from torch's global RNG when first imported (it builds and
    # inverts every bijector once): imported here, before any seeded factory runs, so that
    # the first build in a process equals every later one (and the reproductions' layer)
    import flowtorch.bijectors
    import flowtorch.parameters  # noqa: F401

    notes = {
        "Affine": "elementwise, parameters as tensors (log-scale clipped to [−5, 3])",
        "Spline": "elementwise rational-quadratic spline, parameters as tensors",
        "AffineAutoregressive": "DenseAutoregressive conditioner, hidden width 16",
        "SplineAutoregressive": "DenseAutoregressive conditioner, hidden width 16",
        "Compose": "AffineAutoregressive → reversing Permute → LeakyReLU",
    }
    return [
        Entry(name, seeded(lambda n, name=name: _make(name, n)), note)
        for name, note in notes.items()
    ]


PLUGIN = builtin(
    "flowtorch",
    detect=detect,
    convention=Convention(
        library="flowtorch",
        layer_type="flowtorch.bijectors.Bijector (instantiated: lazy(shape=torch.Size([n])))",
        forward_call="y = b.forward(x); ld = b.log_abs_det_jacobian(x, y)",
        inverse_call="x = b.inverse(y); ld = b.log_abs_det_jacobian(x, y)",
        context="none in 0.8: forward, inverse and log_abs_det_jacobian assert context is None",
        direction="latent → data (Flow.rsample pushes base samples through forward)",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="no inverse value: log_abs_det_jacobian(x, y) is always the forward one "
        "(Flow.log_prob subtracts it)",
        batch="any (*batch, n); elementwise bijectors (event_dim 0) give (*batch, n) or a "
        "broadcastable (n,)",
        adapter="inverse log|det| = −log_abs_det_jacobian(x, y); event_dim 0 log|det| "
        "broadcast and summed over the last axis",
    ),
    catalog=catalog,
    priority=25,
)
