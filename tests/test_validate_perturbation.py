"""Parameters moved off their initialisation before a layer is judged (issue 18, item 5)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from validate_broken import correct_linear

from invlin.nn import P4InvLinear
from invlin.validate.adapters import GenericAdapter, adapt
from invlin.validate.checks import CHECKS, state
from invlin.validate.perturbation import (
    HALVINGS,
    PERTURBATION,
    Perturbation,
    is_identity,
    move_off_init,
    perturb,
    reapply,
    standard_inputs,
)
from invlin.validate.runner import validate

N = 4


def _zero_coupling(features: int) -> torch.nn.Module:
    """normflows' masked affine coupling with zero-initialised networks: exactly y = x."""
    nf = pytest.importorskip("normflows")

    mask = torch.tensor([float(i % 2) for i in range(features)])
    make = lambda: nf.nets.MLP([features, 8, features], init_zeros=True)  # noqa: E731
    return nf.flows.MaskedAffineFlow(mask, t=make(), s=make())


def _zero_glow(features: int) -> torch.nn.Module:
    """FrEIA's GLOW coupling whose subnetworks end in a zero-initialised layer: y = x."""
    fm = pytest.importorskip("FrEIA.modules")

    def subnet(c_in: int, c_out: int) -> torch.nn.Module:
        net = torch.nn.Sequential(
            torch.nn.Linear(c_in, 8), torch.nn.Tanh(), torch.nn.Linear(8, c_out)
        )
        torch.nn.init.zeros_(net[-1].weight)
        torch.nn.init.zeros_(net[-1].bias)
        return net

    return fm.GLOWCouplingBlock([(features,)], subnet_constructor=subnet)


def _params(adapter) -> list[torch.Tensor]:
    return [p.detach().clone() for p in adapter.parameters()]


def test_the_formula_has_one_home():
    assert state.perturb is perturb and state.PERTURBATION is PERTURBATION


def test_perturb_is_seeded_shared_by_copies_and_scales_linearly():
    a = adapt(P4InvLinear(N, init="orthogonal"), N)
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    before = _params(a)
    assert perturb([a, b], 3) == 3
    assert all(torch.equal(p, q) for p, q in zip(_params(a), _params(b), strict=True))
    perturb([c], 3, scale=0.5)
    for p0, p1, ph in zip(before, _params(a), _params(c), strict=True):
        assert torch.allclose(ph - p0, 0.5 * (p1 - p0), rtol=1e-5, atol=1e-7)
        assert not torch.equal(p1, p0)
    with pytest.raises(ValueError, match="same parameters"):
        perturb([a, adapt(correct_linear(N).layer, N)], 0)


def test_standard_inputs_are_seeded_inside_the_domain_and_exact_in_the_dtype():
    x = standard_inputs(N, 50, seed=1, dtype="float32")
    assert x.shape == (50, N) and np.array_equal(x.astype(np.float32).astype(np.float64), x)
    assert np.array_equal(x, standard_inputs(N, 50, seed=1, dtype="float32"))
    assert 2.0**-8 <= np.abs(x).min() and np.abs(x).max() <= 4.0
    for domain in ((0.0, 1.0), (0.0, np.inf), (-np.inf, 2.0)):
        x = standard_inputs(N, 50, seed=2, domain=domain)
        assert np.all(x > domain[0]) and np.all(x < domain[1])
    with pytest.raises(ValueError, match="dtype"):
        standard_inputs(N, 5, seed=0, dtype="float16")


@pytest.mark.parametrize(
    "build",
    [lambda n: P4InvLinear(n), _zero_coupling, _zero_glow],
    ids=["P4InvLinear u=0", "zero-initialised coupling", "zero GLOW"],
)
def test_identity_layers_are_moved_off_the_identity(build):
    adapter = adapt(build(N), N)
    assert is_identity(adapter, "float64") and is_identity(adapter, "float32")
    before = _params(adapter)
    p = move_off_init(adapter, 0)
    assert isinstance(p, Perturbation)
    assert p.identity_before and not p.identity and p.scale == 1.0
    assert p.changed == len(before) > 0 and p.relative == PERTURBATION[0]
    assert "was the identity before" in p.message
    assert all(not torch.equal(a, b) for a, b in zip(before, _params(adapter), strict=True))
    assert not is_identity(adapter, "float64")


def test_nflows_lulinear_is_the_identity_to_within_its_rounded_diagonal():
    nt = pytest.importorskip("nflows.transforms")

    adapter = adapt(nt.LULinear(N), N)  # diag(U) = softplus(raw) + 1e-3 = 1 ± ε32
    assert is_identity(adapter, "float32")
    assert not is_identity(adapter, "float64")  # float32 parameters: 1 + O(ε32) exactly
    assert not is_identity(correct_linear(N), "float64")


def test_the_same_seed_moves_a_freshly_built_layer_identically():
    def build() -> GenericAdapter:
        return adapt(P4InvLinear(N, generator=torch.Generator().manual_seed(0)), N)

    first, second, third = build(), build(), build()
    p = move_off_init(first, 7)
    assert move_off_init(second, 7) == p
    assert reapply(third, p) == p.changed
    for a, b, c in zip(_params(first), _params(second), _params(third), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert move_off_init(build(), 8) != p


class _Bounded(torch.nn.Module):
    """y = p ⊙ x, valid only for |p − 1| ≤ ``reach`` (the forward raises outside, as a layer
    with an unenforced parameter constraint would); ``reach=0`` is valid only at p = 1."""

    def __init__(self, features: int, reach: float) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(features))
        self.reach = reach

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if float((self.p.detach() - 1).abs().max()) > self.reach:
            raise ValueError("p outside its valid range")
        return x * self.p, self.p.abs().log().sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y / self.p, -self.p.abs().log().sum().expand(y.shape[:-1])


class _Inert(_Bounded):
    """y = p ⊙ x whose inverse ignores p: right only at p = 1, where it starts."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y.clone(), torch.zeros(y.shape[:-1], dtype=y.dtype)


def test_the_scale_is_halved_until_the_layer_stays_valid():
    # δ = c·N(0, 1)·0.15 per entry: at c = 1 some |δ| > 0.05, at c = 1/16 none (seed 0)
    adapter = GenericAdapter(_Bounded(N, reach=0.05), N)
    p = move_off_init(adapter, 0)
    assert 0 < p.scale < 1 and p.changed == 1 and not p.identity
    x = torch.as_tensor(standard_inputs(N, 16, seed=0))
    adapter.forward(x.float())  # valid: does not raise


def test_a_layer_no_scale_keeps_valid_is_left_as_built():
    adapter = GenericAdapter(_Bounded(N, reach=0.0), N)
    before = _params(adapter)
    p = move_off_init(adapter, 0)
    assert p.scale == 0.0 and p.changed == 0 and p.identity_before and p.identity
    assert "no scale kept the layer valid" in p.message and "raised" in p.message
    assert p.message.count(";") >= HALVINGS  # every scale tried is listed
    assert all(torch.equal(a, b) for a, b in zip(before, _params(adapter), strict=True))
    assert reapply(adapter, p) == 0


def test_an_inverse_right_only_at_the_initialisation_is_moved_anyway():
    """The screen judges validity, not the round trip: an inverse that ignores p must be
    moved off p = 1, where the round trip check then sees it."""
    adapter = GenericAdapter(_Inert(N, reach=1.0), N)
    p = move_off_init(adapter, 0)
    assert p.scale == 1.0 and p.identity_before and not p.identity


def test_layers_without_parameters_are_reported_not_moved():
    from invlin.nn import BentIdentity

    p = move_off_init(adapt(BentIdentity(), N), 0)
    assert p.changed == 0 and p.scale == 0.0 and not p.identity
    assert "no trainable parameters" in p.message


def test_move_off_init_never_calls_the_layer_itself():
    """Caches and data-dependent initialisations stay untouched: only copies are run."""
    nt = pytest.importorskip("nflows.transforms")

    layer = nt.ActNorm(N)  # initialises itself from the first batch it sees
    adapter = adapt(layer, N)
    move_off_init(adapter, 0)
    assert not bool(layer.initialized)


def _perturbed(build):
    def factory(features: int):
        adapter = adapt(build(features), features)
        move_off_init(adapter, 0)
        return adapter

    return factory


@pytest.mark.parametrize(
    "build", [lambda n: P4InvLinear(n), _zero_glow], ids=["P4InvLinear u=0", "zero GLOW"]
)
def test_perturbed_identity_layers_pass_every_check(build):
    build(N)  # skips here, not inside the validator, when the library is not installed
    report = validate(_perturbed(build), features=N, profile="dev", max_examples=10)
    assert report.error is None and len(report.results) == 2 * len(CHECKS)
    # FrEIA's coupling blocks keep their clamp as a lambda attribute (coupling_layers.py,
    # _BaseCouplingBlock.__init__), so pickling the whole layer fails: a finding of the
    # persistence check about the library, not about the perturbation this test is for.
    unpicklable = {"persistence"} if build is _zero_glow else set()
    bad = [
        (r.dtype, r.check, r.status, r.message)
        for r in report.results
        if r.status in ("fail", "error") and r.check not in unpicklable
    ]
    assert not bad
    if unpicklable:
        assert {r.status for r in report.results if r.check == "persistence"} == {"fail"}
