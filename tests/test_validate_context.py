"""Conditional layers: the adapters' context API, the bound context, the ``context`` check, the
conditional catalogs and ``invlin validate --context-features``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import validate_broken as vb

from invlin.validate.adapters import GenericAdapter, adapt
from invlin.validate.checks import CHECKS, CONDITIONAL, CheckContext
from invlin.validate.conditioning import (
    accepts_context,
    bind_context,
    draw_contexts,
    given_context,
    ordinary_context,
)
from invlin.validate.protocol import Unsupported
from invlin.validate.runner import validate

BROKEN_FILE = Path(__file__).with_name("validate_broken.py")
BOTH = ("float64", "float32")
# Checks that legitimately skip on a non-linear layer (no matrix to read or set).
NOT_LINEAR = {"logdet_oracle", "conditioning"}


def _statuses(report) -> dict[tuple[str, str], str]:
    return {(r.check, r.dtype): r.status for r in report.results}


# -- the adapter context API --------------------------------------------------------------------
def test_unconditional_adapter_refuses_a_context() -> None:
    a = adapt(vb.correct_linear(3), 3)
    with pytest.raises(Unsupported, match="unconditional"):
        a.forward(torch.zeros(2, 3), context=torch.zeros(2, 1))


def test_context_shape_is_checked_and_named() -> None:
    a = GenericAdapter(vb.conditional_affine(3, 2), 3, context_features=2)
    with pytest.raises(ValueError, match="context must have shape"):
        a.forward(torch.zeros(4, 3), context=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="context must be a tensor"):
        a.forward(torch.zeros(4, 3), context=[0.0, 1.0])


def test_bound_context_is_used_for_every_row_in_the_input_dtype() -> None:
    layer = vb.conditional_affine(3, 2)
    a = bind_context(GenericAdapter(layer, 3), 2, seed=5)
    c = ordinary_context(2, 5)
    assert a.context_features == 2 and np.array_equal(a.bound_context.numpy(), c)
    x = torch.randn(4, 3, dtype=torch.float32)
    a.to(dtype=torch.float32)
    y, _ = a.forward(x)
    y_explicit, _ = layer(x, context=torch.as_tensor(c, dtype=torch.float32).expand(4, 2))
    assert torch.equal(y, y_explicit)
    # float32-exact draws: the float64 copy sees the very same context
    assert np.array_equal(c.astype(np.float32).astype(np.float64), c)


def test_given_context_restores_the_bound_one() -> None:
    a = bind_context(GenericAdapter(vb.conditional_affine(3, 2), 3), 2, seed=0)
    a.to(dtype=torch.float64)
    before = a.bound_context.clone()
    per_row = draw_contexts(2, 4, seed=1)
    with given_context(a, per_row):
        a.forward(torch.zeros(4, 3, dtype=torch.float64))
        with pytest.raises(ValueError, match="serves batches of 4 rows"):
            a.forward(torch.zeros(5, 3, dtype=torch.float64))
    assert torch.equal(a.bound_context, before)


def test_accepts_context() -> None:
    assert accepts_context(vb.conditional_affine)
    assert not accepts_context(vb.correct_linear)
    assert accepts_context(lambda features, **kw: None)


# -- every library's adapter routes the context ---------------------------------------------------
def _library_entries():
    from invlin.validate.conditional_catalog import conditional_catalog, conditional_libraries

    out = []
    for lib in conditional_libraries():
        try:
            entries = conditional_catalog(lib)
        except ImportError:
            continue
        out += [pytest.param(e.factory, id=f"{lib}-{e.name}") for e in entries]
    return out


@pytest.mark.parametrize("factory", _library_entries())
def test_library_adapters_pass_the_context_in_their_convention(factory) -> None:
    """Round trip with one context per row; row r equals row r with c_r broadcast; another
    context changes the output (so the context really reaches the layer)."""
    n, m = 4, 3
    a = bind_context(adapt(factory(features=n, context_features=m), n), m, seed=0)
    a.to(dtype=torch.float64)
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((5, n)))
    c = torch.as_tensor(draw_contexts(m, 5, seed=0))
    with torch.no_grad():
        y, ld = a.forward(x, context=c)
        xb, ldi = a.inverse(y.clone(), context=c)
        y2, _ = a.forward(x, context=c[2])
        y_other, _ = a.forward(x, context=c.flip(0))
    assert y.shape == x.shape and ld.shape == (5,)
    assert torch.allclose(xb, x, atol=1e-9) and torch.allclose(ld, -ldi, atol=1e-9)
    assert torch.allclose(y2[2], y[2], atol=1e-12)
    assert not torch.allclose(y_other, y)


def test_a_bare_pyro_conditional_transform_is_detected() -> None:
    """adapt() recognises a pyro ConditionalTransform itself (not only one a catalog wrapped)."""
    pyro_transforms = pytest.importorskip("pyro.distributions.transforms")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = pyro_transforms.conditional_spline(3, context_dim=2)
    a = adapt(layer, 3, context_features=2)
    assert a.library == "pyro" and a.context_features == 2
    x, c = torch.randn(5, 3), torch.randn(5, 2)
    with torch.no_grad():
        y, ld = a.forward(x, context=c)
        xb, ldi = a.inverse(y.clone(), context=c)
    assert torch.allclose(xb, x, atol=1e-5) and torch.allclose(ld, -ldi, atol=1e-5)


# -- the context check on the broken twins --------------------------------------------------------
@pytest.mark.parametrize("factory", list(vb.BROKEN_CONDITIONAL), ids=lambda f: f.__name__)
def test_broken_conditional_layers_fail(factory) -> None:
    expected = vb.BROKEN_CONDITIONAL[factory]
    report = validate(factory, features=3, context_features=2, checks=list(expected))
    st = _statuses(report)
    for check in expected:
        for dtype in BOTH:
            assert st[(check, dtype)] == "fail", (check, dtype, report.results)
    res = next(r for r in report.results if r.check == "context")
    assert "context" in res.message and res.repro and "context=c" in res.repro
    assert "bind_context(adapter, 2" in res.repro  # the setup builds the conditional layer


def test_first_row_misreading_is_caught_only_with_contexts_per_row() -> None:
    """Every other check sees one bound context for all rows: the misreading is invisible there."""
    report = validate(
        vb.first_row_context_inverse,
        features=3,
        context_features=2,
        checks=["round_trip", "logdet_consistency", "context"],
    )
    st = _statuses(report)
    assert all(st[("round_trip", d)] == "pass" for d in BOTH)
    assert all(st[("context", d)] == "fail" for d in BOTH)


def test_correct_conditional_twin_passes_every_check() -> None:
    report = validate(vb.conditional_affine, features=3, context_features=2)
    bad = [
        r
        for r in report.results
        if r.status != "pass" and not (r.status == "skip" and r.check in NOT_LINEAR)
    ]
    assert not bad, bad
    ctx = [r for r in report.results if r.check == "context"]
    assert len(ctx) == 2 and all(r.cases and r.cases > 0 for r in ctx)


def test_layer_built_for_contexts_that_ignores_them_fails() -> None:
    report = validate(vb.context_free_layer, features=3, context_features=2, checks=["context"])
    for r in report.results:
        assert r.status == "fail" and "does not depend on its" in r.message, r
        assert "context_features=2" in r.message


class _FlowWithFixedMap(vb.AffineFlow):
    """A conditional flow whose one inner transform takes a context and ignores it."""

    @property
    def transforms(self) -> list:
        return [vb.context_free_layer(self.loc.shape[0], self.context_features)]


def _flow_with_fixed_map(features: int, context_features: int = 2) -> _FlowWithFixedMap:
    return _FlowWithFixedMap(features, context_features)


def test_inner_transform_of_a_flow_that_ignores_the_context_is_skipped() -> None:
    """A permutation inside a conditional flow has nothing to condition on."""
    from invlin.validate.distribution import part_factory

    part = part_factory(_flow_with_fixed_map, 0)
    report = validate(part, features=3, context_features=2, checks=["context"])
    for r in report.results:
        assert r.status == "skip" and "inner transform ignores its context" in r.message, r


def test_unconditional_run_skips_the_context_check() -> None:
    report = validate(vb.correct_linear, features=3, checks=["context"], dtypes=("float64",))
    (r,) = report.results
    assert r.status == "skip" and "unconditional" in r.message


def test_context_check_joins_the_default_run_of_conditional_layers_only() -> None:
    assert "context" in CONDITIONAL and "context" not in CHECKS
    plain = validate(vb.correct_linear, features=3, dtypes=("float64",), checks=None, profile="dev")
    assert "context" not in {r.check for r in plain.results}


def test_factory_without_context_features_is_refused() -> None:
    with pytest.raises(ValueError, match="'correct_linear' does not accept context_features"):
        validate(vb.correct_linear, features=3, context_features=2)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_context_features_values(bad) -> None:
    with pytest.raises(ValueError, match="context_features must be an integer >= 0"):
        validate(vb.conditional_affine, features=3, context_features=bad)
    with pytest.raises(ValueError, match="context_features must be an integer >= 0"):
        CheckContext(context_features=bad)


def test_python_check_entry_point_takes_context_features() -> None:
    from invlin.validate.assertion import check

    check(vb.conditional_affine, features=3, context_features=2, checks=["context"])
    with pytest.raises(AssertionError, match="context"):
        check(vb.reversed_context_inverse, features=3, context_features=2, checks=["context"])


# -- the command line -----------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invlin", "validate", *args, "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_context_features_end_to_end() -> None:
    ok = _cli(f"{BROKEN_FILE}:conditional_affine", "--context-features", "2", "--check", "context")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "context" in ok.stdout
    bad = _cli(
        f"{BROKEN_FILE}:first_row_context_inverse", "--context-features", "2", "--check", "context"
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "with drawn contexts, x → y → x under the same context" in bad.stdout


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_cli_bad_context_features_is_a_usage_error(value: str) -> None:
    out = _cli(f"{BROKEN_FILE}:conditional_affine", "--context-features", value)
    assert out.returncode == 2
    assert "--context-features" in out.stderr and "Traceback" not in out.stderr


def test_cli_factory_without_the_argument_is_a_usage_error() -> None:
    out = _cli(f"{BROKEN_FILE}:correct_linear", "--context-features", "2")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "does not accept context_features" in out.stderr
    assert "correct_linear" in out.stderr and "Traceback" not in out.stderr


def test_cli_zero_context_features_is_off() -> None:
    out = _cli(
        f"{BROKEN_FILE}:correct_linear",
        "--context-features",
        "0",
        "--check",
        "round_trip",
        "--check",
        "context",
        "--dtype",
        "float64",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_library_without_conditional_layers_is_a_usage_error() -> None:
    out = _cli("--library", "invlin", "--context-features", "2")
    assert out.returncode == 2 and "no conditional layers" in out.stderr


@pytest.mark.parametrize(
    ("factory", "status"),
    [(vb.first_row_context_inverse, "fail"), (vb.conditional_affine, "pass")],
    ids=["broken", "twin"],
)
def test_context_check_alone(factory, status: str) -> None:
    """As tests/test_validate_each_check.py does for the unconditional checks: one check, one
    dtype, the dev profile — the context check finds the misreading by itself."""
    report = validate(
        factory,
        features=3,
        context_features=2,
        checks=["context"],
        dtypes=("float64",),
        profile="dev",
        max_examples=10,
    )
    (r,) = report.results
    assert r.status == status, r.message
    assert r.cases and r.cases > 0 if status == "pass" else r.example
