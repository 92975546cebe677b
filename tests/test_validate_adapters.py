"""Adapters, conventions table and catalogs of invlin.validate.

Runs on the system python for invlin's own layers and torch.distributions; the other libraries'
tests are skipped unless installed (a python that has them runs the whole file). Every
closeness decision goes through invlin.testing's ratios: the reference log|det| is the float64
autograd Jacobian's slogdet, judged with n·κ₁(J)·ε; round trips are judged with κ₁(J)·ε.
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np
import pytest
import torch

from invlin.testing import allowed_ratio, forward_ratio, kappa1, logdet_ratio
from invlin.validate.adapters import (
    SUPPORTED,
    DistributionsAdapter,
    GenericAdapter,
    InvlinLUAdapter,
    P4InvLinearAdapter,
    adapt,
)
from invlin.validate.catalog import LIBRARIES, Entry, catalog
from invlin.validate.conventions import CONVENTIONS, convention, conventions_markdown
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import plugin
from invlin.validate.target import load_target

F64 = torch.float64
N = 5  # odd on purpose: half-splits of coupling layers are unequal
ALLOWED = allowed_ratio(0)

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)


# -- the measuring helpers ---------------------------------------------------------------------
def _jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """Float64 autograd Jacobian of the map ``fn(·)[0]`` at one point x of shape (n,)."""
    return torch.autograd.functional.jacobian(lambda t: fn(t.unsqueeze(0))[0][0], x)


def measure(adapter: Adapter, x: torch.Tensor) -> dict[str, float]:
    """Worst tolerance-engine ratios of an adapter at the rows of x (B, n), all in float64.

    roundtrip: inverse(forward(x)) vs x with κ₁(J); forward / inverse: each log|det| vs the
    slogdet of the autograd Jacobian of that very direction; negation: inverse log|det| vs
    −forward log|det|.
    """
    n = x.shape[-1]
    y, ld = adapter.forward(x)
    xb, ldi = adapter.inverse(y.detach().clone())
    ld = ld.detach().expand(x.shape[:-1]) if ld.ndim == 0 else ld.detach()
    ldi = ldi.detach().expand(x.shape[:-1]) if ldi.ndim == 0 else ldi.detach()
    out = {"roundtrip": 0.0, "forward": 0.0, "inverse": 0.0, "negation": 0.0}
    for i in range(x.shape[0]):
        jf = _jacobian(adapter.forward, x[i])
        ji = _jacobian(adapter.inverse, y[i].detach())
        kf, ki = max(kappa1(jf), 1.0), max(kappa1(ji), 1.0)
        ratios = {
            "roundtrip": forward_ratio(xb[i], x[i], kappa=kf, dtype=F64).value,
            "forward": logdet_ratio(
                ld[i], torch.linalg.slogdet(jf)[1], n=n, kappa=kf, dtype=F64
            ).value,
            "inverse": logdet_ratio(
                ldi[i], torch.linalg.slogdet(ji)[1], n=n, kappa=ki, dtype=F64
            ).value,
            "negation": logdet_ratio(ldi[i], -ld[i], n=n, kappa=kf, dtype=F64).value,
        }
        for key, value in ratios.items():
            out[key] = max(out[key], value)
    return out


def inputs(adapter: Adapter, batch: tuple[int, ...] = (3,), seed: int = 0) -> torch.Tensor:
    """Float64 inputs of shape (*batch, n) inside the adapter's domain."""
    g = torch.Generator().manual_seed(seed)
    dom = adapter.domain()
    shape = (*batch, adapter.features)
    if dom is None:
        return torch.randn(shape, generator=g, dtype=F64)
    lo, hi = dom
    lo, hi = max(lo, -4.0), min(hi, 4.0)
    return lo + (hi - lo) * (0.1 + 0.8 * torch.rand(shape, generator=g, dtype=F64))


def assert_conforms(adapter: Adapter, x: torch.Tensor) -> dict[str, float]:
    ratios = measure(adapter, x)
    bad = {k: v for k, v in ratios.items() if not v <= ALLOWED}
    assert not bad, f"{adapter.name}: ratios above {ALLOWED}: {bad} (all: {ratios})"
    return ratios


def ill_conditioned(n: int, kappa: float, seed: int = 0) -> torch.Tensor:
    """Q₁ diag(σ) Q₂ᵀ with σ geometric from 1 to 1/κ (κ₂ = kappa), float64."""
    g = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    sigma = torch.logspace(0, -math.log10(kappa), n, dtype=F64)
    return q1 @ torch.diag(sigma) @ q2.mT


def factor_ratio(m: torch.Tensor, w: torch.Tensor) -> float:
    """‖m − w‖/(‖w‖·n·g·ε) over all entries, g = ‖|L||U|‖/‖w‖ of w's pivoted LU: the scale of
    the backward error γₙ|L||U| of a product of LU factors (Higham, Thm 9.3)."""
    _, lower, upper = torch.linalg.lu(w)
    growth = float((lower.abs() @ upper.abs()).abs().sum() / w.abs().sum())
    n = w.shape[0]
    return forward_ratio(
        m.reshape(1, -1), w.reshape(1, -1), kappa=max(1.0, n * growth), dtype=F64
    ).value


def singular_values_ratio(a: torch.Tensor, w: torch.Tensor, *, scaled: bool = False) -> float:
    """Singular values of a vs w: |Δσ| ≤ ‖ΔA‖₂, of order n·ε·‖A‖ for computed ones.

    ``scaled``: compare σ/σ_max (a may be w times a constant)."""
    sa, sw = torch.linalg.svdvals(a), torch.linalg.svdvals(w)
    if scaled:
        sa, sw = sa / sa[0], sw / sw[0]
    return forward_ratio(sa, sw, kappa=float(w.shape[0]), dtype=F64).value


# -- deliberately broken adapters: the helpers must flag each ----------------------------------
class _Broken(Adapter):
    """Wraps a correct adapter and spoils one thing."""

    def __init__(self, inner: Adapter, defect: str) -> None:
        super().__init__(inner.layer, inner.features, name=f"{inner.name}[{defect}]")
        self.inner, self.defect = inner, defect

    def forward(self, x):
        y, ld = self.inner.forward(x)
        if self.defect == "sign":
            ld = -ld
        if self.defect == "half":
            ld = ld / 2
        return y, ld

    def inverse(self, y):
        x, ld = self.inner.inverse(y)
        if self.defect == "inverse-sign":
            ld = -ld
        if self.defect == "inexact-inverse":
            x = x * (1 + 1e-9)
        return x, ld


# ==============================================================================================
# invlin's own layers (system python)
# ==============================================================================================
INVLIN = catalog("invlin")


@pytest.mark.parametrize("entry", INVLIN, ids=[e.name for e in INVLIN])
def test_invlin_layers_conform(entry: Entry) -> None:
    adapter = adapt(entry.factory(features=N), N, name=entry.name).to(dtype=F64)
    assert adapter.library == "invlin"
    assert_conforms(adapter, inputs(adapter))


@pytest.mark.parametrize("defect", ["sign", "half", "inverse-sign", "inexact-inverse"])
def test_measure_flags_broken_adapters(defect: str) -> None:
    from invlin.nn import LULinear

    torch.manual_seed(0)
    inner = adapt(LULinear(N).to(F64), N)
    with torch.no_grad():
        inner.layer.upper_diag.mul_(1.7)  # log|det| far from zero, so a sign flip shows
    good = measure(inner, inputs(inner))
    assert max(good.values()) <= ALLOWED
    bad = measure(_Broken(inner, defect), inputs(inner))
    expected = {
        "sign": ["forward", "negation"],
        "half": ["forward", "negation"],
        "inverse-sign": ["inverse", "negation"],
        "inexact-inverse": ["roundtrip"],
    }
    for key in expected[defect]:
        assert bad[key] > ALLOWED, (defect, bad)


@pytest.mark.parametrize("batch", [(), (4,), (2, 3), (2, 1, 3)])
def test_invlin_batch_shapes_pass_through(batch: tuple[int, ...]) -> None:
    adapter = adapt(INVLIN[-1].factory(features=N), N).to(dtype=F64)
    x = inputs(adapter, batch=batch)
    y, ld = adapter.forward(x)
    xb, ldi = adapter.inverse(y)
    assert y.shape == x.shape and xb.shape == x.shape
    assert ld.shape == batch and ldi.shape == batch


def test_p4_matrix_and_set_matrix() -> None:
    adapter = adapt(INVLIN[0].factory(features=N), N)
    assert isinstance(adapter, P4InvLinearAdapter)
    adapter.to(dtype=F64)
    x = inputs(adapter)
    jac = _jacobian(adapter.forward, x[0])
    assert forward_ratio(adapter.matrix(), jac, kappa=1.0, dtype=F64).value <= ALLOWED
    kappa = 1e6
    w = ill_conditioned(N, kappa)
    adapter.set_matrix(w)
    assert torch.equal(adapter.matrix(), w)  # A ← w, u ← 0: an exact copy
    layer = adapter.layer
    assert (
        logdet_ratio(
            layer.logabsdet, torch.linalg.slogdet(w)[1], n=N, kappa=kappa1(w), dtype=F64
        ).value
        <= ALLOWED
    )
    assert int(layer.sign) == int(torch.linalg.slogdet(w)[0])
    y, _ = adapter.forward(x)
    xb, _ = adapter.inverse(y)
    assert forward_ratio(xb, x, kappa=kappa1(w), dtype=F64).value <= ALLOWED
    # bias, not matrix: y − b = W x
    assert (
        forward_ratio(y - layer.bias.detach(), x @ w.mT, kappa=kappa1(w), dtype=F64).value
        <= ALLOWED
    )


def test_invlin_lu_matrix_and_set_matrix() -> None:
    adapter = adapt(INVLIN[1].factory(features=N), N)
    assert isinstance(adapter, InvlinLUAdapter)
    adapter.to(dtype=F64)
    jac = _jacobian(adapter.forward, inputs(adapter)[0])
    assert forward_ratio(adapter.matrix(), jac, kappa=1.0, dtype=F64).value <= ALLOWED
    w = ill_conditioned(N, 1e6)
    with pytest.raises(Unsupported, match="pivoting"):
        adapter.set_matrix(w)  # a random w needs row swaps, the layer holds no permutation
    fit = adapter.admissible(w)
    assert singular_values_ratio(fit, w) <= ALLOWED
    adapter.set_matrix(fit)
    assert factor_ratio(adapter.matrix(), fit) <= ALLOWED
    x = inputs(adapter)
    xb, _ = adapter.inverse(adapter.forward(x)[0])
    assert forward_ratio(xb, x, kappa=kappa1(fit), dtype=F64).value <= ALLOWED


def test_set_matrix_rejects_bad_w() -> None:
    adapter = adapt(INVLIN[0].factory(features=N), N)
    with pytest.raises(ValueError, match="w must be"):
        adapter.set_matrix(torch.ones(N, N + 1))
    with pytest.raises(ValueError, match="finite"):
        adapter.set_matrix(torch.full((N, N), math.nan))
    with pytest.raises(Unsupported):
        adapt(INVLIN[2].factory(features=N), N).set_matrix(torch.eye(N))


def test_nonlinear_invlin_layers_have_no_matrix() -> None:
    for entry in INVLIN[2:]:
        assert adapt(entry.factory(features=N), N).matrix() is None


# ==============================================================================================
# detection and the generic convention
# ==============================================================================================
class _Custom:
    """A user layer in invlin's convention that is not an nn.Module: y = 2x."""

    def forward(self, x):
        return 2 * x, torch.full(x.shape[:-1], x.shape[-1] * math.log(2.0), dtype=x.dtype)

    def inverse(self, y):
        return y / 2, torch.full(y.shape[:-1], -y.shape[-1] * math.log(2.0), dtype=y.dtype)


def test_custom_layer_is_adapted_generically() -> None:
    adapter = adapt(_Custom(), N, name="double")
    assert isinstance(adapter, GenericAdapter) and adapter.library == "custom"
    assert adapter.name == "double"
    assert_conforms(adapter, inputs(adapter))
    with pytest.raises(Unsupported):
        adapter.train(False)


def test_adapter_passes_through_and_bad_input_is_refused() -> None:
    adapter = adapt(_Custom(), N)
    assert adapt(adapter, N + 3) is adapter
    with pytest.raises(TypeError) as info:
        adapt(object(), N)
    assert "builtins.object" in str(info.value)
    for line in SUPPORTED:
        assert line in str(info.value)
    with pytest.raises(ValueError, match="features"):
        adapt(_Custom(), 0)
    with pytest.raises(ValueError, match="features"):
        adapt(_Custom(), True)


def test_generic_adapter_refuses_a_non_pair() -> None:
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

        def inverse(self, y):
            return y

    with pytest.raises(TypeError, match=r"must return \(tensor, log\|det\| tensor\)"):
        adapt(Plain(), N).forward(torch.zeros(2, N))


def test_detection_imports_nothing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, invlin.validate.adapters as a; import torch; "
        "a.adapt(torch.distributions.transforms.ExpTransform(), 3); "
        "print(sorted(m for m in ('nflows', 'zuko', 'normflows', 'FrEIA', 'pyro') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ==============================================================================================
# torch.distributions (system python)
# ==============================================================================================
def _torch_transforms() -> list[tuple[str, object]]:
    from torch.distributions import transforms as tt

    g = torch.Generator().manual_seed(1)
    return [
        (
            "affine",
            tt.AffineTransform(
                torch.randn(N, generator=g, dtype=F64), torch.rand(N, generator=g, dtype=F64) + 0.5
            ),
        ),
        ("tanh", tt.TanhTransform()),
        (
            "sigmoid∘affine",
            tt.ComposeTransform([tt.AffineTransform(0.0, 1.5), tt.SigmoidTransform()]),
        ),
        ("independent exp", tt.IndependentTransform(tt.ExpTransform(), 1)),
    ]


@pytest.mark.parametrize("item", _torch_transforms(), ids=lambda t: t[0])
def test_torch_transforms_conform(item) -> None:
    _, t = item
    adapter = adapt(t, N)
    assert isinstance(adapter, DistributionsAdapter) and adapter.library == "torch"
    assert_conforms(adapter, inputs(adapter))


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_event_dim_zero_is_summed_over_features(batch) -> None:
    from torch.distributions import transforms as tt

    t = tt.AffineTransform(0.0, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=F64))
    adapter = adapt(t, N)
    x = inputs(adapter, batch=batch)
    _, ld = adapter.forward(x)
    _, ldi = adapter.inverse(x)
    assert ld.shape == batch and ldi.shape == batch
    expected = torch.full(batch, math.log(120.0), dtype=F64)
    assert logdet_ratio(ld, expected, n=N, kappa=5.0, dtype=F64).value <= ALLOWED


class _Scale(torch.distributions.Transform):
    """Elementwise y = s ⊙ x whose log|det| has shape (n,): broadcastable, as torch allows."""

    domain = torch.distributions.constraints.real
    codomain = torch.distributions.constraints.real
    bijective = True

    def __init__(self, s: torch.Tensor) -> None:
        super().__init__()
        self.s = s

    def _call(self, x):
        return x * self.s

    def _inverse(self, y):
        return y / self.s

    def log_abs_det_jacobian(self, x, y):
        return torch.log(self.s.abs())


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_broadcastable_elementwise_logdet_is_expanded_then_summed(batch) -> None:
    adapter = adapt(_Scale(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=F64)), N)
    x = inputs(adapter, batch=batch)
    _, ld = adapter.forward(x)
    assert ld.shape == batch
    expected = torch.full(batch, math.log(120.0), dtype=F64)
    assert logdet_ratio(ld, expected, n=N, kappa=5.0, dtype=F64).value <= ALLOWED
    assert_conforms(adapter, inputs(adapter))


def test_distribution_domain_from_constraint() -> None:
    from torch.distributions import transforms as tt

    assert adapt(tt.SigmoidTransform().inv, N).domain() == (0.0, 1.0)
    assert adapt(tt.ExpTransform().inv, N).domain() == (0.0, math.inf)
    assert adapt(tt.ExpTransform(), N).domain() is None


def test_plain_transform_moves_its_tensors() -> None:
    from torch.distributions import transforms as tt

    adapter = adapt(tt.AffineTransform(torch.zeros(N), torch.ones(N)), N).to(dtype=F64)
    assert adapter.layer.loc.dtype == F64 and adapter.layer.scale.dtype == F64
    with pytest.raises(Unsupported):
        adapter.train(True)
    assert adapter.parameters() == []


# ==============================================================================================
# conventions table and catalog API (system python)
# ==============================================================================================
def test_conventions_table_covers_every_library() -> None:
    libs = {c.library for c in CONVENTIONS}
    for lib in LIBRARIES:
        assert convention(lib).library in libs
    text = conventions_markdown()
    assert text.count("\n") == len(CONVENTIONS) + 2
    assert "latent → data" in convention("normflows").direction
    assert "rev=True" in convention("freia").inverse_call
    with pytest.raises(ValueError, match="library"):
        convention("flowjax")


def test_catalog_refuses_unknown_and_names_missing_packages() -> None:
    with pytest.raises(ValueError, match="library must be one of"):
        catalog("flowjax")
    missing = [lib for lib in LIBRARIES if lib != "invlin" and not _installed(lib)]
    for lib in missing:
        with pytest.raises(ModuleNotFoundError, match="pip install"):
            catalog(lib)


def test_catalog_targets_load_the_same_factory() -> None:
    for entry in INVLIN:
        assert entry.target == f"invlin.validate.catalog:FACTORIES.invlin.{entry.name}"
        a, b = entry.factory(features=N), load_target(entry.target)(features=N)
        assert type(a) is type(b)
        assert all(
            torch.equal(p, q)
            for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )
    with pytest.raises(AttributeError, match="no layer"):
        from invlin.validate.catalog import FACTORIES

        _ = FACTORIES.invlin.NoSuchLayer


def test_catalog_factories_are_seeded_and_leave_global_rng_alone() -> None:
    entry = INVLIN[1]
    state = torch.random.get_rng_state()
    a, b = entry.factory(features=N), entry.factory(features=N)
    c = entry.factory(features=N, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.weight(), b.weight()) and not torch.equal(a.weight(), c.weight())
    with pytest.raises(ValueError, match="features"):
        entry.factory(features=0)


# ==============================================================================================
# other libraries (skipped unless installed)
# ==============================================================================================
def _installed(lib: str) -> bool:
    return importlib.util.find_spec(plugin(lib).module) is not None


#: catalog entries that fail because of the library, not the adapter (see the findings tests).
KNOWN = {
    ("nflows", "NaiveLinear"): "inverse calls torch.solve, removed from torch",
    ("zuko", "SOSPF"): "inverse by bisection to a documented absolute tolerance 1e-6",
    ("freia", "LearnedElementwiseScaling"): "rev=True returns +log|det| (wrong sign)",
    ("freia", "FixedLinearTransform"): "M⁻¹ fixed at construction precision (float32)",
    ("pyro", "AffineAutoregressive"): "inverse builds float32 zeros: fails in float64",
    ("pyro", "MatrixExponential"): "exp(M) applied by a truncated series",
}

CATALOG_ENTRIES = [
    (lib, e) for lib in LIBRARIES if lib != "invlin" and _installed(lib) for e in catalog(lib)
]


@pytest.mark.parametrize(
    "lib, entry", CATALOG_ENTRIES, ids=[f"{lib}-{e.name}" for lib, e in CATALOG_ENTRIES]
)
def test_catalog_entry_constructs_adapts_and_runs(lib: str, entry: Entry) -> None:
    layer = entry.factory(features=N)
    adapter = adapt(layer, N, name=entry.name)
    assert adapter.library == ("torch" if "torch.distributions" in entry.note else lib)
    assert load_target(entry.target)(features=N).__class__ is layer.__class__
    x = inputs(adapter).to(torch.float32)
    adapter.to(dtype=torch.float32)
    y, ld = adapter.forward(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    assert ld.numel() in (1, x.shape[0])


@pytest.mark.parametrize(
    "lib, entry",
    [(lib, e) for lib, e in CATALOG_ENTRIES if (lib, e.name) not in KNOWN],
    ids=[f"{lib}-{e.name}" for lib, e in CATALOG_ENTRIES if (lib, e.name) not in KNOWN],
)
def test_catalog_entry_conforms_in_float64(lib: str, entry: Entry) -> None:
    """Sign, direction and reshaping of every adapter, on the layers whose library is right."""
    adapter = adapt(entry.factory(features=N), N, name=entry.name).to(dtype=F64)
    assert_conforms(adapter, inputs(adapter))


@pytest.mark.parametrize(
    "lib, entry", CATALOG_ENTRIES, ids=[f"{lib}-{e.name}" for lib, e in CATALOG_ENTRIES]
)
def test_linear_catalog_layers_matrix_is_the_jacobian(lib: str, entry: Entry) -> None:
    adapter = adapt(entry.factory(features=N), N, name=entry.name).to(dtype=F64)
    m = adapter.matrix()
    if m is None:
        pytest.skip("not a linear layer")
    jac = _jacobian(adapter.forward, inputs(adapter)[0])
    # Both sides are float64 products of the factors (rounding γₙ: κ = n); normflows' forward
    # applies an inverse of what it holds, which matrix() inverts in float64 too (κ = n·κ(W)).
    kappa = float(N) * (kappa1(m) if lib == "normflows" else 1.0)
    # pyro's MatrixExponential included: matrix() is the truncated series it applies.
    ratio = forward_ratio(m, jac, kappa=kappa, dtype=F64).value
    assert ratio <= ALLOWED, ratio


def test_nflows_batch_shapes_are_flattened() -> None:
    pytest.importorskip("nflows")
    entry = next(e for e in catalog("nflows") if e.name == "MaskedAffineAutoregressiveTransform")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    x = inputs(adapter, batch=(2, 3))
    y, ld = adapter.forward(x)
    assert y.shape == x.shape and ld.shape == (2, 3)
    flat_y, flat_ld = adapter.forward(x.reshape(6, N))
    assert torch.equal(flat_y.reshape(2, 3, N), y) and torch.equal(flat_ld.reshape(2, 3), ld)
    _, ld1 = adapter.forward(x[0, 0])  # batch shape ()
    assert ld1.shape == ()


def test_nflows_lu_set_matrix() -> None:
    pytest.importorskip("nflows")
    entry = next(e for e in catalog("nflows") if e.name == "LULinear")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e5)
    with pytest.raises(Unsupported):
        adapter.set_matrix(w)
    fit = adapter.admissible(w)
    assert bool((torch.diagonal(torch.linalg.lu(fit)[2]) > adapter.layer.eps).all())
    assert singular_values_ratio(fit, w, scaled=True) <= ALLOWED
    adapter.set_matrix(fit)
    assert factor_ratio(adapter.matrix(), fit) <= ALLOWED
    x = inputs(adapter)
    xb, _ = adapter.inverse(adapter.forward(x)[0])
    assert forward_ratio(xb, x, kappa=kappa1(fit), dtype=F64).value <= ALLOWED


def test_nflows_set_matrix_invalidates_the_cache() -> None:
    pytest.importorskip("nflows")
    entry = next(e for e in catalog("nflows") if e.name == "LULinear")
    adapter = adapt(entry.factory(features=N), N)  # float32: nflows' cached inverse needs it
    adapter.train(False)
    adapter.layer.use_cache(True)
    x = inputs(adapter).float()
    adapter.forward(x), adapter.inverse(x)  # fill the caches
    fit = adapter.admissible(ill_conditioned(N, 10.0))
    adapter.set_matrix(fit)
    m = adapter.matrix()
    y, _ = adapter.forward(x)
    expected = x.double() @ m.mT + adapter.layer.bias.detach().double()
    assert forward_ratio(y, expected, kappa=kappa1(m), dtype=torch.float32).value <= ALLOWED


def test_nflows_naive_set_matrix_is_exact() -> None:
    pytest.importorskip("nflows")
    entry = next(e for e in catalog("nflows") if e.name == "NaiveLinear")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e8)
    adapter.set_matrix(w)
    assert torch.equal(adapter.matrix(), w)


def test_zuko_lu_set_matrix() -> None:
    pytest.importorskip("zuko")
    entry = next(e for e in catalog("zuko") if e.name == "LULinearTransform")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e6)
    fit = adapter.admissible(w)
    assert singular_values_ratio(fit, w) <= ALLOWED
    adapter.set_matrix(fit)
    assert factor_ratio(adapter.matrix().mT, fit.mT) <= ALLOWED
    x = inputs(adapter)
    xb, _ = adapter.inverse(adapter.forward(x)[0])
    assert forward_ratio(xb, x, kappa=kappa1(fit), dtype=F64).value <= ALLOWED


def test_zuko_bisection_domain() -> None:
    pytest.importorskip("zuko")
    entry = next(e for e in catalog("zuko") if e.name == "SOSPF")
    assert adapt(entry.factory(features=N), N).domain() == (-10.0, 10.0)


def test_normflows_affine_set_matrix() -> None:
    pytest.importorskip("normflows")
    entry = next(e for e in catalog("normflows") if e.name == "InvertibleAffine")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e5)
    adapter.set_matrix(w)
    # the layer holds P L U = w⁻ᵀ; matrix() inverts it again: two float64 inversions
    assert forward_ratio(adapter.matrix(), w, kappa=kappa1(w) ** 2, dtype=F64).value <= ALLOWED
    x = inputs(adapter)
    xb, _ = adapter.inverse(adapter.forward(x)[0])
    assert forward_ratio(xb, x, kappa=kappa1(w), dtype=F64).value <= ALLOWED


def test_normflows_sign_convention_is_not_negated() -> None:
    """A wrong normflows adapter that negated (as if forward were the data → noise map with
    the inverse's log|det|) is caught by the same helper."""
    pytest.importorskip("normflows")
    entry = next(e for e in catalog("normflows") if e.name == "AffineCouplingBlock")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    good = assert_conforms(adapter, inputs(adapter))
    bad = measure(_Broken(adapter, "sign"), inputs(adapter))
    assert good["forward"] <= ALLOWED < bad["forward"]


def test_freia_set_matrix_and_wrong_rev_reading_is_caught() -> None:
    pytest.importorskip("FrEIA")
    entry = next(e for e in catalog("freia") if e.name == "FixedLinearTransform")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e6)
    adapter.set_matrix(w)
    assert torch.equal(adapter.matrix(), w)
    x = inputs(adapter)
    xb, _ = adapter.inverse(adapter.forward(x)[0])
    assert forward_ratio(xb, x, kappa=kappa1(w), dtype=F64).value <= ALLOWED
    # an adapter that negated rev=True's value (misreading FrEIA's convention) fails
    coupling = next(e for e in catalog("freia") if e.name == "RNVPCouplingBlock")
    ok = adapt(coupling.factory(features=N), N).to(dtype=F64)
    assert measure(_Broken(ok, "inverse-sign"), inputs(ok))["inverse"] > ALLOWED


def test_pyro_lower_cholesky_set_matrix() -> None:
    pytest.importorskip("pyro")
    entry = next(e for e in catalog("pyro") if e.name == "LowerCholeskyAffine")
    adapter = adapt(entry.factory(features=N), N).to(dtype=F64)
    w = ill_conditioned(N, 1e4)
    with pytest.raises(Unsupported):
        adapter.set_matrix(w)
    fit = adapter.admissible(w)
    assert singular_values_ratio(fit, w) <= ALLOWED
    adapter.set_matrix(fit)
    assert torch.equal(adapter.matrix(), fit)


# -- library findings, each a minimal reproduction (they fail once a library changes) ----------
def test_finding_freia_learned_elementwise_scaling_rev_sign() -> None:
    fm = pytest.importorskip("FrEIA.modules")
    layer = fm.LearnedElementwiseScaling([(3,)])
    with torch.no_grad():
        layer.s.fill_(0.5)
    (y,), jac = layer([torch.ones(2, 3)])
    (_,), jac_rev = layer([y], rev=True)
    assert float(jac) == pytest.approx(1.5) and float(jac_rev) == pytest.approx(1.5)  # not −1.5
    assert jac.shape == (1,)  # not the batch shape (2,)
    assert float(fm.LearnedElementwiseScaling([(3,)], init_scale=2.0).s.sum()) == 0.0


def test_finding_nflows_naive_linear_inverse_raises() -> None:
    nt = pytest.importorskip("nflows.transforms")
    with pytest.raises(RuntimeError, match=r"torch\.solve"):
        nt.NaiveLinear(3).inverse(torch.zeros(2, 3))


def test_finding_nflows_cached_inverse_builds_a_default_dtype_eye() -> None:
    nt = pytest.importorskip("nflows.transforms")
    layer = nt.LULinear(3, using_cache=True).to(F64).eval()
    with pytest.raises(RuntimeError, match="same dtype"):
        layer.inverse(torch.zeros(2, 3, dtype=F64))


def test_finding_pyro_affine_autoregressive_float64_inverse() -> None:
    pt = pytest.importorskip("pyro.distributions.transforms")
    t = pt.affine_autoregressive(3).to(F64)
    with pytest.raises(RuntimeError, match="dtype"):
        t.inv(torch.zeros(2, 3, dtype=F64))


def test_finding_scalar_logdet_shapes() -> None:
    nf = pytest.importorskip("normflows")
    _, ld = nf.flows.AffineConstFlow((3,))(torch.zeros(4, 3))
    assert ld.shape == ()  # () instead of the batch shape (4,)


def test_finding_pyro_matrix_exponential_is_a_truncated_series() -> None:
    pt = pytest.importorskip("pyro.distributions.transforms")
    t = pt.matrix_exponential(3)
    with torch.no_grad():
        t.weights.copy_(torch.tensor(np.diag([2.0, 0.0, 0.0])))
    y = t(torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(y[0, 0]) != pytest.approx(math.exp(2.0), rel=1e-6)  # 8 terms: 7.3887 vs 7.3891
