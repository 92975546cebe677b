"""The tolerance engine's ratios and the drift estimators, as equalities with hand-computed values.

The engine's own tests judge ratios by inequalities (a good inverse below 30, a wrong one above
1e3), which a ratio missing its factor n or κ still satisfies (issue 21, item 6). Here every
input is a power of two, so each residual, norm and ratio is exact and known by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from invlin.reference.estimators import estimate_drift, hutchinson_logdet_drift, probe_residual
from invlin.testing import (
    EPS,
    allowed_ratio,
    forward_ratio,
    inverse_ratio,
    kappa1,
    logdet_ratio,
    residual_ratio,
)

D = 2.0**-40  # a perturbation that every value below holds exactly
E64, E32 = 2.0**-53, 2.0**-24  # unit roundoffs


def test_unit_roundoffs():
    assert (EPS["float64"], EPS["float32"]) == (E64, E32)


def test_allowed_ratio_values():
    assert [allowed_ratio(k) for k in (0, 1, 2)] == [30.0, 60.0, 90.0]


def test_inverse_ratio_is_residual_over_n_norms_eps():
    a = np.diag([2.0, 4.0])
    x = np.diag([0.5, 0.25 * (1 + D)])  # (I − XA)₂₂ = −D exactly
    r = inverse_ratio(a, x)
    # ‖I − XA‖₁ = D, n = 2, ‖A‖₁ = 4, ‖X‖₁ = ½: D / (2·4·½·2⁻⁵³) = 2¹³/4
    assert r.abs_error == D
    assert r.scale == 2 * 4 * 0.5 * E64
    assert r.value == 2.0**13 / 4
    assert r.worst_index == (1, 1) and r.worst_value == -D
    # ε is X's: the same residual with X held in float32 is judged on 2⁻²⁴
    x32 = np.diag([0.5, 0.25]).astype(np.float32)
    assert inverse_ratio(a, x32).value == 0.0
    assert inverse_ratio(a, x.astype(np.float32), dtype="float32").scale == 4 * E32


def test_residual_ratio_is_residual_over_norms_eps():
    a = np.diag([2.0, 4.0])
    x = np.array([[1.0, 1.0]])
    b = np.array([[2.0, 4.0 + 2**-40 * 4]])  # b − Ax = (0, 4D)
    r = residual_ratio(a, x, b)
    # ‖b − Ax‖₁ / (‖A‖₁ ‖x‖₁ ε) = 4D / (4·2·2⁻⁵³) = 2¹³/2
    assert r.value == 2.0**13 / 2
    assert r.scale == 4 * 2 * E64


def test_forward_ratio_is_error_over_norm_kappa_eps():
    out = np.array([[1.0, 2.0], [1.0, 2.0 + 4 * D]])
    expected = np.array([[1.0, 2.0], [1.0, 2.0]])
    r = forward_ratio(out, expected, kappa=8.0, dtype="float64")
    # row 1: ‖x − x*‖₁ / (‖x*‖₁ κ ε) = 4D / (3·8·2⁻⁵³) = 2¹³/6
    assert r.value == pytest.approx(2.0**13 / 6, rel=1e-15)
    assert r.info["row"] == 1 and r.worst_index == (1, 1)
    assert r.scale == 3 * 8 * E64


def test_logdet_ratio_is_error_over_n_kappa_eps():
    r = logdet_ratio(1.0 + 8 * D, 1.0, n=4, kappa=2.0, dtype="float64")
    # |ℓ − ℓ*| / (n κ ε) = 8D / (4·2·2⁻⁵³) = 2¹³
    assert r.value == 2.0**13
    assert r.scale == 8 * E64
    assert logdet_ratio(1.0 + 8 * D, 1.0, n=4, kappa=2.0, dtype="float32").value == 8 * D / (
        8 * E32
    )


def test_a_ratio_equal_to_the_allowance_passes():
    r = logdet_ratio(1.0 + 8 * D, 1.0, n=4, kappa=2.0, dtype="float64")
    assert r.passed(2.0**13)
    assert not r.passed(math.nextafter(2.0**13, 0.0))


def test_signed_infinities_match_only_themselves():
    for inf in (math.inf, -math.inf):
        assert logdet_ratio(inf, inf, n=2, kappa=1.0, dtype="float64").value == 0.0
        assert logdet_ratio(inf, -inf, n=2, kappa=1.0, dtype="float64").value == math.inf


def test_kappa1_is_the_one_norm_product():
    a = np.array([[1.0, 1.0], [0.0, 2.0]])
    x = np.array([[1.0, -0.5], [0.0, 0.5]])  # A⁻¹: ‖X‖₁ = 1 (but ‖X‖∞ = 1.5)
    assert kappa1(a, x) == 3.0
    assert kappa1(a) == pytest.approx(3.0, rel=1e-15)


# -- the drift estimators: X = (1 + δ)A⁻¹ has XA − I = δI, so every reading is known --------
def _scaled_inverse(n: int, delta: float, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    a = np.diag(2.0 ** np.arange(n, dtype=np.float64))
    return a, (np.diag(2.0 ** -np.arange(n, dtype=np.float64)) * (1 + delta)).astype(dtype)


def test_probe_residual_is_the_root_mean_square():
    a, x = _scaled_inverse(8, 2.0**-20)
    z = np.random.default_rng(5).standard_normal((8, 4))
    want = 2.0**-20 * math.sqrt(np.mean(np.sum(z * z, axis=0)))
    assert probe_residual(a, x, probes=4, seed=5) == pytest.approx(want, rel=1e-12)


def test_hutchinson_is_the_mean_over_probes():
    a, x = _scaled_inverse(8, 2.0**-20)
    # zᵀ(δI)z = δ‖z‖² = 8δ for every Rademacher z: the mean is 8δ whatever the draws
    assert hutchinson_logdet_drift(a, x, probes=4, seed=1) == pytest.approx(8 * 2.0**-20, 1e-12)


@pytest.mark.parametrize(("dtype", "e"), [(np.float64, E64), (np.float32, E32)])
def test_estimate_drift_ratio_is_residual_over_n_norms_eps_of_x(dtype, e):
    n = 8
    a, x = _scaled_inverse(n, 2.0**-10, dtype)
    est = estimate_drift(a, x, probes=4, seed=3)
    na, nx = 2.0 ** (n - 1), 1.0 + 2.0**-10  # ‖A‖₁ and ‖X‖₁ (largest column sums)
    assert est.kappa == na * nx
    assert est.ratio == pytest.approx(est.residual / (n * na * nx * e), rel=1e-15)
    z = np.random.default_rng(3).standard_normal((n, 4))  # the estimator's first draw
    assert est.residual == pytest.approx(
        2.0**-10 * math.sqrt(np.mean(np.sum(z * z, axis=0))), rel=1e-6
    )
