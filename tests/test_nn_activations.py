"""Torch activations: inverse accuracy against mpmath, log-determinants, gradients and dtypes."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch

from invlin.nn.activations import BentIdentity, LeakySoftplus
from invlin.reference import activations as ref

ALPHA = 0.1
# "A few ulp". The Newton residual is noisy at the level of a few roundings of torch's exp/expm1/
# log1p (~1 ulp each), divided by f′ < 1: measured maxima over millions of points were 3.1 ulp
# (CPU float64 and float32), 2.6 / 3.3 (H100 float64 / float32) for leaky softplus and 2.4 for
# the bent identity. The bound leaves room for other platforms' libm.
MAX_ULP = 6.0
DPS = 50
ACTIVATIONS = [LeakySoftplus(ALPHA), BentIdentity()]
IDS = ["leaky", "bent"]


# -- mpmath truth: plain formulas and bisection, independent of the code under test --------------
def leaky_mp(x, a):
    if x > 0:
        return x + (1 - a) * mp.log1p(mp.exp(-x))
    return a * x + (1 - a) * mp.log1p(mp.exp(x))


def bent_mp(x):
    return x + x * x / (2 * (mp.sqrt(x * x + 1) + 1))


def inverse_truth(name: str, y: float) -> mp.mpf:
    with mp.workdps(DPS):
        yy = mp.mpf(y)
        if name == "leaky":
            a = mp.mpf(ALPHA)
            c = (1 - a) * mp.log(2)
            lo = yy - c if yy - c >= 0 else (yy - c) / a
            hi = yy if yy >= 0 else yy / a

            def f(x):
                return leaky_mp(x, a)
        else:
            lo, hi = sorted([2 * yy / 3, 2 * yy])
            f = bent_mp
        pad = (abs(lo) + abs(hi)) * mp.mpf(10) ** -40 + mp.mpf(10) ** -330
        lo, hi = lo - pad, hi + pad
        assert f(lo) <= yy <= f(hi)
        for _ in range(2000):
            mid = (lo + hi) / 2
            if mid in (lo, hi) or hi - lo <= mp.mpf(10) ** -42 * max(abs(lo), abs(hi)):
                break
            lo, hi = (mid, hi) if f(mid) < yy else (lo, mid)
        return (lo + hi) / 2


def ulp_error(got: float, truth: mp.mpf, np_dtype) -> float:
    with mp.workdps(DPS):
        spacing = float(np.spacing(np_dtype(abs(float(truth)))))
        return float(abs(mp.mpf(got) - truth) / spacing)


def sample_y(np_dtype, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 37 if np_dtype == np.float32 else 300
    bottom = -44 if np_dtype == np.float32 else -310
    mags = 10.0 ** rng.uniform(bottom, top, count)
    signs = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    c = 0.9 * math.log(2)
    extra = [0.0, c, -0.5, -0.43, 0.03, 1.0, -1.0, 2.5, -16.0]
    y = np.concatenate([signs * mags, 3 * rng.standard_normal(count), extra]).astype(np_dtype)
    return y[np.isfinite(y)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("act", "name"), list(zip(ACTIVATIONS, IDS, strict=True)), ids=IDS)
@pytest.mark.slow
def test_inverse_within_few_ulp_of_mpmath(act, name, dtype):
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    ys = sample_y(np_dtype, 80, seed=31 if name == "leaky" else 32)
    # Overflowing roots (f32 leaky: y < −α·max) are tested separately.
    if name == "leaky" and np_dtype == np.float32:
        ys = ys[ys > -3e37]
    x, _ = act.inverse(torch.from_numpy(ys).reshape(-1, 1))
    assert x.dtype == dtype
    got = x.reshape(-1).tolist()
    errors = [
        ulp_error(g, inverse_truth(name, float(y)), np_dtype) for y, g in zip(ys, got, strict=True)
    ]
    assert max(errors) <= MAX_ULP, (max(errors), ys[int(np.argmax(errors))])


@pytest.mark.parametrize(
    ("act", "reference"),
    [(LeakySoftplus(ALPHA), ref.LeakySoftplus(ALPHA)), (BentIdentity(), ref.BentIdentity())],
    ids=IDS,
)
@pytest.mark.slow
def test_agrees_with_numpy_reference_on_a_large_sample(act, reference):
    rng = np.random.default_rng(40)
    y = np.concatenate([rng.standard_normal(20000) * 5, 10.0 ** rng.uniform(-30, 30, 5000)])
    y = np.concatenate([y, -y])
    x64 = act.inverse(torch.from_numpy(y).reshape(-1, 100))[0].reshape(-1).numpy()
    x_ref = reference.inverse(y)
    # Both are within a few ulp of the truth, so within twice that of each other.
    assert np.all(np.abs(x64 - x_ref) <= 2 * MAX_ULP * np.spacing(np.abs(x_ref)))
    # float32 against the float64 reference rounded (≤ 0.5 ulp) to float32.
    y32 = y.astype(np.float32)
    x32 = act.inverse(torch.from_numpy(y32).reshape(-1, 100))[0].reshape(-1).numpy()
    truth = reference.inverse(y32.astype(np.float64))
    spacing = np.spacing(np.abs(truth).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(x32 - truth) <= MAX_ULP * spacing)
    # Forward: the torch value agrees with the reference within a few ulp of the terms' size.
    x = torch.from_numpy(x_ref.reshape(-1, 100))
    y_t = act(x)[0].reshape(-1).numpy()
    y_ref = reference(x_ref)
    assert np.all(np.abs(y_t - y_ref) <= 8 * np.spacing(np.abs(x_ref) + np.abs(y_ref)))


def test_leaky_overflow_and_infinities_give_no_nan():
    act = LeakySoftplus(ALPHA)
    for dtype in (torch.float32, torch.float64):
        big = torch.finfo(dtype).max
        y = torch.tensor([[-big, -math.inf, math.inf, big, 0.0]], dtype=dtype)
        x, ld = act.inverse(y)
        assert x[0, :3].tolist() == [-math.inf, -math.inf, math.inf]
        assert x[0, 3] == big  # f(x) = x + (1 − α)·log1p(e^−x) rounds to x there
        assert torch.isfinite(ld).all()
        assert not torch.isnan(act(x)[0]).any()


@pytest.mark.parametrize(("act", "name"), list(zip(ACTIVATIONS, IDS, strict=True)), ids=IDS)
def test_log_derivative_matches_mpmath_derivative(act, name):
    rng = np.random.default_rng(41)
    xs = np.concatenate([rng.uniform(-30, 30, 40), [0.0, 1e-9, -1e-9]])
    ld = act.log_derivative(torch.from_numpy(xs)).tolist()
    with mp.workdps(DPS):
        a = mp.mpf(ALPHA)
        for x, got in zip(xs.tolist(), ld, strict=True):
            fn = (lambda t: leaky_mp(t, a)) if name == "leaky" else bent_mp
            truth = mp.log(mp.diff(fn, mp.mpf(x)))
            assert ulp_error(got, truth, np.float64) <= MAX_ULP, x


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_logabsdet_is_autograd_jacobian_slogdet(act):
    torch.manual_seed(0)
    x = torch.randn(6, dtype=torch.float64) * 3
    y, ld = act(x)
    jac = torch.autograd.functional.jacobian(lambda v: act(v)[0], x)
    sign, ref_ld = torch.linalg.slogdet(jac)
    assert sign == 1
    assert torch.allclose(ld, ref_ld, rtol=1e-13, atol=1e-13)
    # The inverse returns log|det ∂x/∂y| of its own map.
    x_back, ld_inv = act.inverse(y)
    jac_inv = torch.autograd.functional.jacobian(lambda v: act.inverse(v)[0], y)
    assert torch.allclose(ld_inv, torch.linalg.slogdet(jac_inv)[1], rtol=1e-12, atol=1e-12)
    assert torch.allclose(ld_inv, -ld, rtol=1e-13, atol=1e-13)
    assert torch.allclose(x_back, x, rtol=1e-14, atol=0)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_gradcheck_forward_inverse_and_logdet(act):
    x = torch.tensor(
        [[-40.0, -3.0, -0.7, 0.0], [1e-3, 0.5, 2.9, 35.0]], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda v: act(v), (x,))
    assert torch.autograd.gradgradcheck(lambda v: act(v), (x,))
    y = act(x.detach())[0].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: act.inverse(v), (y,))
    assert torch.autograd.gradgradcheck(lambda v: act.inverse(v), (y,))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_gradient_at_zero_is_the_derivative(act):
    x = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    act(x)[0].sum().backward()
    expected = ALPHA + (1 - ALPHA) / 2 if isinstance(act, LeakySoftplus) else 1.0
    assert x.grad.item() == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_dtype_preserved_and_low_precision_is_float32_rounded(act, dtype):
    torch.manual_seed(1)
    x = (torch.randn(4, 8) * 4).to(dtype)
    y, ld = act(x)
    xb, ld_inv = act.inverse(y)
    assert y.dtype == ld.dtype == xb.dtype == ld_inv.dtype == act.log_derivative(x).dtype == dtype
    assert y.shape == x.shape and ld.shape == (4,)
    if dtype in (torch.bfloat16, torch.float16):
        y32, _ = act(x.float())
        assert torch.equal(y, y32.to(dtype))  # computed in float32, rounded once
    # Round trip in the working format: error ≲ a few units of the format's roundoff.
    tol = 4 * torch.finfo(dtype).eps
    assert torch.allclose(xb.double(), x.double(), rtol=tol, atol=tol)


def test_follows_device_and_dtype_on_meta():
    for act in ACTIVATIONS:
        x = torch.empty(3, 5, device="meta", dtype=torch.float64)
        y, ld = act(x)
        assert y.device.type == "meta" and ld.shape == (3,) and y.dtype == torch.float64


@pytest.mark.parametrize("act", ACTIVATIONS, ids=IDS)
def test_bad_inputs_raise(act):
    with pytest.raises(ValueError, match="x"):
        act(torch.arange(4))
    with pytest.raises(ValueError, match="y"):
        act.inverse(torch.ones(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="x"):
        act(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x"):
        act(np.ones(3))


@pytest.mark.parametrize("alpha", [0.0, 1.0, -2.0, math.inf, None])
def test_leaky_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        LeakySoftplus(alpha)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.slow
def test_leaky_inverse_by_blocks_on_the_cpu(dtype, monkeypatch):
    # Inputs above the block size are solved block by block: every block gets what solving it
    # alone gives, and the whole stays within a few ulp of the reference, across block ends,
    # for a non-contiguous input with infinities and a NaN in a later block.
    from invlin.nn import activations

    monkeypatch.setattr(activations, "_CPU_BLOCK", 1000)
    act, reference = LeakySoftplus(ALPHA), ref.LeakySoftplus(ALPHA)
    rng = np.random.default_rng(41)
    y = np.concatenate([rng.standard_normal(3000) * 5, 10.0 ** rng.uniform(-30, 30, 1500)])
    y = np.concatenate([y, -y])  # 9000 values: 9 blocks
    y[[4321, 7000, 8999]] = [np.inf, -np.inf, np.nan]
    yt = torch.from_numpy(y).to(dtype).reshape(90, 100).t()  # (100, 90), not contiguous
    x = act.inverse(yt)[0]
    assert x.shape == yt.shape and x.dtype == dtype
    flat = yt.reshape(-1)
    blocks = torch.cat([act._solve_block(b) for b in flat.split(1000)])
    torch.testing.assert_close(x.reshape(-1), blocks, rtol=0, atol=0, equal_nan=True)
    got = x.reshape(-1).numpy().astype(np.float64)
    yy = flat.numpy().astype(np.float64)
    finite = np.isfinite(yy)
    truth = reference.inverse(yy[finite])
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    spacing = np.spacing(np.abs(truth).astype(np_dtype)).astype(np.float64)
    assert np.all(np.abs(got[finite] - truth) <= MAX_ULP * spacing)
    assert np.array_equal(got[~finite], yy[~finite], equal_nan=True)  # f(±inf) = ±inf, NaN


def test_gradients_with_a_blocked_inverse(monkeypatch):
    # With blocks of 3 elements the leaky inverse of a (2, 4) input runs in 3 blocks: its first
    # and second derivatives are still right (the forward, not blocked, is checked alongside).
    from invlin.nn import activations

    monkeypatch.setattr(activations, "_CPU_BLOCK", 3)
    act = LeakySoftplus(ALPHA)
    x = torch.tensor(
        [[-40.0, -3.0, -0.7, 0.0], [1e-3, 0.5, 2.9, 35.0]], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda v: act(v), (x,))
    assert torch.autograd.gradgradcheck(lambda v: act(v), (x,))
    y = act(x.detach())[0].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: act.inverse(v), (y,))
    assert torch.autograd.gradgradcheck(lambda v: act.inverse(v), (y,))
