"""Regression tests for the defects the property suites (properties/) found in the layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invlin.nn.lu import LULinear
from invlin.nn.p4 import P4InvLinear
from invlin.reference.lu import LULayer
from invlin.reference.rank_one import TrackedMatrix
from invlin.testing import THRESHOLD, inverse_ratio
from invlin.testing.cases import conditioned_matrix


def _ill(kappa=1e6, n=8, seed=0):
    return conditioned_matrix(n, kappa, 1, np.random.default_rng(seed), shape="one_small").a


def test_left_correction_keeps_the_lapack_ratio_of_an_ill_conditioned_inverse():
    # One Newton–Schulz step on the right residual I − AX leaves I − XA (what the LAPACK ratio,
    # the drift probes and inverse∘forward see) at ≈ 1e-3..1e-2·κ·nε: at κ = 1e6 a ratio > 30.
    a = _ill()
    right, left = TrackedMatrix(a), TrackedMatrix(a)
    assert inverse_ratio(a, right.inverse).value < THRESHOLD
    right.correct(order=2, side="right")
    left.correct(order=2, side="left")
    assert inverse_ratio(a, right.inverse).value > THRESHOLD  # the finding, kept visible
    assert inverse_ratio(a, left.inverse).value < THRESHOLD
    with pytest.raises(ValueError, match="side"):
        left.correct(side="both")


def test_layer_correction_acts_on_the_residual_its_monitor_measures():
    a = torch.from_numpy(_ill())
    layer = P4InvLinear(8, init=a, dtype=torch.float64)
    assert layer.correct()
    assert inverse_ratio(layer.weight, layer.weight_inverse).value < THRESHOLD
    assert layer.probe().ratio < 1.0  # the left residual is at the rounding floor


def _tiny_pivot_factors():
    # Shrunk from properties/test_lu_invertibility.py: |u_33| = 1e-307 overflows the solve and
    # the next rows form inf − inf = NaN.
    rng = np.random.default_rng(3)
    n = 6
    lower = np.tril(0.2 * rng.standard_normal((n, n)), -1) + np.eye(n)
    upper = np.triu(0.2 * rng.standard_normal((n, n)), 1) + np.diag(
        [1.0, -1.0, 1e-3, 1e-307, 1.0, 1.0]
    )
    return lower, upper


def test_reference_lu_inverse_reports_an_overflowing_pivot_instead_of_nan():
    lower, upper = _tiny_pivot_factors()
    layer = LULayer(lower, upper)
    y = np.random.default_rng(0).standard_normal((2, 6))
    assert np.isfinite(layer.logabsdet())
    with pytest.raises(ValueError, match="index 3"):
        layer.inverse(y)


def test_torch_lu_inverse_reports_an_overflowing_pivot_instead_of_nan():
    lower, upper = _tiny_pivot_factors()
    layer = LULinear(6, dtype=torch.float64)
    with torch.no_grad():
        layer.lower_entries.copy_(torch.from_numpy(lower))
        layer.upper_entries.copy_(torch.from_numpy(upper))
        layer.upper_diag.copy_(torch.from_numpy(np.diagonal(upper).copy()))
    y = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 6)))
    with pytest.raises(ValueError, match=r"upper_diag\[3\]"):
        layer.inverse(y)
