"""Torch LULinear, InvertibleSequential, LUNet and dequantize against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.func import functional_call

from invlin.nn.activations import BentIdentity
from invlin.nn.lu import LULinear
from invlin.nn.lunet import LUNet, dequantize
from invlin.nn.sequential import InvertibleSequential
from invlin.reference import lu as ref_lu
from invlin.reference.activations import LeakySoftplus as RefLeakySoftplus


def make_layer(n, dtype=torch.float64, seed=0, diag_lo=0.5, off=0.3, graded=False):
    """A layer with L = I + noise, |diag U| log-uniform in [diag_lo, 2] with random signs, and
    strictly-upper noise (scaled by the row's diagonal when ``graded``)."""
    g = torch.Generator().manual_seed(seed)
    layer = LULinear(n, dtype=dtype)
    with torch.no_grad():
        layer.lower_entries.copy_(torch.randn(n, n, generator=g, dtype=dtype) * off / n**0.5)
        mags = torch.exp(
            torch.empty(n, dtype=dtype).uniform_(math.log(diag_lo), math.log(2.0), generator=g)
        )
        signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dtype)
        strict = torch.randn(n, n, generator=g, dtype=dtype) * off / n**0.5
        diag = signs * mags
        layer.upper_entries.copy_(diag[:, None] * strict if graded else strict)
        layer.upper_diag.copy_(diag)
        layer.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
    return layer


def factors_np(layer):
    with torch.no_grad():
        return (
            layer.lower_matrix().detach().double().numpy(),
            layer.upper_matrix().detach().double().numpy(),
            layer.bias.detach().double().numpy(),
        )


# -- LULinear ------------------------------------------------------------------------------------
# Round-trip bound, as in tests/test_reference_lu.py: four backward-stable triangular operations
# (|ΔT| ≤ γ_n|T|, Higham Thm 8.5) plus the bias give ‖x̂ − x‖ ≲ 4√n·nε·κ·(‖x‖ + ‖b‖/‖A‖) with
# κ = κ₂(L)κ₂(U) ≥ κ₂(LU) computed by NumPy; we allow a ratio of 30·n against ε·κ·(…). Here the
# forward is one product with the rounded W = fl(LU), which adds ε‖|L||U|‖‖x‖, inside the same
# bound. A wrong inverse gives a ratio of order 1/(κε).
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [1, 3, 17, 64])
def test_round_trip_scales_with_condition_number(n, dtype):
    eps = torch.finfo(dtype).eps
    cases = ((0.5, False), (1e-3, True)) if dtype == torch.float32 else ((0.5, False), (1e-8, True))
    for seed, (diag_lo, graded) in enumerate(cases):
        layer = make_layer(n, dtype, seed=seed, diag_lo=diag_lo, graded=graded)
        low, up, b = factors_np(layer)
        k = np.linalg.cond(low) * np.linalg.cond(up)
        assert k * eps < 1e-2
        a_norm = np.linalg.norm(low @ up, 2)
        x = torch.randn(16, n, dtype=dtype, generator=torch.Generator().manual_seed(seed))
        y, _ = layer(x)
        x_back, _ = layer.inverse(y)
        xn = x.detach().double().numpy()
        err = np.linalg.norm(x_back.detach().double().numpy() - xn)
        assert err / ((np.linalg.norm(xn) + np.linalg.norm(b) / a_norm) * k * eps) <= 30 * n
        y_back, _ = layer(layer.inverse(y)[0])
        yn = y.detach().double().numpy()
        err = np.linalg.norm(y_back.detach().double().numpy() - yn)
        assert err / ((np.linalg.norm(yn) + np.linalg.norm(b)) * k * eps) <= 30 * n


@pytest.mark.parametrize("n", [2, 9, 40])
def test_logabsdet_matches_numpy_slogdet_and_autograd_jacobian(n):
    layer = make_layer(n, seed=n, diag_lo=1e-2)
    low, up, _ = factors_np(layer)
    sign, ref = np.linalg.slogdet(low @ up)
    k = np.linalg.cond(low) * np.linalg.cond(up)
    x = torch.randn(3, n, dtype=torch.float64)
    y, ld = layer(x)
    assert sign != 0 and ld.shape == (3,)
    assert torch.all((ld - ref).abs() <= 30 * n * k * torch.finfo(torch.float64).eps)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x[0])
    assert torch.allclose(ld[0], torch.linalg.slogdet(jac)[1], rtol=0, atol=1e-12 * n)
    jac_inv = torch.autograd.functional.jacobian(lambda v: layer.inverse(v)[0], y[0])
    _, ld_inv = layer.inverse(y)
    assert torch.allclose(ld_inv[0], torch.linalg.slogdet(jac_inv)[1], rtol=0, atol=1e-11 * n)
    assert torch.equal(ld_inv, -ld)


def test_agrees_with_numpy_reference():
    n = 24
    for dtype in (torch.float64, torch.float32):
        layer = make_layer(n, dtype, seed=5)
        low, up, b = factors_np(layer)
        reference = ref_lu.LULayer(low, up, b)
        x = torch.randn(2, 5, n, dtype=dtype)
        xn = x.detach().double().numpy()
        eps = torch.finfo(dtype).eps
        y, ld = layer(x)
        y_ref, ld_ref = reference.forward(xn)
        # Forward error of a matrix product (plus the rounding of W and b): ≲ nε(|L||U||x| + |b|).
        scale = np.abs(xn) @ (np.abs(low) @ np.abs(up)).T + np.abs(b)
        assert np.all(np.abs(y.detach().double().numpy() - y_ref) <= 4 * n * eps * scale)
        assert np.allclose(ld.detach().double().numpy(), ld_ref, rtol=4 * eps * n, atol=4 * eps * n)
        x_back, ld_inv = layer.inverse(y)
        x_ref, ld_inv_ref = reference.inverse(y.detach().double().numpy())
        k = np.linalg.cond(low) * np.linalg.cond(up)
        err = np.linalg.norm(x_back.detach().double().numpy() - x_ref)
        assert err <= 30 * n * k * eps * (np.linalg.norm(x_ref) + np.linalg.norm(b))
        assert np.allclose(ld_inv.detach().double().numpy(), ld_inv_ref, rtol=4 * eps * n, atol=0)


class _Inverse(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, y):
        return self.layer.inverse(y)


def test_gradcheck_parameters_forward_and_inverse():
    n = 4
    layer = make_layer(n, seed=7)
    names = ["lower_entries", "upper_entries", "upper_diag", "bias"]
    params = tuple(getattr(layer, k).detach().clone().requires_grad_(True) for k in names)
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)

    def forward(inp, *ps):
        return functional_call(layer, dict(zip(names, ps, strict=True)), (inp,), strict=True)

    def inverse(inp, *ps):
        named = {f"layer.{k}": p for k, p in zip(names, ps, strict=True)}
        return functional_call(_Inverse(layer), named, (inp,), strict=True)

    assert torch.autograd.gradcheck(forward, (x, *params))
    y = layer(x.detach())[0].requires_grad_(True)
    assert torch.autograd.gradcheck(inverse, (y, *params))


def test_zero_diagonal_raises_on_inverse_and_logdet_is_minus_inf():
    layer = make_layer(5, seed=8)
    with torch.no_grad():
        layer.upper_diag[3] = 0.0
    x = torch.randn(4, 5, dtype=torch.float64)
    y, ld = layer(x)
    assert torch.isfinite(y).all() and torch.all(ld == -math.inf)
    assert not torch.isnan(ld).any()
    with pytest.raises(ValueError, match="index 3"):
        layer.inverse(y)


def test_near_zero_diagonal_is_finite():
    n = 6
    layer = make_layer(n, seed=9)
    with torch.no_grad():
        layer.upper_diag[n - 1] = 1e-300
    y = torch.randn(3, n, dtype=torch.float64)
    x, ld = layer.inverse(y)
    expected = float(np.sum(np.log(np.abs(layer.upper_diag.detach().numpy()))))
    assert torch.isfinite(x).all() and torch.isfinite(ld).all()
    assert torch.allclose(ld, torch.full_like(ld, -expected), rtol=1e-14, atol=0)
    # Backward stability of the solves: ‖y − b − LU x̂‖ ≲ nε‖|L||U|‖‖x̂‖ (κ ~ 1e300 here).
    low, up, b = factors_np(layer)
    xn = x.detach().numpy()
    resid = y.numpy() - b - xn @ (low @ up).T
    assert np.all(
        np.abs(resid) <= 8 * n * 2.0**-52 * (np.abs(xn) @ (np.abs(low) @ np.abs(up)).T + np.abs(b))
    )


def test_triangles_stay_triangular_after_optimizer_steps():
    n = 6
    layer = LULinear(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.5)
    x = torch.randn(32, n, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        y, ld = layer(x)
        (0.5 * (y * y).sum(-1) - ld).mean().backward()
        # The unused entries get exactly zero gradient.
        assert torch.all(torch.triu(layer.lower_entries.grad) == 0)
        assert torch.all(torch.tril(layer.upper_entries.grad) == 0)
        assert torch.any(torch.tril(layer.lower_entries.grad, -1) != 0)
        opt.step()
    low, up = layer.lower_matrix(), layer.upper_matrix()
    assert torch.all(torch.triu(low, 1) == 0) and torch.all(torch.diagonal(low) == 1)
    assert torch.all(torch.tril(up, -1) == 0)
    assert torch.equal(torch.diagonal(up), layer.upper_diag)
    assert torch.equal(layer.weight(), low @ up)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    layer = LULinear(8, dtype=dtype)
    x = torch.randn(5, 8).to(dtype)
    y, ld = layer(x)
    xb, ld_inv = layer.inverse(y)
    assert y.dtype == ld.dtype == xb.dtype == ld_inv.dtype == dtype
    assert ld.shape == ld_inv.shape == (5,)
    tol = 16 * torch.finfo(dtype).eps
    assert torch.allclose(xb.double(), x.double(), rtol=tol, atol=tol)
    # The layer also runs on inputs of another floating dtype (parameters are cast to it).
    y64, _ = layer(x.double())
    assert y64.dtype == torch.float64


def test_init_options_and_to():
    ident = LULinear(16, generator=torch.Generator().manual_seed(0))
    w = ident.weight().double()
    assert torch.linalg.cond(w) < 1.5 and torch.all(ident.upper_diag > 0.9)
    paper = LULinear(16, init="paper", generator=torch.Generator().manual_seed(0))
    assert torch.all(paper.upper_diag.abs() <= 0.25)
    with pytest.raises(ValueError, match="init"):
        LULinear(3, init="glorot")
    with pytest.raises(ValueError, match="features"):
        LULinear(0)
    with pytest.raises(ValueError, match="dtype"):
        LULinear(3, dtype=torch.int64)
    moved = ident.to(torch.float64)
    assert moved.weight().dtype == torch.float64 and moved.logabsdet().dtype == torch.float64
    meta = LULinear(5, device="meta")
    y, ld = meta(torch.empty(2, 5, device="meta"))
    assert y.device.type == ld.device.type == "meta"


def test_bad_inputs_raise():
    layer = LULinear(4)
    with pytest.raises(ValueError, match="x"):
        layer(torch.ones(2, 5))
    with pytest.raises(ValueError, match="x"):
        layer(torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="y"):
        layer.inverse(torch.ones(3))
    with pytest.raises(ValueError, match="x"):
        layer(np.ones((2, 4)))
    with pytest.raises(ValueError, match="x"):
        layer(torch.tensor(1.0))


def test_empty_and_batched_shapes():
    layer = make_layer(3)
    y, ld = layer(torch.zeros(0, 3, dtype=torch.float64))
    assert y.shape == (0, 3) and ld.shape == (0,)
    x, ld = layer.inverse(torch.zeros(2, 0, 3, dtype=torch.float64))
    assert x.shape == (2, 0, 3) and ld.shape == (2, 0)
    x, ld = layer.inverse(torch.ones(3, dtype=torch.float64))
    assert x.shape == (3,) and ld.shape == ()


# -- InvertibleSequential ------------------------------------------------------------------------
def test_sequential_chains_and_reverses():
    layers = [make_layer(4, seed=1), BentIdentity(), make_layer(4, seed=2)]
    flow = InvertibleSequential(*layers)
    x = torch.randn(5, 4, dtype=torch.float64)
    h, ld_sum = x, torch.zeros(5, dtype=torch.float64)
    for layer in layers:
        h, ld = layer(h)
        ld_sum = ld_sum + ld
    z, ld = flow(x)
    assert torch.equal(z, h) and torch.allclose(ld, ld_sum, rtol=0, atol=1e-14)
    x_back, ld_inv = flow.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-12) and torch.allclose(ld_inv, -ld, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v)[0], x[0])
    assert torch.allclose(ld[0], torch.linalg.slogdet(jac)[1], atol=1e-12)
    assert len(flow) == 3 and flow[1] is layers[1]
    empty = InvertibleSequential()
    z, ld = empty(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        InvertibleSequential(torch.nn.Linear(3, 3))


# -- LUNet ---------------------------------------------------------------------------------------
def identity_net(n, blocks):
    net = LUNet(n, blocks=blocks, dtype=torch.float64)
    for layer in net:
        if isinstance(layer, LULinear):
            with torch.no_grad():
                layer.lower_entries.zero_()
                layer.upper_entries.zero_()
                layer.upper_diag.fill_(1.0)
                layer.bias.zero_()
    return net


def test_lunet_structure():
    net = LUNet(5, blocks=3)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["LULinear", "LeakySoftplus", "LULinear", "LeakySoftplus", "LULinear"]
    with pytest.raises(ValueError, match="blocks"):
        LUNet(5, blocks=0)


def test_identity_lunet_nll_uses_log_two_pi():
    n = 7
    net = identity_net(n, blocks=1)
    x = torch.randn(10, n, dtype=torch.float64)
    by_hand = 0.5 * (x * x).sum(-1) + 0.5 * n * math.log(2 * math.pi)
    assert torch.allclose(-net.log_prob(x), by_hand, rtol=1e-14)
    assert net.nll(x).item() == pytest.approx(by_hand.mean().item(), rel=1e-14)
    assert net.bits_per_dim(x).item() == pytest.approx(
        by_hand.mean().item() / (n * math.log(2)), rel=1e-14
    )
    assert net.nll(torch.zeros(1, n, dtype=torch.float64)).item() == pytest.approx(
        0.5 * n * math.log(2 * math.pi), rel=1e-15
    )


def test_single_block_density_is_the_gaussian_it_defines():
    # z = A x + b ~ N(0, I)  ⇔  x ~ N(−A⁻¹b, (AᵀA)⁻¹), evaluated by scipy.
    n = 4
    net = LUNet(n, blocks=1, dtype=torch.float64)
    net[0].load_state_dict(make_layer(n, seed=11).state_dict())
    low, up, b = factors_np(net[0])
    a = low @ up
    x = torch.randn(6, n, dtype=torch.float64)
    ref = stats.multivariate_normal(mean=-np.linalg.solve(a, b), cov=np.linalg.inv(a.T @ a))
    assert np.allclose(net.log_prob(x).detach().numpy(), ref.logpdf(x.numpy()), rtol=1e-10)


def test_lunet_matches_reference_and_autograd():
    n = 6
    net = LUNet(n, blocks=3, alpha=0.2, dtype=torch.float64)
    for i, layer in enumerate(net):
        if isinstance(layer, LULinear):
            layer.load_state_dict(make_layer(n, seed=20 + i).state_dict())
    reference = ref_lu.LUNet(
        [ref_lu.LULayer(*factors_np(layer)) for layer in net if isinstance(layer, LULinear)],
        RefLeakySoftplus(0.2),
    )
    x = torch.randn(5, n, dtype=torch.float64)
    z, ld = net(x)
    z_ref, ld_ref = reference.forward(x.numpy())
    assert np.allclose(z.detach().numpy(), z_ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(ld.detach().numpy(), ld_ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(net.log_prob(x).detach().numpy(), reference.log_prob(x.numpy()), rtol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda v: net(v)[0], x[0])
    assert torch.allclose(ld[0], torch.linalg.slogdet(jac)[1], atol=1e-11)
    x_back, ld_inv = net.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-11) and torch.allclose(ld_inv, -ld, atol=1e-11)
    assert net.bits_per_dim(x).item() == pytest.approx(reference.bits_per_dim(x.numpy()), 1e-12)


def test_lunet_low_precision_dtypes():
    for dtype in (torch.bfloat16, torch.float32):
        net = LUNet(8, blocks=2, dtype=dtype)
        x = torch.randn(4, 8).to(dtype)
        z, ld = net(x)
        assert z.dtype == ld.dtype == net.log_prob(x).dtype == net.nll(x).dtype == dtype
        assert net.inverse(z)[0].dtype == dtype


def test_nll_logdet_argument_is_checked():
    net = identity_net(3, 1)
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="logdet"):
        net.nll(x, torch.zeros(3, dtype=torch.float64))


# -- dequantize ----------------------------------------------------------------------------------
def test_dequantize_values_logdet_and_bits_per_dim():
    g = torch.Generator().manual_seed(3)
    d, bins = 10, 256
    x = torch.randint(0, bins, (50, d), generator=g)
    x[0] = 0
    x[1] = bins - 1
    y, logdet = dequantize(x, bins=bins, generator=g, dtype=torch.float64)
    assert y.dtype == logdet.dtype == torch.float64 and logdet.shape == (50,)
    assert torch.all((y > 0) & (y < 1))
    assert torch.equal(torch.floor(y * bins).long(), x)  # y lies in the cell [x, x + 1)/bins
    assert torch.allclose(logdet, torch.full((50,), -d * math.log(bins), dtype=torch.float64))
    # log-Jacobian of v ↦ v/bins (v = x + u), from autograd.
    jac = torch.autograd.functional.jacobian(lambda v: v / bins, torch.rand(d, dtype=torch.float64))
    assert logdet[0].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), rel=1e-14)
    # With the identity model on y the bits/dim of the data are bits_per_dim(y) + log2(bins).
    net = identity_net(d, 1)
    assert net.bits_per_dim(y, logdet).item() == pytest.approx(
        net.bits_per_dim(y).item() + math.log2(bins), rel=1e-14
    )
    # The same generator state gives the same noise; floating integral input is accepted.
    y1, _ = dequantize(x.double(), generator=torch.Generator().manual_seed(1))
    y2, _ = dequantize(x.double(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and y1.dtype == torch.float64


def test_dequantize_low_precision_stays_in_open_interval():
    x = torch.full((1000, 4), 255)
    y, logdet = dequantize(x, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0))
    assert y.dtype == logdet.dtype == torch.bfloat16
    assert torch.all((y > 0) & (y < 1))


def test_dequantize_rejects_bad_input():
    with pytest.raises(ValueError, match="x"):
        dequantize(torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="bins"):
        dequantize(torch.tensor([[0, 256]]))
    with pytest.raises(ValueError, match="x"):
        dequantize(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="bins"):
        dequantize(torch.tensor([[0, 1]]), bins=0)
    with pytest.raises(ValueError, match="x"):
        dequantize([[0, 1]])
    with pytest.raises(ValueError, match="dtype"):
        dequantize(torch.tensor([[0, 1]]), dtype=torch.int32)
