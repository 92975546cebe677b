"""P4InvLinear forward and inverse: values and gradients against the dense formulas, on every
route (plain, one autograd node, functorch/compile form), shape and dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from p4_helpers import (
    BATCHES,
    call_inputs,
    explicit_matrix,
    functional,
    make_layer,
    operands,
    push_c_low,
)

from invlin.nn import P4InvLinear
from invlin.nn.p4_ops import perturbed_linear, sherman_morrison_linear
from invlin.testing import (
    assert_forward,
    assert_logabsdet,
    kappa1,
)


def test_forward_inverse_logdet_match_explicit_perturbed_matrix(scalar_form):
    layer = make_layer()
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    y, ld = layer(x)
    m = explicit_matrix(layer)
    kappa = kappa1(m)
    expected = x.numpy() @ m.T + layer.bias.detach().numpy()
    assert y.shape == x.shape and ld.shape == (3, 4)
    assert_forward(out=y.detach(), expected=expected, kappa=kappa, dtype="float64")
    _sign, logdet = np.linalg.slogdet(m)
    assert_logabsdet(out=ld.detach(), expected=logdet, n=6, kappa=kappa, dtype="float64")
    xr, ldi = layer.inverse(y)
    assert_forward(out=xr.detach(), expected=x, kappa=kappa, dtype="float64")
    assert torch.equal(ldi, -ld)


def test_gradcheck_u_v_bias_forward_and_inverse(scalar_form):
    layer = make_layer(4, seed=2)
    x = torch.randn(3, 4, dtype=torch.float64)
    params = tuple(p.detach().clone().requires_grad_() for p in (layer.u, layer.v, layer.bias))

    def call(method):
        def f(u, v, b):
            return (
                torch.func.functional_call(
                    layer, {"u": u, "v": v, "bias": b}, (x,), {} if method == "forward" else None
                )
                if method == "forward"
                else _inverse(u, v, b)
            )

        return f

    def _inverse(u, v, b):
        return torch.func.functional_call(
            _InverseCall(layer), {"l.u": u, "l.v": v, "l.bias": b}, (x,)
        )

    assert torch.autograd.gradcheck(call("forward"), params)
    assert torch.autograd.gradcheck(call("inverse"), params)


class _InverseCall(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.l = layer

    def forward(self, y):
        return self.l.inverse(y)


def test_train_and_eval_agree(scalar_form):
    layer = make_layer(5, seed=4)
    x = torch.randn(4, 5, dtype=torch.float64)
    layer.train()
    y_train, ld_train = layer(x)
    layer.eval()
    y_eval, ld_eval = layer(x)
    assert torch.equal(y_train, y_eval) and torch.equal(ld_train, ld_eval)


def test_sign_and_init_options():
    assert int(P4InvLinear(3, init="reverse").sign) == -1  # one swap
    assert int(P4InvLinear(4, init="reverse").sign) == 1  # two swaps
    a = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    layer = P4InvLinear(2, init=a)
    assert int(layer.sign) == -1 and float(layer.logabsdet) == pytest.approx(math.log(6.0))
    orth = P4InvLinear(6, init="orthogonal").weight
    assert torch.allclose(orth @ orth.T, torch.eye(6, dtype=torch.float64), atol=1e-14)
    with pytest.raises(ValueError, match="init must be"):
        P4InvLinear(2, init="nope")
    with pytest.raises(ValueError, match="invertible"):
        P4InvLinear(2, init=torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"init must be a \(3, 3\) matrix"):
        P4InvLinear(3, init=torch.eye(2))
    with pytest.raises(ValueError, match="features"):
        P4InvLinear(0)


@pytest.mark.parametrize("batch", BATCHES)
def test_perturbed_linear_matches_the_explicit_matrix(batch):
    a, u, v, b, x = operands(batch=batch)
    m = a + torch.outer(u, v)
    assert_forward(
        out=perturbed_linear(x, a, u, v, b), expected=x @ m.T + b, kappa=kappa1(m), dtype="float64"
    )
    assert_forward(
        out=perturbed_linear(x, a, u, v, None), expected=x @ m.T, kappa=kappa1(m), dtype="float64"
    )


@pytest.mark.parametrize("batch", BATCHES)
def test_sherman_morrison_linear_matches_a_dense_solve(batch):
    a, u, v, b, y = operands(seed=1, batch=batch)
    xinv = torch.linalg.inv(a)
    xu = xinv @ u
    c = 1 + v @ xu
    m = a + torch.outer(u, v)
    expected = torch.linalg.solve(m, (y - b).T).T
    out = sherman_morrison_linear(y, xinv, xu, v, c, b)
    assert_forward(out=out, expected=expected, kappa=kappa1(m), dtype="float64")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradients_and_double_backward(with_bias, batch):
    a, u, v, b, x = operands(n=4, seed=2, batch=batch)
    xinv = torch.linalg.inv(a)
    args = [t.clone().requires_grad_() for t in (x, u, v, b)]

    def fwd(x, u, v, b):
        return perturbed_linear(x, a, u, v, b if with_bias else None)

    assert torch.autograd.gradcheck(fwd, args)
    assert torch.autograd.gradgradcheck(fwd, args)
    xu = (xinv @ u).requires_grad_()
    c = (1 + v @ xinv @ u).requires_grad_()
    args = [
        x.clone().requires_grad_(),
        xu,
        v.clone().requires_grad_(),
        c,
        b.clone().requires_grad_(),
    ]

    def inv(y, xu, v, c, b):
        return sherman_morrison_linear(y, xinv, xu, v, c, b if with_bias else None)

    assert torch.autograd.gradcheck(inv, args)
    assert torch.autograd.gradgradcheck(inv, args)


def test_one_dimensional_input_and_vmap():
    a, u, v, b, x = operands(seed=3)
    one = perturbed_linear(x[0], a, u, v, b)
    assert one.shape == (5,)
    batched = torch.func.vmap(lambda r: perturbed_linear(r, a, u, v, b))(x)
    assert torch.allclose(batched, perturbed_linear(x, a, u, v, b), rtol=1e-14, atol=0)


@pytest.mark.parametrize("method", ["forward", "inverse", "penalty"])
@pytest.mark.parametrize("batch", [2, 9])  # fewer rows than n = 4 and more
def test_gradcheck_and_double_backward_of_the_fused_nodes(method, batch, scalar_form):
    layer = make_layer(4, seed=batch)
    if method == "penalty":
        push_c_low(layer)
    f = functional(layer, method)
    args = call_inputs(layer, batch)
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
    layer = make_layer(5, seed=3)
    x, u, v, b = call_inputs(layer, 7)
    out = functional(layer, method)(x, u, v, b)
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
    layer = make_layer(6, seed=4)
    if method == "penalty":
        push_c_low(layer)
    f = functional(layer, method)
    x, u, v, b = call_inputs(layer, 5)

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
    layer = make_layer(4, seed=5)
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
    layer = make_layer(4, seed=6, dtype=torch.float32)
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


def test_unused_outputs_need_no_gradient(scalar_form):
    layer = make_layer(4, seed=8)
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
