"""Float64 reference activations against 50-digit mpmath truth."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from invlin.reference.activations import BentIdentity, LeakySoftplus

EPS = float(np.finfo(np.float64).eps)
ALPHA = 0.1
MAX_ULP = 4.0  # "a few ulp"; measured maxima over 5e6 points: 2.9 (leaky), 2.4 (bent)
DPS = 50


# -- mpmath truth (independent of the code under test: plain formulas and bisection) --------------
def leaky_mp(x: mp.mpf, alpha: mp.mpf) -> mp.mpf:
    if x > 0:
        return x + (1 - alpha) * mp.log1p(mp.exp(-x))
    return alpha * x + (1 - alpha) * mp.log1p(mp.exp(x))


def bent_mp(x: mp.mpf) -> mp.mpf:
    return x + x * x / (2 * (mp.sqrt(x * x + 1) + 1))


def bisect(f, y: float, lo: mp.mpf, hi: mp.mpf) -> mp.mpf:
    """Root of the increasing f(x) = y in [lo, hi] (widened a little), to ~40 significant digits."""
    y = mp.mpf(y)
    pad = (abs(lo) + abs(hi)) * mp.mpf(10) ** -40 + mp.mpf(10) ** -330
    lo, hi = lo - pad, hi + pad
    assert f(lo) <= y <= f(hi)
    for _ in range(2000):
        mid = (lo + hi) / 2
        if mid in (lo, hi) or hi - lo <= mp.mpf(10) ** -42 * max(abs(lo), abs(hi)):
            break
        if f(mid) < y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def leaky_inverse_truth(y: float, alpha: float = ALPHA) -> mp.mpf:
    with mp.workdps(DPS):
        a = mp.mpf(alpha)
        c = (1 - a) * mp.log(2)
        yy = mp.mpf(y)

        def m_inv(v):  # inverse of max(x, αx)
            return v if v >= 0 else v / a

        return bisect(lambda x: leaky_mp(x, a), y, m_inv(yy - c), m_inv(yy))


def bent_inverse_truth(y: float) -> mp.mpf:
    with mp.workdps(DPS):
        yy = mp.mpf(y)
        lo, hi = sorted([2 * yy / 3, 2 * yy])  # f′ ∈ (½, 3⁄2) and f(0) = 0
        return bisect(bent_mp, y, lo, hi)


def ulp_error(got: float, truth: mp.mpf) -> float:
    """|got − truth| in units of the float64 spacing at truth."""
    with mp.workdps(DPS):
        return float(abs(mp.mpf(got) - truth) / np.spacing(abs(float(truth))))


def wide_y(rng: np.random.Generator, count: int) -> np.ndarray:
    """Magnitudes log-uniform over 1e-310 … 1e300, both signs, plus O(1) values."""
    mags = 10.0 ** rng.uniform(-310, 300, count)
    signs = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return np.concatenate([signs * mags, 3 * rng.standard_normal(count)])


# -- leaky softplus ------------------------------------------------------------------------------
def test_leaky_inverse_within_few_ulp_of_mpmath():
    rng = np.random.default_rng(20240601)
    f = LeakySoftplus(ALPHA)
    c = float((1 - mp.mpf(ALPHA)) * mp.log(2))
    special = [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e300, -1e300, 1.5e307, c]
    special += list(np.nextafter(c, np.inf) + np.arange(-4, 5) * np.spacing(c))
    special += [float(f(np.array(v))) for v in (-0.75, 3.0, -1.62, 1e-8, -1e-8)]
    ys = np.concatenate([wide_y(rng, 120), special])
    xs = f.inverse(ys)
    errors = [
        ulp_error(x, leaky_inverse_truth(y)) for y, x in zip(ys.tolist(), xs.tolist(), strict=True)
    ]
    assert max(errors) <= MAX_ULP, (max(errors), ys[int(np.argmax(errors))])


def test_leaky_inverse_other_alpha():
    rng = np.random.default_rng(7)
    for alpha in (0.01, 0.5, 0.9):
        f = LeakySoftplus(alpha)
        ys = wide_y(rng, 20)
        xs = f.inverse(ys)
        errors = [ulp_error(x, leaky_inverse_truth(y, alpha)) for y, x in zip(ys, xs, strict=True)]
        assert max(errors) <= MAX_ULP, (alpha, max(errors))


def test_leaky_forward_matches_mpmath():
    rng = np.random.default_rng(3)
    xs = np.concatenate([wide_y(rng, 60), [0.0, -1.62, 700.0, -750.0]])
    ys = LeakySoftplus(ALPHA)(xs)
    with mp.workdps(DPS):
        a = mp.mpf(ALPHA)
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            xx = mp.mpf(x)
            truth = leaky_mp(xx, a)
            # Error of a sum of two rounded terms: a few ε times the terms' magnitudes.
            terms = abs(a * xx) + (1 - a) * (
                xx + mp.log1p(mp.exp(-xx)) if x > 0 else mp.log1p(mp.exp(xx))
            )
            assert abs(mp.mpf(y) - truth) <= 4 * EPS * terms + 1e-320, x


def test_leaky_log_derivative_matches_mpmath_derivative():
    rng = np.random.default_rng(4)
    f = LeakySoftplus(ALPHA)
    xs = np.concatenate([rng.uniform(-30, 30, 60), [0.0, 1e-10, -1e-10, 5.0, -5.0]])
    ld = f.log_derivative(xs)
    with mp.workdps(DPS):
        a = mp.mpf(ALPHA)
        for x, got in zip(xs.tolist(), ld.tolist(), strict=True):
            truth = mp.log(mp.diff(lambda t: leaky_mp(t, a), mp.mpf(x)))
            assert ulp_error(got, truth) <= MAX_ULP, x
    # Far tails: log f′ → log α and f′ − 1 ~ −(1 − α)e^{−x}; compare with the closed form in mp.
    far = np.array([-800.0, -60.0, 60.0, 700.0, 1e300, -1e300])
    with mp.workdps(DPS):
        a = mp.mpf(ALPHA)
        for x, got in zip(far.tolist(), f.log_derivative(far).tolist(), strict=True):
            xx = mp.mpf(x)
            # f′ = 1 − (1 − α)σ(−x); log1p keeps the tiny 1 − f′ for x ≫ 0 at 50 digits.
            truth = mp.log1p(-(1 - a) / (1 + mp.exp(xx)))
            assert ulp_error(got, truth) <= MAX_ULP, x


def test_leaky_round_trip_and_limits():
    rng = np.random.default_rng(5)
    f = LeakySoftplus(ALPHA)
    x = np.concatenate([rng.standard_normal(1000) * 10, 10.0 ** rng.uniform(-300, 300, 100)])
    back = f.inverse(f(x))
    # Forward error δy ≲ 2ε(|αx| + (1 − α)softplus(x)) is mapped by 1/f′; the inverse adds a
    # few ulp.
    sp = np.logaddexp(0.0, x)
    fprime = ALPHA + (1 - ALPHA) / (1 + np.exp(-np.clip(x, -700, 700)))
    bound = 8 * EPS * (np.abs(x) + (np.abs(ALPHA * x) + (1 - ALPHA) * sp) / fprime)
    assert np.all(np.abs(back - x) <= bound)
    # Overflowing roots give −inf, infinities map to infinities, never NaN (and no warnings).
    out = f.inverse(np.array([-1.7e308, -np.inf, np.inf]))
    assert out.tolist() == [-np.inf, -np.inf, np.inf]
    assert np.all(np.isfinite(f.log_derivative(np.array([-np.inf, np.inf]))))


def test_leaky_shapes_and_dtypes():
    f = LeakySoftplus()
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 12
    y = f(x)
    assert y.shape == x.shape and y.dtype == np.float64
    assert f.inverse(y).shape == x.shape
    assert f.inverse(np.empty((0, 3))).shape == (0, 3)
    assert f.log_derivative(x).shape == x.shape


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, math.nan, "a"])
def test_leaky_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        LeakySoftplus(alpha)


def test_activations_reject_bad_inputs():
    for act in (LeakySoftplus(), BentIdentity()):
        with pytest.raises(ValueError, match="y"):
            act.inverse(np.array([1.0, np.nan]))
        with pytest.raises(ValueError, match="x"):
            act(np.array([1.0 + 1j]))
        with pytest.raises(ValueError, match="x"):
            act.log_derivative(np.array(["a"]))


# -- bent identity -------------------------------------------------------------------------------
def test_bent_inverse_within_few_ulp_of_mpmath():
    rng = np.random.default_rng(11)
    special = [0.0, -0.0, 5e-324, -5e-324, -0.5, -0.5 + 1e-16, -1.0, 1e-300, -1e300, 1e300]
    special += [2.0**60, -(2.0**60), 2.0**61, -(2.0**61), 1.7e308, -8e307]
    ys = np.concatenate([wide_y(rng, 120), rng.uniform(-1, 0.2, 40), special])
    xs = BentIdentity().inverse(ys)
    errors = [
        ulp_error(x, bent_inverse_truth(y)) for y, x in zip(ys.tolist(), xs.tolist(), strict=True)
    ]
    assert max(errors) <= MAX_ULP, (max(errors), ys[int(np.argmax(errors))])


def test_bent_forward_and_log_derivative_match_mpmath():
    rng = np.random.default_rng(12)
    f = BentIdentity()
    xs = np.concatenate([wide_y(rng, 60), [0.0, 2.0**61, -(2.0**61)]])
    with mp.workdps(DPS):
        for x, y in zip(xs.tolist(), f(xs).tolist(), strict=True):
            # |f(x)| ≥ |x|/2, and the two rounded terms are at most |x| each: a few ulp of y.
            assert abs(mp.mpf(y) - bent_mp(mp.mpf(x))) <= 8 * EPS * abs(mp.mpf(x)), x
    xs = np.concatenate([rng.uniform(-50, 50, 60), [0.0, 1e-12, -1e-12]])
    with mp.workdps(DPS):
        for x, got in zip(xs.tolist(), f.log_derivative(xs).tolist(), strict=True):
            truth = mp.log(mp.diff(bent_mp, mp.mpf(x)))
            assert ulp_error(got, truth) <= MAX_ULP, x
    far = f.log_derivative(np.array([-1e300, 1e300, -np.inf, np.inf]))
    np.testing.assert_allclose(far, np.log([0.5, 1.5, 0.5, 1.5]), rtol=4 * EPS)


def test_bent_round_trip():
    rng = np.random.default_rng(13)
    f = BentIdentity()
    x = np.concatenate([rng.standard_normal(1000) * 10, 10.0 ** rng.uniform(-300, 300, 100)])
    x = np.concatenate([x, -x])
    # Forward error ≲ 4ε|x| (terms ≤ |x|), mapped by 1/f′ ≤ 2, plus the inverse's few ulp.
    assert np.all(np.abs(f.inverse(f(x)) - x) <= 16 * EPS * np.abs(x))
    assert f.inverse(np.array([np.inf, -np.inf])).tolist() == [np.inf, -np.inf]
