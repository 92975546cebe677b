"""Tests of the toy2d experiment's P4 pieces: P4-mixed coupling flows, true densities, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invlin._dtypes import eps
from invlin.experiments.coupling import AffineCoupling, coupling_flow
from invlin.experiments.datasets import (
    TOY_DENSITIES,
    _gaussian_mixture,
    _moon_centres,
    toy_density,
    toy_log_density,
)
from invlin.experiments.dense import DenseLinear
from invlin.experiments.gaussian import GaussianFlow
from invlin.experiments.toy2d import MERGE_EVERY, p4_flow, region_fraction, run_toy2d
from invlin.experiments.train import nll_per_sample
from invlin.nn import P4InvLinear
from invlin.testing import assert_forward, assert_logabsdet, kappa1


def _scrambled_p4_mixing_flow(features: int, layers: int) -> torch.nn.Sequential:
    """A P4-mixed coupling flow moved away from its (identity-like) initialisation: random
    coupling outputs, and P4 layers whose A is no longer a permutation (one merged random
    perturbation) with a pending perturbation u vᵀ on top."""
    gen = torch.Generator().manual_seed(1)
    flow = coupling_flow(features, layers, hidden=8, mixing="p4", generator=gen).double()
    with torch.no_grad():
        for layer in flow:
            if isinstance(layer, AffineCoupling):
                for p in layer.net[-1].parameters():
                    p.normal_(std=0.5, generator=gen)
            else:
                layer.u.normal_(std=0.3, generator=gen)
                assert layer.merge(force=True)
                layer.u.normal_(std=0.3, generator=gen)
                layer.bias.normal_(std=0.3, generator=gen)
    return flow


@pytest.mark.parametrize("layers", [2, 3])
def test_p4_mixing_flow_is_invertible_with_the_jacobian_logdet(layers):
    torch.manual_seed(0)
    flow = _scrambled_p4_mixing_flow(4, layers)
    p4 = [m for m in flow if isinstance(m, P4InvLinear)]
    assert len(p4) == layers and all(m.merges == 1 for m in p4)
    x = torch.randn(4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: flow(t)[0], x)
    kappa = kappa1(jac)
    # One tracked update per P4 layer lies behind the log|det| and the inverse.
    assert_logabsdet(
        out=flow(x)[1].detach(),
        expected=torch.linalg.slogdet(jac)[1],
        n=4,
        kappa=kappa,
        dtype="float64",
        updates=1,
    )
    y, ld = flow(x[None])
    xr, ldi = flow.inverse(y)
    assert_forward(out=xr.detach(), expected=x[None], kappa=kappa, dtype="float64", updates=1)
    assert_logabsdet(
        out=-ldi.detach(), expected=ld.detach(), n=4, kappa=kappa, dtype="float64", updates=1
    )


@pytest.mark.parametrize(("features", "layers"), [(2, 3), (2, 4), (4, 3)])
def test_p4_mixing_starts_with_the_density_of_the_alternating_flow(features, layers):
    # Zero-initialised couplings are the identity and the P4 layers start at the reversal
    # permutation: both flows are permutations, so the densities agree up to the rounding of
    # a reordered sum of `features` squares.
    torch.manual_seed(0)
    x = 2 * torch.randn(64, features)
    alt = coupling_flow(features, layers, hidden=4, mixing="alternate")
    mixed = coupling_flow(features, layers, hidden=4, mixing="p4")
    assert sum(isinstance(m, P4InvLinear) for m in mixed) == layers
    expected = nll_per_sample(alt, x).detach()[:, None]
    assert_forward(
        out=nll_per_sample(mixed, x).detach()[:, None],
        expected=expected,
        kappa=1.0,
        dtype="float32",
    )
    with pytest.raises(ValueError, match="mixing"):
        coupling_flow(2, 2, mixing="shuffle")


def test_dense_control_matches_the_p4_flow_at_start_and_inverts():
    gen = torch.Generator().manual_seed(2)
    p4, dense = (
        p4_flow(3, generator=gen),
        p4_flow(3, generator=torch.Generator().manual_seed(2), dense=True),
    )
    assert sum(p.numel() for p in p4.parameters()) == sum(p.numel() for p in dense.parameters())
    x = torch.randn(16, 2)
    # Same starting matrices, u = 0: the same map; only the log|det| comes from a fresh LU
    # (DenseLinear, float32) instead of the tracked float64 value (exact 0 for orthogonal A
    # only up to the LU's rounding).
    kappa = max(kappa1(m.weight.double()) for m in dense if isinstance(m, DenseLinear))
    assert_forward(
        out=dense(x)[0].detach(), expected=p4(x)[0].detach(), kappa=kappa, dtype="float32"
    )
    # det = 2·(1·1 − 3·0) − 1·(0·1 − 3·1) = 5
    layer = DenseLinear(
        3,
        init=torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]], dtype=torch.float64),
    ).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y, ld = layer(x)
    kappa = kappa1(layer.weight.detach())
    assert_logabsdet(
        out=ld.detach(),
        expected=torch.full((5,), np.log(5.0), dtype=torch.float64),
        n=3,
        kappa=kappa,
        dtype="float64",
    )
    xr, ldi = layer.inverse(y)
    assert_forward(out=xr.detach(), expected=x, kappa=kappa, dtype="float64")
    assert torch.equal(ldi, -ld)
    with pytest.raises(ValueError, match="init"):
        DenseLinear(2, init=torch.ones(3, 3))


@pytest.mark.parametrize(
    ("name", "step"), [("eight_gaussians", 0.02), ("two_moons", 0.04), ("checkerboard", 0.05)]
)
@pytest.mark.slow
def test_true_toy_densities_integrate_to_one(name, step):
    # Midpoint sum over [-4, 4]²: for the Gaussian mixtures (σ ≥ 0.1 ≥ 2.5 steps) the aliasing
    # error is below exp(-2π²σ²/h²) < 1e-50 and the mass outside the square below 1e-16; the
    # checkerboard's cells are unions of grid cells. What remains is the rounding of the sum of
    # m terms, at most m·ε in float64.
    ticks = np.arange(-4 + step / 2, 4, step)
    xx, yy = np.meshgrid(ticks, ticks)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    total = float(np.exp(toy_log_density(name, pts)).sum() * step * step)
    assert abs(total - 1.0) <= pts.shape[0] * eps("float64"), total


@pytest.mark.slow
def test_true_toy_density_details():
    assert np.all(np.isfinite(toy_log_density("checkerboard", toy_density("checkerboard", 500))))
    off = np.array([[-1.5, -0.5], [0.5, -0.5], [4.5, 0.0], [np.nan, 0.0]])  # cells (0,1), (2,1)
    assert np.all(toy_log_density("checkerboard", off) == -np.inf)
    # The docstring's claim about the two-moons quadrature: within 0.003 nats of 8000 nodes
    # where log p > −5 (further out, past the ends of the arcs, the error grows).
    pts = np.concatenate(
        [
            toy_density("two_moons", 300, seed=5),
            np.random.default_rng(0).uniform(-2.5, 2.5, (300, 2)),
        ]
    )
    fine = _gaussian_mixture(pts, _moon_centres(8000), 0.1)
    near = fine > -5
    assert near.sum() > 300
    assert np.max(np.abs(toy_log_density("two_moons", pts) - fine)[near]) <= 0.003
    with pytest.raises(ValueError, match="name"):
        toy_log_density("spiral", pts)
    with pytest.raises(ValueError, match="shape"):
        toy_log_density("two_moons", pts[:, :1])


def test_region_fraction_of_the_base_distribution():
    # The identity flow samples N(0, I); its mass on the 8 checkerboard cells is exact.
    flow = coupling_flow(2, 1, hidden=2)
    cdf = [0.5 * (1 + math.erf(t / math.sqrt(2))) for t in range(-2, 3)]
    cell = [cdf[i + 1] - cdf[i] for i in range(4)]
    mass = sum(cell[i] * cell[j] for i in range(4) for j in range(4) if (i + j) % 2 == 0)
    got = region_fraction(flow, "checkerboard", -math.log(8.0), samples=4000, seed=3)
    sd = math.sqrt(mass * (1 - mass) / 4000)
    assert abs(got - mass) <= 5 * sd, (got, mass)


@pytest.mark.slow
def test_run_toy2d_merge_periods_and_arguments():
    res = run_toy2d(
        ["checkerboard"],
        models=["realnvp_p4"],
        steps=4,
        couplings=2,
        hidden=4,
        merge_every={"realnvp_p4": 2},
    )
    (r,) = res
    assert r.counters["merges"] == 2 * 2 and len(r.drift) == 2
    assert all(d.passed for d in r.drift)
    assert r.optimum == pytest.approx(math.log(8.0)) and r.region_truth == 1.0
    assert 0.0 <= r.region_fraction <= 1.0
    with pytest.raises(ValueError, match="models"):
        run_toy2d(["checkerboard"], models=["glow"], steps=1)
    with pytest.raises(ValueError, match="merge_every"):
        run_toy2d(["checkerboard"], models=["realnvp_p4"], steps=1, merge_every={"x": 2})
    with pytest.raises(ValueError, match="merge_every"):
        run_toy2d(["checkerboard"], models=["realnvp_p4"], steps=1, merge_every=0)
    assert set(MERGE_EVERY) <= {"p4_bent", "realnvp_p4"}
    assert set(TOY_DENSITIES) == {"eight_gaussians", "two_moons", "checkerboard"}


def test_gaussian_reference_flow_is_the_fitted_normal():
    torch.manual_seed(0)
    x = (
        torch.randn(400, 3, dtype=torch.float64)
        @ torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, -1.0, 0.3]], dtype=torch.float64)
        + 1.0
    )
    flow = GaussianFlow.fit(x)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / x.shape[0]
    kappa = kappa1(cov)
    # Against torch.distributions' own log-density of the same normal.
    expected = -torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    assert_forward(
        out=nll_per_sample(flow, x)[:, None],
        expected=expected[:, None],
        kappa=kappa,
        dtype="float64",
    )
    z, ld = flow(x[:5])
    xr, ldi = flow.inverse(z)
    assert_forward(out=xr, expected=x[:5], kappa=kappa, dtype="float64")
    assert torch.equal(ldi, -ld) and flow.statistics == 3 + 6
    with pytest.raises(ValueError, match="positive definite"):
        GaussianFlow(torch.zeros(2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="m > n"):
        GaussianFlow.fit(x[:3])
