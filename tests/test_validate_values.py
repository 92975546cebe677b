"""Value checks on wide inputs: the batch strategy, per-coordinate bounds, non-finite outputs,
rows that cannot be judged, and the broken layers of issue 18 that only wide inputs catch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from validate_broken import (
    BROKEN,
    VALUE_TWINS,
    UlpErrorAffine,
    UnstableSoftplusInverse,
    all_nan,
    asinh_wrong_branch,
    clipped_sigmoid_logdet,
    elementwise_affine,
    ulp_error_affine,
    unstable_softplus_inverse,
)

from invlin.testing import THRESHOLD
from invlin.testing.strategies import (
    LARGE_INPUT,
    WIDE_MIXES,
    huge_input,
    wide_batch,
    wide_inputs,
)
from invlin.validate.adapters import adapt
from invlin.validate.checks import CHECKS, CheckContext
from invlin.validate.checks.truth import (
    diagonal,
    input_scales,
    judge_values,
    local,
)
from invlin.validate.runner import validate
from invlin.validate.search import Probe, search

FEATURES = 3
RUN = {"features": FEATURES, "profile": "dev", "max_examples": 10}
DTYPES = ("float64", "float32")
VALUE_CHECKS = ("round_trip", "logdet_autograd", "logdet_consistency")


# -- the strategy ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_wide_inputs_are_exact_in_the_dtype_and_strictly_inside_the_domain(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    domain = data.draw(
        st.sampled_from([None, (0.0, 1.0), (-1.0, 1.0), (0.0, math.inf), (-math.inf, 2.0)])
    )
    x = data.draw(wide_inputs(FEATURES, dtype=dtype, domain=domain, max_rows=40))
    assert x.ndim == 2 and x.shape[1] == FEATURES and 1 <= x.shape[0] <= 40
    assert np.array_equal(x.astype(dtype).astype(np.float64), x)
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= huge_input(dtype)
    if domain is not None:
        assert np.all(x > domain[0]) and np.all(x < domain[1])


def test_a_mixed_batch_meets_every_regime():
    for dtype in DTYPES:
        x = wide_batch(4, seed=3, mix="mixed", rows=128, dtype=dtype)
        mags = np.abs(x)
        assert (mags == 0).any()  # ordinary zeros
        assert ((mags >= 2.0**-8) & (mags <= 8)).any()
        assert ((mags > 8) & (mags <= LARGE_INPUT)).any()
        assert (mags > LARGE_INPUT).any()  # beyond 1e4, up to the safe range
        extreme = ((mags > 8).sum(axis=1) == 1) & ((mags <= 8).sum(axis=1) == 3)
        assert extreme.any()  # one extreme coordinate among ordinary ones
    ends = wide_batch(2, seed=1, mix="ends", rows=128, domain=(0.0, 1.0))
    assert ends.min() < 1e-12 and 1 - ends.max() < 1e-12  # within a few ulps of the ends


def test_fewer_rows_give_a_prefix_and_the_seed_decides_the_batch():
    a = wide_batch(3, seed=7, mix="mixed", rows=100)
    assert np.array_equal(wide_batch(3, seed=7, mix="mixed", rows=10), a[:10])
    assert np.array_equal(wide_batch(3, seed=7, mix="mixed", rows=100), a)
    assert not np.array_equal(wide_batch(3, seed=8, mix="mixed", rows=100), a)
    assert np.abs(wide_batch(3, seed=0, mix="ordinary", rows=64)).max() <= 8


def test_codomain_end_rows_are_preimages_of_points_next_to_the_codomain_end():
    x = wide_batch(
        2, seed=2, mix="ends", rows=64, codomain=(-1.0, 1.0), preimage=lambda y: np.arctanh(y)
    )
    y = np.tanh(x)
    assert (1 - np.abs(y)).min() < 1e-12  # images within a few ulps of ±1
    assert np.all(np.isfinite(x))
    with pytest.raises(ValueError, match="mix"):
        wide_batch(2, mix="nope")


def test_a_failing_wide_search_reports_one_row():
    # Fails once a row holds an entry beyond 1e3: the report is a single such row.
    def probe(x):
        big = np.abs(x).max(axis=1) > 1e3
        j = int(np.argmax(big))
        return Probe(
            ok=not big.any(), ratio=float(big.sum()), allowed=0.0, example={"x": x, "row": j}
        )

    out = search(wide_inputs(2), probe, profile="dev", max_examples=30, describe=lambda x: {"x": x})
    assert out.failure is not None
    x = np.asarray(out.failure.example["x"])
    assert x.shape == (1, 2) and np.abs(x).max() > 1e3


# -- per-coordinate bounds ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_an_error_in_one_coordinate_fails_per_coordinate_but_not_over_the_row(dtype):
    """The 370-ulp inverse of coordinate 0: ≈ 185 per coordinate, below 30 over the row."""
    torch_dtype = getattr(torch, dtype)
    layer = adapt(UlpErrorAffine(FEATURES), FEATURES)
    ref = adapt(UlpErrorAffine(FEATURES).double(), FEATURES)
    layer.to(dtype=torch_dtype)
    x = np.array([[1.5, -2.0, 0.75], [-0.5, 3.0, 6.0], [4.0, 0.25, -1.0]])
    y, _ = layer.forward(torch.tensor(x, dtype=torch_dtype))
    xb, _ = layer.inverse(y.detach().clone())
    loc = local(ref, x)
    rows = np.ones(3, dtype=bool)
    assert diagonal(loc, rows)
    xb64 = xb.detach().double().numpy()
    per = judge_values(xb64, x, input_scales(loc, x, loc.y, dtype, componentwise=True), rows, dtype)
    row = judge_values(
        xb64, x, input_scales(loc, x, loc.y, dtype, componentwise=False), rows, dtype
    )
    assert per.value > 3 * THRESHOLD and per.coord == 0
    assert row.value < THRESHOLD  # what the normwise bound let through


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_unstable_softplus_inverse_fails_per_coordinate_on_finite_values(dtype):
    """x = −9.5 (float32: y = 7.5e-5, eʸ − 1 keeps 10 of 24 bits) with 8 and 2 beside it:
    the row-wise κ₁ ≈ σ(8)/σ(−9.5) ≈ 1.3e4 hid the loss; per coordinate it is thousands of
    units."""
    torch_dtype = getattr(torch, dtype)
    layer = adapt(UnstableSoftplusInverse(), FEATURES)
    ref = adapt(UnstableSoftplusInverse().double(), FEATURES)
    layer.to(dtype=torch_dtype)
    x = np.array([[-9.5, 8.0, 2.0]])
    y, _ = layer.forward(torch.tensor(x, dtype=torch_dtype))
    xb, _ = layer.inverse(y.detach().clone())
    assert torch.isfinite(xb).all()
    loc = local(ref, x)
    rows = np.ones(1, dtype=bool)
    xb64 = xb.detach().double().numpy()
    per = judge_values(xb64, x, input_scales(loc, x, loc.y, dtype, componentwise=True), rows, dtype)
    row = judge_values(
        xb64, x, input_scales(loc, x, loc.y, dtype, componentwise=False), rows, dtype
    )
    assert per.value > THRESHOLD and per.coord == 0
    assert row.value < per.value / 100


def test_messages_say_which_bound_was_used():
    report = validate(elementwise_affine, checks=["round_trip"], dtypes=("float64",), **RUN)
    assert "diagonal J" in report.results[0].message
    from validate_broken import correct_linear

    report = validate(correct_linear, checks=["round_trip"], dtypes=("float64",), **RUN)
    assert "normwise" in report.results[0].message


# -- the broken layers and their twins ------------------------------------------------------------
@pytest.mark.parametrize("twin", VALUE_TWINS, ids=lambda f: f.__name__)
def test_the_correct_twins_pass_every_check(twin):
    report = validate(twin, **RUN)
    bad = [
        (r.dtype, r.check, r.status, r.message)
        for r in report.results
        if r.status not in ("pass", "skip")
    ]
    assert not bad
    for r in report.results:
        if r.check in VALUE_CHECKS:
            assert r.status == "pass" and r.cases > 50, (r.dtype, r.check, r.message)


@pytest.mark.parametrize(
    "broken",
    [asinh_wrong_branch, clipped_sigmoid_logdet, unstable_softplus_inverse, ulp_error_affine],
    ids=lambda f: f.__name__,
)
def test_the_wide_input_bugs_fail_their_checks_with_one_row(broken):
    checks = sorted({c for _, cs in BROKEN[broken].values() for c in cs})
    report = validate(broken, checks=checks, **RUN)
    for r in report.results:
        status, expected = BROKEN[broken][r.dtype]
        assert (r.status == status) == (r.check in expected), (r.dtype, r.check, r.message)
        if r.status == "fail":
            x = np.asarray(r.example["x"])
            assert x.shape[0] == 1 and r.example["row"] == 0, r.message
            assert "adapter" in r.repro


def test_the_wrong_branch_is_found_above_the_switch_and_the_clip_above_17():
    r = validate(asinh_wrong_branch, checks=["round_trip"], dtypes=("float64",), **RUN)
    ex = r.results[0].example
    assert np.abs(np.asarray(ex["x"])).max() > math.sinh(3.0)
    r = validate(clipped_sigmoid_logdet, checks=["logdet_autograd"], dtypes=("float32",), **RUN)
    ex = r.results[0].example
    assert np.abs(np.asarray(ex["x"])).max() > 17 and abs(ex["ladj"] - ex["slogdet"]) > 0.1


@pytest.mark.parametrize("check", VALUE_CHECKS)
def test_a_layer_returning_nan_everywhere_fails_each_value_check_alone(check):
    report = validate(all_nan, checks=[check], **RUN)
    for r in report.results:
        assert r.status == "fail", (r.dtype, r.message)
        assert "nan" in r.message and "row 0" in r.message
        assert np.asarray(r.example["x"]).shape == (1, FEATURES)


# -- rows that cannot be judged -------------------------------------------------------------------
class _DetachedIdentity(torch.nn.Module):
    """y = x in value, but autograd sees y = 0·x + const: the float64 Jacobian is singular on
    every row, so no value check can judge a row."""

    def forward(self, x):
        return x * 0 + x.detach(), (x * 0).sum(-1)

    def inverse(self, y):
        return y * 0 + y.detach(), (y * 0).sum(-1)


def test_rows_with_a_singular_jacobian_are_counted_and_judge_nothing():
    report = validate(lambda features: _DetachedIdentity(), checks=list(VALUE_CHECKS), **RUN)
    for r in report.results:
        assert r.status == "insufficient", (r.check, r.dtype, r.status, r.message)
        assert r.cases == 0


class _QuarticQuotient(torch.nn.Module):
    """y = x·(x⁴ + 1)/(x⁴ + 1): the identity in exact arithmetic, NaN once x⁴ overflows —
    |x| > 4.3e9 in float32, 1.3e77 in float64."""

    def _map(self, x):
        q = x * x * x * x + 1
        return x * q / q

    def forward(self, x):
        return self._map(x), torch.zeros(x.shape[:-1], dtype=x.dtype)

    def inverse(self, y):
        return self._map(y), torch.zeros(y.shape[:-1], dtype=y.dtype)


def test_beyond_1e4_the_float64_copy_draws_the_line():
    """float64: rows where the float64 copy itself overflows are not judged (it passes);
    float32: it overflows on rows its float64 copy computes, and fails naming the output."""

    def make():
        return adapt(_QuarticQuotient(), FEATURES)

    by = {
        d: CHECKS["round_trip"](
            make, CheckContext(dtype=d, profile="dev", max_examples=10, features=FEATURES)
        )
        for d in DTYPES
    }
    assert by["float64"].status == "pass", by["float64"].message
    assert by["float32"].status == "fail"
    assert "forward y is nan" in by["float32"].message
    x = np.asarray(by["float32"].example["x"])
    assert 4e9 < np.abs(x).max() <= huge_input("float32")


def test_every_value_check_is_registered():
    assert set(VALUE_CHECKS) | {"logdet_oracle", "edges"} <= set(CHECKS)
    assert set(WIDE_MIXES) >= {"ordinary", "mixed", "large", "extreme", "ends"}
