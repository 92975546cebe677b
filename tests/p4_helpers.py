"""Shared helpers of the P4InvLinear tests (tests/test_nn_p4_*.py)."""

from __future__ import annotations

import pytest
import torch

from invlin.nn import P4InvLinear

__all__ = [
    "BATCHES",
    "Call",
    "call_inputs",
    "explicit_matrix",
    "functional",
    "make_layer",
    "operands",
    "push_c_low",
    "same_state",
    "tracked_state",
]

# Fewer rows than n (the rank-one term applied to the output) and more (folded into the matrix).
BATCHES = [3, 12]


def make_layer(n=6, seed=0, dtype=torch.float64, **kw):
    """An orthogonal-init layer with a nonzero perturbation u and bias."""
    g = torch.Generator().manual_seed(seed)
    layer = P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype, **kw)
    with torch.no_grad():
        layer.u.copy_(0.3 * torch.randn(n, generator=g, dtype=dtype))
        layer.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
    return layer


def explicit_matrix(layer):
    """A + u vᵀ as a float64 NumPy array."""
    return (layer.weight + torch.outer(layer.u.double(), layer.v.double())).detach().numpy()


def tracked_state(layer):
    """Copies of the tracked buffers (A, X, log|det A|, sign)."""
    return tuple(
        getattr(layer, k).detach().clone()
        for k in ("weight", "weight_inverse", "logabsdet", "sign")
    )


def same_state(s1, s2):
    """Whether two :func:`tracked_state` results are equal bit for bit, dtypes included."""
    return all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(s1, s2, strict=True))


def operands(n=5, batch=3, seed=0):
    """(A, u, v, b, x) in float64 for the bare operations, A well conditioned."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q + 0.1 * torch.randn(n, n, generator=g, dtype=torch.float64)
    u, v, b = (0.3 * torch.randn(n, generator=g, dtype=torch.float64) for _ in range(3))
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return a, u, v, b, x


class Call(torch.nn.Module):
    """Exposes forward, inverse and penalty of a layer to torch.func.functional_call."""

    def __init__(self, layer, method):
        super().__init__()
        self.l, self.method = layer, method

    def forward(self, t):
        if self.method == "penalty":  # with c pushed below the bound, so P is not flat
            return self.l.penalty() * t.sum()
        return getattr(self.l, self.method)(t)


def functional(layer, method):
    """``method`` of ``layer`` as a function of (input, u, v, b)."""
    call = Call(layer, method)

    def f(t, u, v, b):
        return torch.func.functional_call(call, {"l.u": u, "l.v": v, "l.bias": b}, (t,))

    return f


def call_inputs(layer, batch=3, seed=1):
    """(input, u, v, b) as fresh leaves requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(batch, layer.features, generator=g, dtype=layer.u.dtype)
    return [p.detach().clone().requires_grad_() for p in (t, layer.u, layer.v, layer.bias)]


def push_c_low(layer):
    """Scale u so that c = 1 + vᵀA⁻¹u = e^-3, below the penalty's lower bound −2."""
    with torch.no_grad():
        xu = layer.weight_inverse @ layer.u.double()
        scale = (torch.exp(torch.tensor(-3.0, dtype=torch.float64)) - 1) / (layer.v.double() @ xu)
        layer.u.mul_(scale.to(layer.u.dtype))
    assert float(torch.log(torch.abs(layer.factor().detach()))) == pytest.approx(-3.0, abs=1e-9)
