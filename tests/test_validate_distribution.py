"""Whole flows validated as distributions: detection, the three distribution checks on broken
flows and their correct twins, inner transforms as layers, the catalog and the CLI."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from validate_broken import (
    BROKEN_FLOWS,
    FLOW_TWINS,
    affine_flow,
    affine_transformed_distribution,
    scale_mismatch_flow,
    unnormalised_flow,
)

from invlin.cli import main
from invlin.validate.checks import run_check
from invlin.validate.checks.base import CheckContext
from invlin.validate.distribution import (
    DIST_CHECKS,
    DistributionAdapter,
    applicable,
    as_distribution,
    part_factory,
)
from invlin.validate.distribution.adapter import (
    GenericDistributionAdapter,
    NflowsFlowAdapter,
    NormflowsFlowAdapter,
    TorchDistributionAdapter,
    ZukoFlowAdapter,
)
from invlin.validate.distribution.statistics import (
    Proposal,
    axis_nodes,
    cumulative,
    dkwm_epsilon,
    ecdf_distance,
    normal_quantile,
    trapezoid_weights,
    truncation_bound,
)
from invlin.validate.runner import validate, validate_all

CPU = {"devices": ("cpu",)}
DTYPES = ("float64", "float32")


def _statuses(report) -> dict[tuple[str, str], str]:
    return {(r.check, r.dtype): r.status for r in report.results}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# -- the statistics ----------------------------------------------------------------------------
def test_bounds_have_their_stated_values() -> None:
    # DKWM: 2 exp(−2 n ε²) = δ at ε(n, δ)
    eps = dkwm_epsilon(20000, 1e-6 / 3)
    assert 2 * math.exp(-2 * 20000 * eps**2) == pytest.approx(1e-6 / 3)
    assert 0.019 < eps < 0.022
    # all n draws inside a box missing mass q: (1 − q)^n ≤ e^{−qn} = δ
    q = truncation_bound(4000, 1e-6)
    assert math.exp(-q * 4000) == pytest.approx(1e-6)
    assert normal_quantile(1e-6) == pytest.approx(4.8916, abs=1e-3)


def test_quadrature_helpers_are_exact_where_they_should_be() -> None:
    t = np.linspace(-1.0, 2.0, 7)
    assert trapezoid_weights(t) @ (3 * t + 1) == pytest.approx(7.5)  # linear: exact
    nodes = axis_nodes(np.random.default_rng(0).normal(size=500), -4.0, 4.0, 64, mixed=True)
    assert nodes.shape[0] % 2 == 1 and nodes[0] == -4.0 and nodes[-1] == 4.0
    assert np.all(np.diff(nodes) > 0)
    cum = cumulative(nodes, np.ones_like(nodes))
    assert cum[-1] == pytest.approx(8.0) and cum[0] == 0.0
    assert ecdf_distance(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)


def test_proposal_density_integrates_to_one() -> None:
    """The Student-t + kernel mixture: its log_density is a normalised density, and its draws
    keep the fitted covariance's shape."""
    rng = np.random.default_rng(1)
    prop = Proposal.fit(rng.normal(size=(2000, 2)) * [1.0, 3.0])
    y = prop.draw(100000, rng)
    t = np.linspace(-30, 30, 301)
    grid = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    area = (t[1] - t[0]) ** 2
    assert np.exp(prop.log_density(grid)).sum() * area == pytest.approx(1.0, abs=5e-3)
    assert np.cov(y.T)[1, 1] / np.cov(y.T)[0, 0] == pytest.approx(9.0, rel=0.15)


# -- detection ---------------------------------------------------------------------------------
def test_detection_of_each_convention() -> None:
    assert isinstance(as_distribution(affine_flow(2), 2), GenericDistributionAdapter)
    td = as_distribution(affine_transformed_distribution(2), 2)
    assert isinstance(td, TorchDistributionAdapter) and td.library == "torch"
    assert [p.label for p in td.transforms()] == ["transforms[0]: AffineTransform"]
    from invlin.nn import LULinear

    assert as_distribution(LULinear(2), 2) is None  # a layer stays a layer
    flow = as_distribution(affine_flow(2), 2)
    assert as_distribution(flow, 2) is flow
    assert applicable(["round_trip"], flow=True) == list(DIST_CHECKS)
    assert applicable(["round_trip", "dist_samples"], flow=True) == ["dist_samples"]
    assert applicable(["round_trip", "dist_samples"], flow=False) == ["round_trip", "dist_samples"]


@pytest.mark.skipif(not _installed("zuko"), reason="zuko not installed")
def test_zuko_flow_is_a_distribution_its_transform_a_layer() -> None:
    import zuko

    flow = zuko.flows.MAF(2, 0, transforms=2, hidden_features=[8])
    adapter = as_distribution(flow, 2)
    assert isinstance(adapter, ZukoFlowAdapter)
    assert len(adapter.transforms()) == 2
    assert as_distribution(flow.transform, 2) is None
    x, lp = adapter.sample_and_log_prob(5)
    assert x.shape == (5, 2) and lp.shape == (5,)


@pytest.mark.skipif(not _installed("nflows"), reason="nflows not installed")
def test_nflows_and_normflows_flows_are_distributions() -> None:
    import normflows as nf
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import MaskedAffineAutoregressiveTransform

    flow = Flow(MaskedAffineAutoregressiveTransform(2, 8, context_features=3), StandardNormal([2]))
    adapter = as_distribution(flow, 2, context_features=3)
    assert isinstance(adapter, NflowsFlowAdapter) and adapter.context_features == 3
    c = torch.randn(3)
    x, lp = adapter.sample_and_log_prob(4, c)
    assert x.shape == (4, 2) and lp.shape == (4,)
    assert torch.allclose(adapter.log_prob(x, c), lp, atol=1e-5)
    nfl = nf.NormalizingFlow(nf.distributions.DiagGaussian(2), [nf.flows.Permute(2)])
    assert isinstance(as_distribution(nfl, 2), NormflowsFlowAdapter)


# -- the broken flows fail their checks, the twins pass -----------------------------------------
@pytest.mark.parametrize("factory", list(BROKEN_FLOWS), ids=lambda f: f.__name__)
def test_broken_flow_fails_exactly_its_checks(factory) -> None:
    report = validate(factory, features=2, **CPU)
    got = _statuses(report)
    for dtype in DTYPES:
        failed = {c for (c, d), s in got.items() if d == dtype and s == "fail"}
        assert failed == set(BROKEN_FLOWS[factory]), (dtype, report.results)
        assert all(s in ("pass", "fail", "skip") for s in got.values()), report.results


@pytest.mark.parametrize("factory", FLOW_TWINS, ids=lambda f: f.__name__)
def test_correct_twin_passes(factory) -> None:
    report = validate(factory, features=2, checks=list(DIST_CHECKS), **CPU)
    assert report.passed, [(r.check, r.dtype, r.status, r.message) for r in report.results]
    assert {r.check for r in report.results} == set(DIST_CHECKS)


def test_importance_sampling_path_in_four_dimensions() -> None:
    """Dimension > 2: ∫p by importance sampling, the projections by weighted CDFs."""
    ctx = CheckContext(features=4)
    bad = run_check(
        "dist_normalisation",
        DIST_CHECKS["dist_normalisation"],
        lambda: as_distribution(unnormalised_flow(4), 4),
        ctx,
    )
    assert bad.status == "fail" and "importance sampling" in bad.message
    for name, check in DIST_CHECKS.items():
        good = run_check(name, check, lambda: as_distribution(affine_flow(4), 4), ctx)
        assert good.status == "pass", good.message
    wide = run_check(
        "dist_samples",
        DIST_CHECKS["dist_samples"],
        lambda: as_distribution(scale_mismatch_flow(4), 4),
        ctx,
    )
    assert wide.status == "fail", wide.message


def test_one_dimension() -> None:
    ctx = CheckContext(features=1)
    for name, check in DIST_CHECKS.items():
        good = run_check(name, check, lambda: as_distribution(affine_flow(1), 1), ctx)
        assert good.status == "pass", good.message
        bad = run_check(name, check, lambda: as_distribution(scale_mismatch_flow(1), 1), ctx)
        assert bad.status == ("pass" if name == "dist_normalisation" else "fail"), bad.message


class _BadShapes:
    """A distribution whose sampler drops the event axis and whose density is NaN."""

    def log_prob(self, x):
        return torch.full(x.shape[:-1], float("nan"))

    def sample(self, shape):
        return torch.zeros(shape)


def test_malformed_distribution_fails_with_a_clear_message() -> None:
    ctx = CheckContext(features=2)
    make = lambda: as_distribution(_BadShapes(), 2)  # noqa: E731
    res = run_check("dist_samples", DIST_CHECKS["dist_samples"], make, ctx)
    assert res.status == "fail" and "expected (20000, 2)" in res.message
    skip = run_check("dist_consistency", DIST_CHECKS["dist_consistency"], make, ctx)
    assert skip.status == "skip" and "no density along its sampling path" in skip.message


# -- inner transforms, the catalog, the CLI ------------------------------------------------------
def test_inner_transforms_are_validated_as_layers() -> None:
    conf = validate_all([("flow", affine_flow)], features=2, checks=["round_trip"], **CPU)
    names = [layer.name for layer in conf.layers]
    assert names == ["flow", "flow.transforms[0]: AffineTransform"]
    flow, part = conf.layers
    assert {r.check for r in flow.results} == set(DIST_CHECKS)
    assert [r.check for r in part.results] == ["round_trip", "round_trip"]
    assert part.passed and part.library == "torch"
    with pytest.raises(ValueError, match="transforms\\[3\\]"):
        part_factory(affine_flow, 3)(features=2)


def test_distribution_checks_alone_leave_the_parts_out() -> None:
    conf = validate_all([("flow", affine_flow)], features=2, checks=["dist_samples"], **CPU)
    assert [layer.name for layer in conf.layers] == ["flow"]
    assert [r.check for r in conf.layers[0].results] == ["dist_samples", "dist_samples"]


@pytest.mark.skipif(not _installed("zuko"), reason="zuko not installed")
def test_flow_catalog_entries_build_distributions() -> None:
    from invlin.validate.distribution.catalog import flow_catalog, flow_libraries
    from invlin.validate.target import load_target

    assert set(flow_libraries()) >= {"zuko"}
    entries = flow_catalog("zuko")
    assert [e.name for e in entries] == ["MAFFlow", "NSFFlow"]
    for e in entries:
        flow = load_target(e.target)(features=2)
        assert isinstance(as_distribution(flow, 2), DistributionAdapter)
    cond = flow_catalog("zuko", conditional=True)
    flow = load_target(cond[0].target)(features=2, context_features=3)
    x = as_distribution(flow, 2, context_features=3).sample(4, torch.randn(3))
    assert x.shape == (4, 2)
    assert flow_catalog("invlin") == []


def test_cli_runs_a_flow_factory_end_to_end(capsys) -> None:
    target = "tests/validate_broken.py:unnormalised_flow"
    status = main(["validate", target, "--features", "2", "--check", "round_trip"])
    status_json = status
    out = capsys.readouterr().out
    assert status_json == 1
    assert "dist_normalisation" in out and "dist_samples" in out
    assert "UnnormalisedFlow.transforms[0]: AffineTransform" in out
    status = main(
        ["validate", target, "--features", "2", "--check", "round_trip", "--format", "json"]
    )
    data = json.loads(capsys.readouterr().out)
    layers = {layer["name"]: layer for layer in data["layers"]}
    flow = layers["UnnormalisedFlow"]
    failed = {r["check"] for r in flow["results"] if r["status"] == "fail"}
    assert failed == {"dist_normalisation"}
    part = layers["UnnormalisedFlow.transforms[0]: AffineTransform"]
    assert {r["status"] for r in part["results"]} == {"pass"}


class _WrongSignAffine(torch.distributions.AffineTransform):
    """An affine map whose log|det| has the wrong sign (so the flow's density is wrong too)."""

    def log_abs_det_jacobian(self, x, y):
        return -super().log_abs_det_jacobian(x, y)


def _wrong_sign_flow(features: int) -> torch.distributions.Distribution:
    normal = torch.distributions.Normal(torch.zeros(features), torch.ones(features))
    base = torch.distributions.Independent(normal, 1)
    t = _WrongSignAffine(torch.zeros(features), torch.linspace(0.5, 1.5, features), event_dim=1)
    return torch.distributions.TransformedDistribution(base, [t])


def test_a_broken_inner_transform_fails_as_a_layer_with_a_repro_of_its_own() -> None:
    conf = validate_all([("flow", _wrong_sign_flow)], features=2, checks=["logdet_autograd"], **CPU)
    flow, part = conf.layers
    assert {(r.check, r.status) for r in flow.results} >= {("dist_normalisation", "fail")}
    bad = [r for r in part.results if r.status == "fail"]
    assert bad and all("part_factory(factory, 0)" in (r.repro or "") for r in bad)


def test_a_distribution_check_named_for_a_layer_skips_saying_why() -> None:
    from invlin.nn import LULinear

    report = validate(LULinear, features=2, checks=["dist_samples"], **CPU)
    assert [r.status for r in report.results] == ["skip", "skip"]
    assert "is a layer: the distribution checks apply to whole flows" in report.results[0].message


@pytest.mark.skipif(not _installed("zuko"), reason="zuko not installed")
def test_conditional_flow_gets_its_contexts_from_the_run() -> None:
    from invlin.validate.distribution.catalog import flow_catalog

    entry = flow_catalog("zuko", conditional=True)[0]
    report = validate(
        entry.factory, features=2, context_features=3, checks=["dist_consistency"], **CPU
    )
    assert report.passed, report.results
    assert all("at context [" in r.message for r in report.results)


class _CountSampler:
    """nflows-like: ``sample(num_samples)`` takes a count, not a shape."""

    def log_prob(self, x):
        return -0.5 * (x * x).sum(-1) - math.log(2 * math.pi)

    def sample(self, num_samples):
        return torch.randn(num_samples, 2)


def test_generic_sampler_taking_a_count() -> None:
    adapter = as_distribution(_CountSampler(), 2)
    assert adapter.sample(5).shape == (5, 2)
    res = run_check(
        "dist_normalisation",
        DIST_CHECKS["dist_normalisation"],
        lambda: adapter,
        CheckContext(features=2),
    )
    assert res.status == "pass", res.message
