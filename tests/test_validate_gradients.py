"""The gradients check: autograd against Richardson central differences of a float64 copy."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from validate_broken import (
    BROKEN,
    custom_backward_affine,
    detached_bias,
    no_grad_logdet,
    omitted_term_backward,
    softplus_scale,
)

from invlin.testing import THRESHOLD
from invlin.validate.adapters import adapt
from invlin.validate.checks import CheckContext
from invlin.validate.checks.backprop import STEP, judge
from invlin.validate.checks.base import pair
from invlin.validate.checks.finite_diff import STEPS, richardson, rounding
from invlin.validate.runner import validate

FEATURES = 3
RUN = {"features": FEATURES, "profile": "dev", "max_examples": 10}
DTYPES = ("float64", "float32")


def _stencil(f, h: float = 1e-2) -> tuple[list, list]:
    return [f(h * s) for s in STEPS], [f(-h * s) for s in STEPS]


# -- the reference ---------------------------------------------------------------------------
def test_richardson_is_exact_for_odd_cubics_and_its_error_estimate_covers_smooth_functions():
    h = 1e-2
    est = richardson(*_stencil(lambda t: 2.0 + 0.7 * t + 5.0 * t**2 - 3.0 * t**3, h), h)
    assert est.value == pytest.approx(0.7, abs=1e-12)
    assert est.reliable(1e-16)
    for f, df in (
        (lambda t: np.sin(3 * t + 0.4), 3 * np.cos(0.4)),
        (lambda t: np.exp(2 * t) / (1 + t * t), 2.0),
    ):
        est = richardson(*_stencil(f, h), h)
        assert bool(est.reliable(1e-16))
        assert abs(est.value - df) <= est.truncation + rounding(1e-16, h)
        assert est.truncation < 1e-4  # an estimate of an O(h²) error, not a vacuous bound
    arrays = richardson(*_stencil(lambda t: np.array([t, 2 * t, np.sin(t)]), h), h)
    assert arrays.value == pytest.approx([1.0, 2.0, 1.0], abs=1e-9)
    assert rounding(1e-16, 1e-4) == pytest.approx(6e-12)
    with pytest.raises(ValueError):
        richardson([1.0], [1.0], h)


def test_a_kink_next_to_the_point_makes_central_differences_unreliable():
    """At a kink within h/4 every D(s) is near the mean of the one-sided slopes (0 here,
    while autograd says ±1): the extrapolations disagree beyond their own error estimates.
    A kink between h/2 and h leaves R₂₃ right and only widens its error estimate."""
    h = 1e-2
    near = richardson(*_stencil(lambda t: abs(t - 0.01 * h), h), h)
    assert not near.reliable(1e-16)
    far = richardson(*_stencil(lambda t: abs(t - 0.7 * h), h), h)
    assert far.reliable(1e-16) and abs(far.value - -1.0) <= far.truncation


# -- broken layers and their twins ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "words", "scalar"),
    [
        (no_grad_logdet, "raw_scale gets no gradient", "Σ log|det|"),
        (omitted_term_backward, "log_scale gets a wrong gradient", "Σ w⊙output"),
        (detached_bias, "bias gets no gradient", "Σ w⊙output"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_a_wrong_gradient_fails_in_both_dtypes_naming_the_parameter(factory, words, scalar):
    assert BROKEN[factory] == {d: ("fail", ("gradients",)) for d in DTYPES}
    report = validate(factory, checks=["gradients"], **RUN)
    assert [r.dtype for r in report.results] == list(DTYPES)
    for r in report.results:
        assert r.status == "fail", (r.dtype, r.message)
        assert words in r.message and scalar in r.message, r.message
        assert r.allowed == THRESHOLD and r.ratio > 100 * THRESHOLD  # far past the bound
        ex = r.example
        assert ex["scalar"] == scalar and ex["direction"] == "forward"
        assert abs(ex["autograd"] - ex["reference"]) > 0.05 * abs(ex["reference"])


@pytest.mark.parametrize(
    "factory", [softplus_scale, custom_backward_affine], ids=lambda f: f.__name__
)
def test_the_correct_twins_pass_every_check(factory):
    report = validate(factory, **RUN)
    bad = [
        (r.dtype, r.check, r.status, r.message)
        for r in report.results
        if r.status not in ("pass", "skip")
    ]
    assert not bad
    grads = [r for r in report.results if r.check == "gradients"]
    assert [r.status for r in grads] == ["pass", "pass"]
    assert all(r.cases and 0 <= r.ratio <= THRESHOLD for r in grads)


def test_the_reproduction_snippet_prints_the_disagreement():
    report = validate(omitted_term_backward, checks=["gradients"], dtypes=("float32",), **RUN)
    r = report.results[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(r.repro, "<repro>", "exec"), {})
    lines = dict(line.split(": ", 1) for line in out.getvalue().strip().splitlines())
    assert float(lines["log_scale autograd"]) == pytest.approx(r.example["autograd"], rel=1e-6)
    assert float(lines["central difference"]) == pytest.approx(r.example["reference"], rel=1e-5)


# -- custom backward passes: exact values, chosen gradients ----------------------------------------
class _Scaled(torch.autograd.Function):
    """y = x ⊙ exp(s); ∂/∂s from a chosen rule: "right", "nan", "zero" or "off" (right ·
    (1 + 10⁻³): a small error)."""

    @staticmethod
    def forward(ctx, x, s, rule):  # type: ignore[override]
        ctx.save_for_backward(x, s)
        ctx.rule = rule
        return x * torch.exp(s)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, s = ctx.saved_tensors
        gs = (g * x * torch.exp(s)).reshape(-1, x.shape[-1]).sum(0)
        gs = {
            "right": gs,
            "nan": gs * math.nan,
            "zero": torch.zeros_like(gs),
            "off": gs * (1 + 1e-3),
        }[ctx.rule]
        return g * torch.exp(s), gs, None


def _scaled(rule: str):
    class Scaled(torch.nn.Module):
        def __init__(self, features: int) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(features)
            self.s = torch.nn.Parameter(0.3 * torch.randn(features, generator=g))

        def forward(self, x):
            return _Scaled.apply(x, self.s, rule), self.s.sum().expand(x.shape[:-1])

        def inverse(self, y):
            return y * torch.exp(-self.s), (-self.s.sum()).expand(y.shape[:-1])

    return Scaled


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("right", None),
        ("nan", "s gets a non-finite gradient"),
        ("zero", "s gets an all-zero gradient"),
        ("off", "s gets a wrong gradient"),
    ],
)
def test_non_finite_zero_and_slightly_wrong_gradients_fail(rule, words):
    """A 10⁻³ relative error is caught in float32 too: the allowance is ε-sized, not a
    percentage."""
    report = validate(_scaled(rule), checks=["gradients"], **RUN)
    for r in report.results:
        if words is None:
            assert r.status == "pass", (r.dtype, r.message)
        else:
            assert r.status == "fail" and words in r.message, (r.dtype, r.message)


class _MiddleIdentity(torch.nn.Module):
    """y = x on [−1, 1], y = sign(x)(1 + (|x| − 1)·e^a) outside: at x = 0 autograd reports
    no gradient at all for ``a`` (it is not in the graph) — and rightly so."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.full((features,), 0.3))

    def _map(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, ld = x.clone(), torch.zeros_like(x)
        outside = x.abs() > 1
        if bool(outside.any()):
            scale = torch.exp(a).expand_as(x)[outside]
            out[outside] = torch.sign(x[outside]) * (1 + (x[outside].abs() - 1) * scale)
            ld[outside] = a.expand_as(x)[outside]
        return out, ld.sum(-1)

    def forward(self, x):
        return self._map(x, self.a)

    def inverse(self, y):
        return self._map(y, -self.a)


def test_a_gradient_missing_where_the_reference_is_zero_is_right():
    """Caught: a ``None`` gradient failed at once (nflows' spline with all inputs in the
    identity tails). Now the reference decides: at x = 0 its derivative is exactly zero."""
    ctx = CheckContext(features=FEATURES)
    tested, ref = pair(lambda: adapt(_MiddleIdentity(FEATURES), FEATURES), ctx)
    found = judge(tested, ref, np.zeros((4, FEATURES)), ctx)
    assert len(found) == 4
    assert all(c.reliable and c.reference == 0.0 and c.ratio == 0.0 for c in found)
    assert {c.status for c in found} == {"none"}
    report = validate(_MiddleIdentity, checks=["gradients"], **RUN)
    assert [r.status for r in report.results] == ["pass", "pass"]


class _KinkedScale(torch.nn.Module):
    """y = x·(1 + |θ|) with θ = 10⁻⁹: every step moves θ across its kink at 0, so no central
    difference can be trusted anywhere."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(1e-9, dtype=torch.float64))

    def forward(self, x):
        c = 1 + self.theta.abs()
        return x * c.to(x), (torch.log(c) * x.shape[-1]).to(x).expand(x.shape[:-1])

    def inverse(self, y):
        c = 1 + self.theta.abs()
        return y / c.to(y), (-torch.log(c) * y.shape[-1]).to(y).expand(y.shape[:-1])


def test_nothing_judged_is_insufficient_not_a_pass():
    # perturb=False: the kink sits at the initial θ by design
    report = validate(_KinkedScale, checks=["gradients"], dtypes=("float64",), perturb=False, **RUN)
    r = report.results[0]
    assert r.status == "insufficient" and r.cases == 0, r.message
    assert "unreliable" in r.message


class _Cancelling(torch.nn.Module):
    """Affine coupling whose conditioner sums 512 hidden terms in cancelling pairs (w and
    −(1 − 10⁻⁴)·w): float32 rounding of t, s and their gradients is ~10⁴ε relative. A
    correct layer; the allowance's Σ|θᵢ ∂/∂θᵢ| terms account for the cancellation."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        half, self.na = 256, features // 2
        nb = features - self.na
        inner = 0.5 * torch.randn(half, self.na, generator=g)
        shift = torch.randn(half, generator=g)
        w = torch.randn(nb, half, generator=g)
        self.inner = torch.nn.Parameter(torch.cat([inner, inner]))
        self.shift = torch.nn.Parameter(torch.cat([shift, shift]))
        self.outer = torch.nn.Parameter(torch.cat([w, -(1 - 1e-4) * w], -1))
        self.scale = torch.nn.Parameter(0.3 * torch.cat([w, -(1 - 1e-4) * w], -1))
        self.bias = torch.nn.Parameter(torch.zeros(nb))

    def _ts(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(xa @ self.inner.mT + self.shift)
        return h @ self.outer.mT + self.bias, torch.tanh(h @ self.scale.mT)

    def forward(self, x):
        t, s = self._ts(x[:, : self.na])
        return torch.cat([x[:, : self.na], x[:, self.na :] * s.exp() + t], -1), s.sum(-1)

    def inverse(self, y):
        t, s = self._ts(y[:, : self.na])
        return torch.cat([y[:, : self.na], (y[:, self.na :] - t) * (-s).exp()], -1), -s.sum(-1)


def test_a_cancelling_conditioner_is_judged_by_its_own_rounding():
    report = validate(_Cancelling, features=4, checks=["gradients"], profile="dev", max_examples=6)
    assert [r.status for r in report.results] == ["pass", "pass"], [
        r.message for r in report.results
    ]


class _Float32Only(torch.nn.Module):
    """y = (x @ I₃₂)·exp(s): the float32 identity matrix makes every float64 call raise."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.s = torch.nn.Parameter(torch.full((features,), 0.2))
        self.n = features

    def forward(self, x):
        return (x @ torch.eye(self.n)) * self.s.exp(), self.s.sum().expand(x.shape[:-1])

    def inverse(self, y):
        return (y @ torch.eye(self.n)) * (-self.s).exp(), (-self.s.sum()).expand(y.shape[:-1])


def test_a_reference_that_raises_is_reported_as_such():
    report = validate(_Float32Only, checks=["gradients"], **RUN)
    r64, r32 = report.results
    assert r64.status == "error" and r64.exception.startswith("RuntimeError")
    assert r32.status == "error" and r32.exception.startswith("ReferenceFailed")
    assert "float64 copy" in r32.message


def test_the_step_keeps_float64_rounding_far_below_float32_resolution():
    """6δ/h with δ ≈ ε₆₄·scale must stay well under the float32 allowance ε₃₂·scale, or the
    float32 comparison would be judged by the reference's noise."""
    assert rounding(2.0**-53, STEP) < 1e-3 * 2.0**-24
