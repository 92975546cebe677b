"""P4InvLinear's fused autograd nodes: every route (plain, eager, functorch) gives the values and
gradients of the dense formulas, double backward included."""

from __future__ import annotations

import pytest
import torch

from invlin.nn import P4InvLinear, p4_ops
from invlin.testing import assert_forward, assert_logabsdet, kappa1


def _layer(n=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    layer = P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype)
    with torch.no_grad():
        layer.u.copy_(0.3 * torch.randn(n, generator=g, dtype=dtype))
        layer.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
    return layer


class _Call(torch.nn.Module):
    """Exposes forward, inverse and penalty of a layer to torch.func.functional_call."""

    def __init__(self, layer, method):
        super().__init__()
        self.l, self.method = layer, method

    def forward(self, t):
        if self.method == "penalty":  # with c pushed below the bound, so P is not flat
            return self.l.penalty() * t.sum()
        return getattr(self.l, self.method)(t)


def _fn(layer, method):
    call = _Call(layer, method)

    def f(t, u, v, b):
        return torch.func.functional_call(call, {"l.u": u, "l.v": v, "l.bias": b}, (t,))

    return f


def _inputs(layer, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(batch, layer.features, generator=g, dtype=layer.u.dtype)
    return [p.detach().clone().requires_grad_() for p in (t, layer.u, layer.v, layer.bias)]


def _low_c(layer):
    """u, v with c = 1 + vᵀA⁻¹u = e^-3, below the penalty's lower bound −2."""
    with torch.no_grad():
        a = layer.weight_inverse @ layer.u.double()
        scale = (torch.exp(torch.tensor(-3.0, dtype=torch.float64)) - 1) / (layer.v.double() @ a)
        layer.u.mul_(scale.to(layer.u.dtype))
    assert float(torch.log(torch.abs(layer.factor().detach()))) == pytest.approx(-3.0, abs=1e-9)


@pytest.mark.parametrize("method", ["forward", "inverse", "penalty"])
@pytest.mark.parametrize("batch", [2, 9])  # fewer rows than n = 4 and more
def test_gradcheck_and_double_backward_of_the_fused_nodes(method, batch, scalar_form):
    layer = _layer(seed=batch)
    if method == "penalty":
        _low_c(layer)
    f = _fn(layer, method)
    args = _inputs(layer, batch)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def _dense(layer, x, u, v, b):
    """Forward and inverse through the explicit matrix M = A + u vᵀ (plain autograd)."""
    m = layer.weight + torch.outer(u, v)
    y = x @ m.T + b
    ld = torch.linalg.slogdet(m)[1].expand(x.shape[:-1])
    xi = torch.linalg.solve(m, (x - b).mT).mT
    return m, (y, ld), (xi, -ld)


@pytest.mark.parametrize("method", ["forward", "inverse"])
def test_values_and_gradients_match_the_dense_formulas(method, scalar_form):
    layer = _layer(5, seed=3)
    x, u, v, b = _inputs(layer, 7)
    out = _fn(layer, method)(x, u, v, b)
    m, fwd, inv = _dense(layer, x, u, v, b)
    ref = fwd if method == "forward" else inv
    kappa = kappa1(m.detach())
    assert_forward(out=out[0].detach(), expected=ref[0].detach(), kappa=kappa, dtype="float64")
    assert_logabsdet(
        out=out[1].detach(), expected=ref[1].detach(), n=5, kappa=kappa, dtype="float64"
    )
    w = torch.linspace(-1, 1, 35, dtype=torch.float64).reshape(7, 5)
    loss = (out[0] * w).sum() + 0.7 * out[1].sum()
    dense = (ref[0] * w).sum() + 0.7 * ref[1].sum()
    got = torch.autograd.grad(loss, (x, u, v, b))
    want = torch.autograd.grad(dense, (x, u, v, b))
    for g, e in zip(got, want, strict=True):
        # a gradient is a product of the (κ-conditioned) map's Jacobians: judge it on κ²
        assert_forward(out=g, expected=e, kappa=kappa**2, dtype="float64")


@pytest.mark.parametrize("method", ["forward", "inverse", "penalty"])
def test_plain_eager_and_functorch_routes_agree(method, scalar_form):
    layer = _layer(6, seed=4)
    if method == "penalty":
        _low_c(layer)
    f = _fn(layer, method)
    x, u, v, b = _inputs(layer, 5)

    def scalar(*args):
        out = f(*args)
        return out.sum() if method == "penalty" else out[0].square().sum() + out[1].sum()

    with torch.no_grad():
        plain = f(x, u, v, b)
    eager = f(x, u, v, b)
    for p, e in zip(
        plain if method != "penalty" else [plain],
        eager if method != "penalty" else [eager],
        strict=True,
    ):
        assert torch.equal(p, e.detach())  # the same operations in the same order
    used = (0, 1, 2) if method == "penalty" else (0, 1, 2, 3)  # the penalty ignores b
    grads = torch.autograd.grad(scalar(x, u, v, b), [(x, u, v, b)[i] for i in used])
    func = torch.func.grad(scalar, argnums=used)(x.detach(), u.detach(), v.detach(), b.detach())
    kappa = kappa1((layer.weight + torch.outer(layer.u, layer.v)).detach())
    for g, e in zip(func, grads, strict=True):
        assert_forward(out=g, expected=e, kappa=kappa**2, dtype="float64")


def test_vmap_over_the_batch_uses_the_functorch_form():
    layer = _layer(4, seed=5)
    x = torch.randn(6, 4, dtype=torch.float64)
    with torch.no_grad():
        y, ld = layer(x)
        xi, ldi = layer.inverse(y)
        vy, vld = torch.func.vmap(layer)(x)
        vxi, vldi = torch.func.vmap(layer.inverse)(y)
    kappa = kappa1((layer.weight + torch.outer(layer.u, layer.v)).detach())
    assert_forward(out=vy, expected=y, kappa=kappa, dtype="float64")
    assert_forward(out=vxi, expected=xi, kappa=kappa, dtype="float64")
    assert torch.equal(vld, ld) and torch.equal(vldi, ldi)


@pytest.mark.parametrize("xdtype", [torch.float32, torch.float64])
def test_gradients_come_back_in_the_parameter_dtype(xdtype, scalar_form):
    layer = _layer(4, seed=6, dtype=torch.float32)
    x = torch.randn(3, 4, dtype=xdtype)
    y, ld = layer(x)
    assert y.dtype == xdtype and ld.dtype == xdtype
    xi, ldi = layer.inverse(y.detach())
    (y.sum() + ld.sum() + xi.sum() + ldi.sum() + layer.penalty()).backward()
    for p in (layer.u, layer.v, layer.bias):
        assert p.grad is not None and p.grad.dtype == torch.float32
    # log|det| comes from the float32 parameters widened to the float64 state, whatever x is.
    expected = (layer.logabsdet + torch.log(torch.abs(layer.factor()))).to(xdtype)
    assert torch.equal(ld.detach(), expected.detach().expand(3))


def test_log_abs_factor_gradcheck_and_double_backward():
    layer = _layer(5, seed=7)
    x = layer.weight_inverse
    u, v = (layer.u.detach().clone().requires_grad_(), layer.v.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda u, v: p4_ops.log_abs_factor(u, v, x), (u, v))
    assert torch.autograd.gradgradcheck(lambda u, v: p4_ops.log_abs_factor(u, v, x), (u, v))


def test_unused_outputs_need_no_gradient(scalar_form):
    layer = _layer(4, seed=8)
    x = torch.randn(3, 4, dtype=torch.float64)
    y, ld = layer(x)
    y.sum().backward()  # the log|det| output gets no gradient: no error, only y's share
    gu_y = layer.u.grad.clone()
    layer.zero_grad()
    y, ld = layer(x)
    ld.sum().backward()
    gu_ld = layer.u.grad.clone()
    assert layer.bias.grad is None or torch.count_nonzero(layer.bias.grad) == 0
    layer.zero_grad()
    y, ld = layer(x)
    (y.sum() + ld.sum()).backward()
    kappa = kappa1((layer.weight + torch.outer(layer.u, layer.v)).detach())
    assert_forward(out=layer.u.grad, expected=gu_y + gu_ld, kappa=kappa, dtype="float64")
