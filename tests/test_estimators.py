"""Tests of the O(n²) drift estimators against exactly computed residuals."""

from __future__ import annotations

import numpy as np
import pytest

from invlin.reference.estimators import estimate_drift, hutchinson_logdet_drift, probe_residual
from invlin.testing import inverse_ratio


def _planted(n, rng, size):
    a = rng.standard_normal((n, n)) + 4 * np.eye(n)
    e = size * rng.standard_normal((n, n))
    x = (np.eye(n) + e) @ np.linalg.inv(a)  # X A = I + E up to rounding
    return a, x


@pytest.mark.parametrize("n", [4, 32, 96])
def test_probe_residual_within_stated_factor_of_frobenius_norm(n):
    rng = np.random.default_rng(n)
    for size in (1e-12, 1e-6, 1e-2):
        a, x = _planted(n, rng, size)
        true = np.linalg.norm(x @ a - np.eye(n), "fro")
        est = probe_residual(a, x, probes=4, seed=rng)
        assert true / 10 <= est <= 10 * true


def test_probe_residual_of_rank_one_residual():
    # Worst case for probing: the whole residual in one direction.
    rng = np.random.default_rng(7)
    n = 50
    a = np.eye(n)
    w = rng.standard_normal(n)
    x = np.eye(n) + 1e-5 * np.outer(w, w)
    true = np.linalg.norm(x @ a - np.eye(n), "fro")
    ests = [probe_residual(a, x, seed=s) for s in range(200)]
    assert np.mean(np.square(ests)) == pytest.approx(true**2, rel=0.2)  # unbiased in the square
    assert min(ests) >= true / 10


def test_hutchinson_estimates_logdet_of_xa():
    rng = np.random.default_rng(8)
    n = 40
    a = rng.standard_normal((n, n)) + 5 * np.eye(n)
    delta = 1e-4
    x = np.linalg.inv(a) * np.exp(delta / n)  # det(XA) = e^delta exactly in exact arithmetic
    ests = [hutchinson_logdet_drift(a, x, seed=s) for s in range(20)]
    # X A = e^{δ/n} I, so z^T (XA − I) z = n (e^{δ/n} − 1) for every Rademacher z.
    assert np.allclose(ests, n * np.expm1(delta / n), rtol=1e-6)
    _sign, logdet = np.linalg.slogdet(x @ a)
    assert logdet == pytest.approx(delta, rel=1e-6)


def test_estimate_drift_ratio_tracks_lapack_ratio_and_flags_nonfinite():
    rng = np.random.default_rng(9)
    n = 24
    for size in (1e-14, 1e-9, 1e-4):
        a, x = _planted(n, rng, size)
        est = estimate_drift(a, x, seed=rng)
        true = inverse_ratio(a, x).value
        # Stated factor: Frobenius vs 1-norm differ by at most √n, probing by 10.
        assert true / (10 * np.sqrt(n)) <= est.ratio <= 10 * np.sqrt(n) * true
        assert est.kappa == pytest.approx(np.linalg.norm(a, 1) * np.linalg.norm(x, 1))
    x[0, 0] = np.nan
    assert estimate_drift(a, x).ratio == np.inf


def test_estimators_validate_arguments():
    with pytest.raises(ValueError, match="probes"):
        probe_residual(np.eye(2), np.eye(2), probes=0)
    with pytest.raises(ValueError, match="square"):
        hutchinson_logdet_drift(np.eye(2), np.eye(3))
