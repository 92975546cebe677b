"""Tests of the NumPy reference TrackedMatrix (Sherman–Morrison + determinant lemma)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from invlin.oracle import ExactMatrix, evaluate
from invlin.reference.rank_one import Guard, TrackedMatrix, UpdateRefused
from invlin.testing import (
    assert_forward,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    inverse_ratio,
)


def _orthogonal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _update_with_c(t: TrackedMatrix, c: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """u, v with 1 + vᵀA⁻¹u ≈ c: u = A w with vᵀw = c − 1 (A⁻¹u = w up to rounding)."""
    v = rng.standard_normal(t.n)
    w = rng.standard_normal(t.n)
    w *= (c - 1.0) / (v @ w)
    return (t.a @ w).astype(t.dtype), v.astype(t.dtype)


def _same_state(s1, s2) -> bool:
    a1, x1, sg1, ld1 = s1
    a2, x2, sg2, ld2 = s2
    return (
        a1.tobytes() == a2.tobytes()
        and x1.tobytes() == x2.tobytes()
        and sg1 == sg2
        and np.asarray(ld1).tobytes() == np.asarray(ld2).tobytes()
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tracking_matches_oracle_after_hundreds_of_updates(dtype):
    rng = np.random.default_rng(0)
    n, k = 16, 400
    a0 = _orthogonal(n, rng)
    t = TrackedMatrix(a0, dtype=dtype, guard=Guard.off())
    exact = ExactMatrix.from_float(t.a)
    for _ in range(k):
        u = (rng.standard_normal(n) * 0.05 / math.sqrt(n)).astype(dtype)
        v = rng.standard_normal(n).astype(dtype)
        t.update(u, v)
        exact.apply(u, v)
    truth = evaluate(exact)
    a_true = exact.to_float()
    assert_inverse(a_true, out=t.inverse, dtype=dtype, updates=k)
    assert_forward(out=t.inverse, expected=truth.inverse, kappa=truth.kappa, dtype=dtype, updates=k)
    assert_logabsdet(
        out=t.logabsdet, expected=truth.logabsdet, n=n, kappa=truth.kappa, dtype=dtype, updates=k
    )
    assert_sign(out=t.sign, expected=truth.sign)
    assert t.updates == k and t.refused == 0


def test_sign_flips_on_negative_c_and_matches_oracle():
    rng = np.random.default_rng(1)
    n = 8
    t = TrackedMatrix(_orthogonal(n, rng), guard=Guard.off())
    exact = ExactMatrix.from_float(t.a)
    signs = [t.sign]
    for target in [-0.5, 2.0, -3.0, -0.8, 0.7, -1.5]:
        u, v = _update_with_c(t, target, rng)
        before = t.logabsdet
        res = t.update(u, v)
        exact.apply(u, v)
        assert res.applied and res.c == pytest.approx(target, rel=1e-9)
        assert t.logabsdet - before == pytest.approx(math.log(abs(res.c)), abs=1e-12)
        signs.append(t.sign)
        truth = evaluate(exact)
        assert t.sign == truth.sign
        assert t.sign == (signs[-2] if target > 0 else -signs[-2])


def test_refused_update_leaves_state_bit_identical():
    rng = np.random.default_rng(2)
    n = 6
    t = TrackedMatrix(_orthogonal(n, rng))  # default guard: log|c| must exceed -6
    for _ in range(3):
        t.update(*_update_with_c(t, 1.3, rng))
    before = t.state()
    u, v = _update_with_c(t, math.exp(-7.0), rng)
    with pytest.raises(UpdateRefused, match="log\\|c\\|") as info:
        t.update(u, v)
    assert info.value.c == pytest.approx(math.exp(-7.0), rel=1e-6)
    assert _same_state(before, t.state())
    res = t.update(u, v, on_refuse="skip")
    assert not res.applied and "min_log_abs_c" in res.reason
    assert _same_state(before, t.state())
    assert t.refused == 2 and t.updates == 3


def test_p4_guard_bounds_on_logdet():
    t = TrackedMatrix(np.eye(3), guard=Guard.p4())
    e = np.array([1.0, 0.0, 0.0])
    # c = 1 + u_0 = e^16: new log|det| = 16 > 15.5 -> refused
    res = t.update(e * (math.exp(16.0) - 1), e, on_refuse="skip")
    assert not res.applied and "max_logabsdet" in res.reason
    # c = e^-3: log|c| = -3 > -6 allowed, but log|det| = -3 < -2.5 -> refused
    res = t.update(e * (math.exp(-3.0) - 1), e, on_refuse="skip")
    assert not res.applied and "min_logabsdet" in res.reason
    assert t.update(e * (math.exp(-2.0) - 1), e).applied


def test_singular_and_nonfinite_updates_always_refused():
    t = TrackedMatrix(np.eye(3), guard=Guard.off())
    before = t.state()
    e = np.array([1.0, 0.0, 0.0])
    res = t.update(-e, e, on_refuse="skip")  # c = 0 exactly
    assert not res.applied and res.c == 0.0 and "zero" in res.reason
    res = t.update(np.full(3, 1e200), np.full(3, 1e200), on_refuse="skip")  # overflow
    assert not res.applied
    with pytest.raises(ValueError, match="u must be finite"):
        t.update(np.array([np.nan, 0, 0]), e)
    with pytest.raises(ValueError, match=r"v must have shape \(3,\)"):
        t.update(e, np.ones(4))
    assert _same_state(before, t.state())


@pytest.mark.parametrize(
    ("a", "match"),
    [
        (np.ones((2, 3)), "a must be square"),
        (np.ones((2, 2, 2)), "a must be a 2-D matrix"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "a must be finite"),
        (np.array([[1.0, 2.0], [2.0, 4.0]]), "a must be invertible"),
        (np.zeros((0, 0)), "non-empty"),
    ],
)
def test_bad_starting_matrix(a, match):
    with pytest.raises(ValueError, match=match):
        TrackedMatrix(a)


def test_perturbed_map_matches_explicit_matrix_and_merge():
    rng = np.random.default_rng(3)
    n = 7
    t = TrackedMatrix(rng.standard_normal((n, n)) + 3 * np.eye(n))
    u, v, b = rng.standard_normal(n) * 0.3, rng.standard_normal(n), rng.standard_normal(n)
    x = rng.standard_normal((4, 5, n))
    m = t.a + np.outer(u, v)
    y, ld = t.perturbed_forward(x, u, v, b)
    assert y.shape == x.shape and ld.shape == (4, 5)
    kappa = np.linalg.cond(m, 1)
    assert_forward(out=y, expected=x @ m.T + b, kappa=kappa, dtype="float64")
    sign, logdet = np.linalg.slogdet(m)
    assert_logabsdet(out=ld, expected=logdet, n=n, kappa=kappa, dtype="float64")
    assert t.perturbed_logabsdet(u, v)[0] == sign
    xr, ldi = t.perturbed_inverse(y, u, v, b)
    assert_forward(out=xr, expected=x, kappa=kappa, dtype="float64")
    assert np.array_equal(ldi, -ld)
    # Merging gives the same log|det| (bit for bit: the same lemma) and the same map.
    t.update(u, v)
    assert t.logabsdet == ld.flat[0] and t.sign == sign
    assert_inverse(m, out=t.inverse, updates=1)


def test_perturbed_inverse_refuses_singular_perturbation():
    t = TrackedMatrix(np.eye(2))
    e = np.array([1.0, 0.0])
    with pytest.raises(ValueError, match="singular"):
        t.perturbed_inverse(np.ones(2), -e, e)
    assert t.perturbed_logabsdet(-e, e) == (0, -math.inf)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 2\)"):
        t.perturbed_forward(np.ones(3), e, e)


def _drifted(rng, n=12, size=1e-6):
    a = _orthogonal(n, rng) @ np.diag(np.linspace(1, 10, n))
    t = TrackedMatrix(a)
    t._inv = t._inv + size * rng.standard_normal((n, n))  # plant drift
    return t


@pytest.mark.parametrize("order", [2, 3, 7])
def test_hyperpower_correction_raises_residual_to_power_order(order):
    rng = np.random.default_rng(4)
    t = _drifted(rng)
    eye = np.eye(t.n)
    r0 = np.linalg.norm(eye - t.inverse @ t.a, 1)  # the default corrects the left residual
    assert t.correct(order=order) == pytest.approx(r0)
    r1 = np.linalg.norm(eye - t.inverse @ t.a, 1)
    # ‖R^p‖ ≤ ‖R‖^p up to the rounding floor of forming the product (a few n·ε·κ).
    floor = 100 * t.n * 2.0**-53 * np.linalg.cond(t.a, 1)
    assert r1 <= r0**order + floor
    # Enough further steps to push R^(order^steps) below the rounding floor: back to a fresh ratio.
    steps = int(np.ceil(np.log(np.log(floor) / np.log(r1)) / np.log(order))) + 1
    t.correct(order=order, steps=max(steps, 1))
    assert inverse_ratio(t.a, t.inverse).value < 30


def test_correction_refused_when_residual_too_large_and_refresh_recovers():
    rng = np.random.default_rng(5)
    t = _drifted(rng, size=1.0)
    before = t.state()
    with pytest.raises(ValueError, match="refresh"):
        t.correct()
    assert _same_state(before, t.state())
    t.refresh()
    assert inverse_ratio(t.a, t.inverse).value < 30
    sign, logdet = np.linalg.slogdet(t.a)
    assert t.sign == sign and t.logabsdet == pytest.approx(logdet, abs=1e-12)


def test_float32_state_stays_float32():
    t = TrackedMatrix(np.eye(4), dtype="float32")
    t.update(np.full(4, 0.1), np.ones(4))
    assert t.a.dtype == np.float32 and t.inverse.dtype == np.float32
    with pytest.raises(ValueError, match="read-only"):
        t.inverse[0, 0] = 1.0
