"""Tests of the tolerance engine and its assertion helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invlin.testing import (
    EPS,
    ToleranceError,
    allowed_ratio,
    assert_forward,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    eps,
    forward_ratio,
    inverse_ratio,
    kappa1,
    logdet_ratio,
    residual_ratio,
)


def test_eps_is_unit_roundoff_of_each_format():
    # Independent source: NumPy's machine epsilon is twice the unit roundoff.
    assert eps(np.float64) == np.finfo(np.float64).eps / 2
    assert eps("float32") == np.finfo(np.float32).eps / 2
    assert eps(torch.float32) == torch.finfo(torch.float32).eps / 2
    assert eps(torch.bfloat16) == torch.finfo(torch.bfloat16).eps / 2
    assert eps(torch.zeros(2, dtype=torch.float64)) == EPS["float64"]
    with pytest.raises(ValueError, match="dtype"):
        eps("int32")


def test_allowed_ratio_grows_linearly_and_validates():
    assert allowed_ratio() == 30.0
    assert allowed_ratio(99) == 3000.0
    assert allowed_ratio(1, threshold=10) == 20.0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="updates"):
            allowed_ratio(bad)


def test_inverse_ratio_small_for_lapack_inverse_large_for_wrong_one():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20, 20))
    good = inverse_ratio(a, np.linalg.inv(a))
    assert good.value < 30
    wrong = np.linalg.inv(a)
    wrong[3, 7] *= 1 + 1e-6
    bad = inverse_ratio(a, wrong)
    assert bad.value > 1e3
    # The worst residual entry sits in row 3 of I - XA (only row 3 of X was changed).
    assert bad.worst_index[0] == 3


def test_inverse_ratio_uses_dtype_of_x_and_handles_nonfinite():
    a = np.diag([2.0, 4.0])
    x32 = np.diag([0.5, 0.25]).astype(np.float32)
    assert inverse_ratio(a, x32).info["dtype"] == "float32"
    assert inverse_ratio(a, np.array([[np.nan, 0], [0, 1]])).value == math.inf
    with pytest.raises(ValueError, match="x must have the shape"):
        inverse_ratio(a, np.eye(3))


def test_assert_inverse_message_names_worst_element_ratio_threshold_and_reproduces():
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    x = np.linalg.inv(a)
    x[1, 0] += 1e-8
    with pytest.raises(ToleranceError) as info:
        assert_inverse(a, out=x, updates=2)
    msg = str(info.value)
    assert "ratio" in msg and "exceeds allowed 90" in msg
    assert "worst element" in msg and "(1, " in msg
    assert "(2 of 2 columns over)" in msg  # row 1 of I − XA is off in both columns
    diag = np.diag([2.0, 4.0, 8.0])
    x = np.linalg.inv(diag)
    x[2, 2] *= 1 + 1e-9  # only entry (2, 2) of I − XA is off
    with pytest.raises(ToleranceError, match=r"\(1 of 3 columns over\)"):
        assert_inverse(diag, out=x)
    assert "updates=2" in msg
    snippet = msg.split("Reproduce with:\n", 1)[1]
    with pytest.raises(ToleranceError) as again:
        exec(snippet, {})
    assert again.value.ratio.value == info.value.ratio.value
    assert info.value.allowed == 90.0


def test_residual_and_forward_ratios():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 8))
    xs = rng.standard_normal((5, 8))
    b = xs @ a.T
    solved = np.linalg.solve(a, b.T).T
    assert residual_ratio(a, solved, b).value < 30
    kappa = kappa1(a)
    assert forward_ratio(solved, xs, kappa=kappa, dtype="float64").value < 30
    off = xs.copy()
    off[4, 2] += 1e-3
    r = forward_ratio(off, xs, kappa=kappa, dtype="float64")
    assert r.info["row"] == 4 and r.worst_index == (4, 2) and r.value > 1e6
    with pytest.raises(ValueError, match="kappa"):
        forward_ratio(xs, xs, kappa=0.5, dtype="float64")


def test_logdet_ratio_infinities_and_nan():
    assert logdet_ratio(-np.inf, -np.inf, n=3, kappa=1.0, dtype="float64").value == 0.0
    assert logdet_ratio(-np.inf, 1.0, n=3, kappa=1.0, dtype="float64").value == math.inf
    assert logdet_ratio(np.nan, 1.0, n=3, kappa=1.0, dtype="float64").value == math.inf
    r = logdet_ratio([1.0, 1.0 + 1e-10], 1.0, n=2, kappa=10.0, dtype="float64")
    assert r.worst_index == (1,)
    assert r.value == pytest.approx(1e-10 / (2 * 10 * 2.0**-53), rel=1e-5)


def test_assert_logabsdet_and_forward_and_sign():
    assert_logabsdet(out=1.0 + 1e-15, expected=1.0, n=4, kappa=2.0, dtype="float64")
    with pytest.raises(ToleranceError, match="log\\|det\\| check failed"):
        assert_logabsdet(out=1.0 + 1e-6, expected=1.0, n=4, kappa=2.0, dtype="float64")
    with pytest.raises(ToleranceError, match="forward-error check failed"):
        assert_forward(out=[[1.0, 2.0]], expected=[[1.0, 2.1]], kappa=1.0, dtype="float32")
    assert_sign(out=[1, -1, 1], expected=[1, -1, 1])
    with pytest.raises(ToleranceError, match="1 of 3 signs differ"):
        assert_sign(out=[1, -1, 1], expected=[1, 1, 1])
