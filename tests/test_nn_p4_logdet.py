"""P4InvLinear log|det| = log|det A| + log|1 + vᵀA⁻¹u| and the penalty on log|c|, log|c·det A|."""

from __future__ import annotations

import math

import pytest
import torch
from p4_helpers import (
    make_layer,
)

from invlin.nn import P4InvLinear, p4_ops
from invlin.testing import (
    assert_logabsdet,
    kappa1,
)


def test_logdet_matches_autograd_jacobian(scalar_form):
    layer = make_layer(5, seed=1)
    x = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: layer(t)[0], x)
    _sign, logdet = torch.linalg.slogdet(jac)
    _, ld = layer(x)
    kappa = kappa1(jac)
    assert_logabsdet(out=ld.detach(), expected=logdet, n=5, kappa=kappa, dtype="float64")
    jinv = torch.autograd.functional.jacobian(lambda t: layer.inverse(t)[0], layer(x)[0].detach())
    assert_logabsdet(
        out=layer.inverse(layer(x)[0])[1].detach(),
        expected=torch.linalg.slogdet(jinv)[1],
        n=5,
        kappa=kappa,
        dtype="float64",
    )


def test_log_abs_factor_gradcheck_and_double_backward():
    # log|c| through the public factor(): differentiable in u and v, twice
    layer = make_layer(5, seed=7)
    x = layer.weight_inverse
    u, v = (layer.u.detach().clone().requires_grad_(), layer.v.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda u, v: p4_ops.factor(u, v, x).log_c, (u, v))
    assert torch.autograd.gradgradcheck(lambda u, v: p4_ops.factor(u, v, x).log_c, (u, v))


def test_penalty_inside_its_bounds_adds_no_gradient():
    # Inside the bounds P is flat: the penalty's backward adds nothing (and runs no operations),
    # so the gradients of forward + penalty are those of the forward alone, bit for bit.
    layer = P4InvLinear(
        4, init="orthogonal", dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3], dtype=torch.float64))
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = layer.penalty_bounds
    assert lo < float(torch.log(torch.abs(layer.factor().detach()))) < hi
    pen = layer.penalty()
    assert float(pen.detach()) == 0.0
    pen.backward()
    assert layer.u.grad is None and layer.v.grad is None
    grads = []
    for with_penalty in (False, True):
        layer.zero_grad(set_to_none=True)
        y, ld = layer(x)
        loss = y.square().sum() - ld.sum() + (layer.penalty() if with_penalty else 0.0)
        loss.backward()
        grads.append([p.grad.clone() for p in (layer.u, layer.v, layer.bias)])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_penalty_gradcheck_and_values(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    assert float(layer.penalty().detach()) == 0.0  # c = 1, det = 1 inside the bounds
    with torch.no_grad():
        layer.u.copy_(torch.tensor([math.exp(-4.0) - 1, 0, 0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([1.0, 0, 0], dtype=torch.float64))
    # log|c| = -4: P = (−2 − (−4))² = 4 for both terms (det A = 1) -> 0.1 · 8
    assert float(layer.penalty().detach()) == pytest.approx(0.8, rel=1e-12)
    # c = e^-4 sits below the lower bound, so gradcheck runs through the lower relu branch.
    u = layer.u.detach().clone().requires_grad_()
    v = layer.v.detach().clone().requires_grad_()

    class _Penalty(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = layer

        def forward(self):
            return self.l.penalty()

    def pen(u, v):
        return torch.func.functional_call(_Penalty(), {"l.u": u, "l.v": v}, ())

    assert torch.autograd.gradcheck(pen, (u, v))


def test_penalty_host_tensor_and_relu_forms_agree_bit_for_bit():
    # P(t) = relu(lo − t)² + relu(t − hi)² is computed as d² with d = t − clamp(t, lo, hi) on
    # tensors and on host floats: both must give the definition's bits, slope included, at and
    # beyond the bounds and for ±inf and NaN.
    import math

    from invlin.nn.p4_ops import penalty_value

    lo, hi, weight = -2.0, 15.0, 0.1
    inf, nan = math.inf, math.nan
    ts = [-inf, -1e300, -7.3, -2.0, -2.0 + 1e-15, 0.0, 3.1, 15.0, 15.5, 1e300, inf, nan]
    for log_c in ts:
        for logabsdet in (0.0, -4.2, 9.9, 30.0):
            t = torch.tensor([log_c, log_c + logabsdet], dtype=torch.float64)
            below, above = torch.relu(lo - t), torch.relu(t - hi)
            value = weight * (below.square() + above.square()).sum()
            slope = weight * (2 * (above - below).sum())
            tensor = penalty_value(
                torch.tensor(log_c, dtype=torch.float64),
                torch.tensor(logabsdet, dtype=torch.float64),
                (lo, hi),
                weight,
                slope=True,
            )
            host = penalty_value(log_c, logabsdet, (lo, hi), weight)
            for got, want in (
                (tensor[0], value),
                (host[0], value),
                (tensor[1], slope),
                (host[1], slope),
            ):
                got = torch.as_tensor(got, dtype=torch.float64)
                assert torch.equal(got, want) or (got.isnan() and want.isnan()), (
                    log_c,
                    logabsdet,
                    float(got),
                    float(want),
                )
