"""Float64 reference LU layer and LU-Net: inverses, log-determinants and likelihoods."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from invlin.reference.activations import BentIdentity, LeakySoftplus
from invlin.reference.lu import LULayer, LUNet

EPS = float(np.finfo(np.float64).eps)


def make_factors(rng, n, diag_lo=0.5, diag_hi=2.0, off=0.3, graded=False):
    """L = I + strictly-lower noise; U = strictly-upper noise + D, D = diag(±|d|), |d| log-uniform
    in [diag_lo, diag_hi]. ``graded``: U = D(I + strictly-upper noise) instead, so that κ(U) is
    about diag_hi/diag_lo rather than growing exponentially with n."""
    lower = np.eye(n) + np.tril(rng.standard_normal((n, n)) * off / math.sqrt(n), -1)
    mags = np.exp(rng.uniform(math.log(diag_lo), math.log(diag_hi), n))
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    strict = np.triu(rng.standard_normal((n, n)) * off / math.sqrt(n), 1)
    if graded:
        upper = np.diag(signs * mags) @ (np.eye(n) + strict)
    else:
        upper = strict + np.diag(signs * mags)
    return lower, upper


def kappa(lower, upper):
    """κ₂(L)·κ₂(U) ≥ κ₂(LU): the condition number that governs the factored map and its solves."""
    return float(np.linalg.cond(lower) * np.linalg.cond(upper))


# Round-trip bound. Each of the four triangular operations (U·, L· forward; L⁻¹, U⁻¹ inverse) is
# backward stable with |ΔT| ≤ γ_n|T| (Higham, ASNA 2nd ed., Thm 8.5 and §3.5), γ_n = nε/(1 − nε),
# so each perturbs its result relatively by at most about κ(T)·‖|T|‖/‖T‖·nε ≤ κ(T)·√n·nε in the
# 2-norm; adding and subtracting b costs ε(|A x| + |b|), which A⁻¹ maps to ≤ κ(A)ε(‖x‖ + ‖b‖/‖A‖).
# Chaining and bounding every κ(T) by κ = κ(L)κ(U) gives
#     ‖x̂ − x‖ ≲ 4·√n·n·ε·κ·(‖x‖ + ‖b‖/‖A‖).
# The observed ratio ‖x̂ − x‖/(ε·κ·(‖x‖ + ‖b‖/‖A‖)) is far below 1; the test allows 30·n, which
# still fails for a wrong inverse (ratio of order 1/ε).
def round_trip_ratio(v, v_back, k, offset=0.0):
    return np.linalg.norm(v_back - v) / ((np.linalg.norm(v) + offset) * k * EPS)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 64])
def test_round_trip_scales_with_condition_number(n):
    rng = np.random.default_rng(100 + n)
    for diag_lo, graded in ((0.5, False), (1e-4, True), (1e-9, True)):
        lower, upper = make_factors(rng, n, diag_lo=diag_lo, graded=graded)
        layer = LULayer(lower, upper, rng.standard_normal(n))
        k = kappa(lower, upper)
        assert k * EPS < 1e-3  # the first-order bound below needs κε ≪ 1
        x = rng.standard_normal((8, n))
        b_norm = np.linalg.norm(layer.bias)
        y, _ = layer.forward(x)
        x_back, _ = layer.inverse(y)
        offset = b_norm / np.linalg.norm(layer.matrix, 2)
        assert round_trip_ratio(x, x_back, k, offset) <= 30 * n
        # And the other way round: forward(inverse(y)) ≈ y.
        y_back, _ = layer.forward(layer.inverse(y)[0])
        assert round_trip_ratio(y, y_back, k, b_norm) <= 30 * n


def test_forward_is_the_product_lu_plus_bias():
    rng = np.random.default_rng(1)
    n = 12
    lower, upper = make_factors(rng, n)
    b = rng.standard_normal(n)
    layer = LULayer(lower, upper, b)
    x = rng.standard_normal((3, 4, n))
    y, ld = layer.forward(x)
    expected = np.einsum("ij,abj->abi", lower @ upper, x) + b
    scale = np.abs(lower) @ np.abs(upper)
    bound = 4 * n * EPS * (np.einsum("ij,abj->abi", scale, np.abs(x)) + np.abs(b))
    assert y.shape == x.shape and ld.shape == (3, 4)
    assert np.all(np.abs(y - expected) <= bound)
    np.testing.assert_array_equal(layer.matrix, lower @ upper)


@pytest.mark.parametrize("n", [3, 32, 128])
def test_logabsdet_matches_slogdet(n):
    rng = np.random.default_rng(n)
    lower, upper = make_factors(rng, n, diag_lo=1e-3, diag_hi=1e3)
    layer = LULayer(lower, upper)
    sign, ref = np.linalg.slogdet(lower @ upper)
    assert sign != 0
    # slogdet of the rounded product LU is accurate to about n·κ·ε (brief: measured).
    assert abs(layer.logabsdet() - ref) <= 30 * n * kappa(lower, upper) * EPS
    x = rng.standard_normal((5, n))
    _, ld = layer.forward(x)
    _, ld_inv = layer.inverse(x)
    np.testing.assert_array_equal(ld, np.full(5, layer.logabsdet()))
    np.testing.assert_array_equal(ld_inv, -ld)


def test_accepts_unit_or_strict_lower_and_rejects_the_rest():
    rng = np.random.default_rng(2)
    lower, upper = make_factors(rng, 4)
    a = LULayer(lower, upper)
    b = LULayer(lower - np.eye(4), upper)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.lower, lower)
    bad = lower.copy()
    bad[0, 3] = 1e-3
    with pytest.raises(ValueError, match="lower"):
        LULayer(bad, upper)
    bad = lower.copy()
    bad[2, 2] = 2.0
    with pytest.raises(ValueError, match="lower"):
        LULayer(bad, upper)
    bad = upper.copy()
    bad[3, 0] = 1.0
    with pytest.raises(ValueError, match="upper"):
        LULayer(lower, bad)
    with pytest.raises(ValueError, match="upper"):
        LULayer(lower, upper[:3, :3])
    with pytest.raises(ValueError, match="bias"):
        LULayer(lower, upper, np.ones(3))
    with pytest.raises(ValueError, match="lower"):
        LULayer(np.full((4, 4), np.nan), upper)
    with pytest.raises(ValueError, match="upper"):
        LULayer(lower, np.ones((4, 5)))


def test_bad_batches_raise():
    layer = LULayer(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="x"):
        layer.forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="x"):
        layer.forward(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="y"):
        layer.inverse(np.array([1.0, np.inf, 0.0]))
    y, ld = layer.forward(np.ones(3))
    assert y.shape == (3,) and ld.shape == ()
    x, ld = layer.inverse(np.empty((0, 3)))
    assert x.shape == (0, 3) and ld.shape == (0,)


def test_zero_diagonal_is_singular_without_nan():
    rng = np.random.default_rng(3)
    lower, upper = make_factors(rng, 5)
    upper[2, 2] = 0.0
    layer = LULayer(lower, upper)
    assert layer.logabsdet() == -np.inf
    y, ld = layer.forward(rng.standard_normal((4, 5)))
    assert np.all(np.isfinite(y)) and np.all(ld == -np.inf)
    with pytest.raises(ValueError, match="index 2"):
        layer.inverse(y)


def test_near_zero_diagonal_stays_finite():
    rng = np.random.default_rng(4)
    n = 6
    lower, upper = make_factors(rng, n)
    upper[n - 1, n - 1] = 1e-300
    layer = LULayer(lower, upper)
    expected = float(np.sum(np.log(np.abs(np.diag(upper)))))
    assert np.isfinite(layer.logabsdet())
    assert abs(layer.logabsdet() - expected) <= 4 * n * EPS * abs(expected)
    y = rng.standard_normal((3, n))
    x, ld = layer.inverse(y)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(ld))
    # Backward stability of the two solves: ‖y − L U x̂‖ ≲ nε‖|L||U|‖‖x̂‖ (κ is ~1e300 here).
    resid = y - x @ (lower @ upper).T
    scale = np.abs(x) @ (np.abs(lower) @ np.abs(upper)).T
    assert np.all(np.abs(resid) <= 8 * n * EPS * scale)


# -- LU-Net --------------------------------------------------------------------------------------
def make_net(rng, n, blocks, activation=None):
    layers = []
    for _ in range(blocks):
        lower, upper = make_factors(rng, n)
        layers.append(LULayer(lower, upper, 0.3 * rng.standard_normal(n)))
    return LUNet(layers, activation)


def numerical_jacobian(fn, x, h=1e-6):
    n = x.shape[0]
    cols = [(fn(x + h * e) - fn(x - h * e)) / (2 * h) for e in np.eye(n)]
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("activation", [None, BentIdentity(), LeakySoftplus(0.3)])
def test_lunet_round_trip_and_logdet_against_finite_differences(activation):
    rng = np.random.default_rng(5)
    n = 6
    net = make_net(rng, n, 3, activation)
    x = rng.standard_normal((4, n))
    z, ld = net.forward(x)
    x_back, ld_inv = net.inverse(z)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ld_inv, -ld, rtol=0, atol=1e-12)
    for row in range(2):
        jac = numerical_jacobian(lambda v: net.forward(v)[0], x[row])
        sign, ref = np.linalg.slogdet(jac)
        assert sign != 0
        assert abs(ld[row] - ref) <= 1e-6 * max(1.0, abs(ref))


def test_lunet_last_block_has_no_activation():
    rng = np.random.default_rng(6)
    lower, upper = make_factors(rng, 3)
    single = LUNet([LULayer(lower, upper)])
    x = rng.standard_normal((2, 3))
    z, ld = single.forward(x)
    np.testing.assert_allclose(z, x @ (lower @ upper).T, rtol=1e-14, atol=1e-14)
    assert np.allclose(ld, np.sum(np.log(np.abs(np.diag(upper)))))


def test_log_prob_uses_log_two_pi():
    rng = np.random.default_rng(7)
    n = 5
    net = LUNet([LULayer(np.eye(n), np.eye(n))])
    x = rng.standard_normal((10, n))
    by_hand = 0.5 * np.sum(x * x, axis=1) + 0.5 * n * math.log(2 * math.pi)
    np.testing.assert_allclose(-net.log_prob(x), by_hand, rtol=1e-14)
    assert net.nll(x) == pytest.approx(by_hand.mean(), rel=1e-14)
    assert net.bits_per_dim(x) == pytest.approx(by_hand.mean() / (n * math.log(2)), rel=1e-14)
    assert net.nll(np.zeros(n)) == pytest.approx(0.5 * n * math.log(2 * math.pi), rel=1e-15)
    assert net.nll(x, np.full(10, -2.0)) == pytest.approx(by_hand.mean() + 2.0, rel=1e-14)
    with pytest.raises(ValueError, match="logdet"):
        net.nll(x, np.zeros(3))


def test_single_layer_density_is_the_gaussian_it_defines():
    # z = A x + b ~ N(0, I)  ⇔  x ~ N(−A⁻¹b, (AᵀA)⁻¹): scipy evaluates that density independently.
    rng = np.random.default_rng(8)
    n = 4
    lower, upper = make_factors(rng, n)
    b = rng.standard_normal(n)
    net = LUNet([LULayer(lower, upper, b)])
    a = lower @ upper
    x = rng.standard_normal((6, n))
    ref = stats.multivariate_normal(mean=-np.linalg.solve(a, b), cov=np.linalg.inv(a.T @ a))
    np.testing.assert_allclose(net.log_prob(x), ref.logpdf(x), rtol=1e-10)


def test_lunet_rejects_bad_layers():
    with pytest.raises(ValueError, match="layers"):
        LUNet([])
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        LUNet([LULayer(np.eye(2), np.eye(2)), LULayer(np.eye(3), np.eye(3))])
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        LUNet([np.eye(2)])
    with pytest.raises(ValueError, match="x"):
        LUNet([LULayer(np.eye(2), np.eye(2))]).forward(np.ones(3))
