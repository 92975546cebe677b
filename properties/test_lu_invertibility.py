"""Theme 5 — LU invertibility: round trips, log|det| against the oracle and autograd, near-zero
pivots.

* For single LU layers (NumPy ``LULayer``, torch ``LULinear`` in float64 and float32) and whole
  LU-Nets (NumPy and torch), inverse∘forward and forward∘inverse return their input within 30
  units of the first-order round-trip error of :func:`_lu.roundtrip_scale` (per sample, scaled by
  ‖A⁻¹‖ going back and ‖A‖ going forward: the κ-scaled bound of a factored map).
* log|det| of a layer matches the oracle's log|det| of the exact product L·U of the factors the
  layer holds, within the engine's bound (n·κ₁·ε, fresh); the log|det| of layers and nets matches
  slogdet of the autograd Jacobian within the same units widened by the Jacobian's own error:
  autograd forms J = ∏ M_i with per-row rounding ≤ B·nε·∏|M_i|, and |Δ log|det J|| ≤
  n‖J⁻¹‖‖ΔJ‖, so κ is taken as κ₁(J) + B·‖J⁻¹‖₁‖∏|M_i|‖₁.
* As a diagonal entry of U approaches zero (down to subnormals, and exactly zero): log|det| is
  never NaN — finite and equal to Σ log|u_ii| (to (n + 1)ε·Σ|log|u_ii||, a sum of n rounded
  logarithms) or −∞ exactly when some u_ii is 0 in the layer's dtype — and the inverse either
  raises ValueError naming the index of the zero or returns values without NaN.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from _lu import (
    ALPHA,
    exact_lu,
    held_factors,
    reference_net,
    roundtrip_scale,
    stages,
    torch_layer,
    torch_net,
)
from _tracking import steer
from hypothesis import example, given, target
from hypothesis import strategies as st

from invlin.nn.lu import LULinear
from invlin.oracle import evaluate
from invlin.reference.activations import LeakySoftplus
from invlin.reference.lu import LULayer
from invlin.testing import THRESHOLD, ToleranceError, assert_logabsdet, eps, kappa1
from invlin.testing.cases import lu_factors as build_lu
from invlin.testing.reproduce import reproducible
from invlin.testing.strategies import lu_factors, lu_nets, seeds

IMPLS = ("numpy", "torch64", "torch32")
TORCH = {"torch64": torch.float64, "torch32": torch.float32}


def _dtype(impl: str) -> str:
    return "float32" if impl == "torch32" else "float64"


def _run(model, x: np.ndarray, direction: str, impl: str) -> np.ndarray:
    if impl == "numpy":
        f, g = (
            (model.forward, model.inverse)
            if direction == "inverse∘forward"
            else (model.inverse, model.forward)
        )
        return g(f(x)[0])[0]
    t = torch.from_numpy(x).to(TORCH[impl])
    with torch.no_grad():
        if direction == "inverse∘forward":
            out = model.inverse(model(t)[0])[0]
        else:
            out = model(model.inverse(t)[0])[0]
    return out.double().numpy()


def _values(flow, x: np.ndarray, direction: str) -> list[np.ndarray]:
    """Values of one sample at every level, in float64 (from the input end of the trip)."""
    act = LeakySoftplus(ALPHA)
    if direction == "inverse∘forward":
        vals = [x]
        for s in flow:
            v = vals[-1]
            vals.append(s.lower @ (s.upper @ v) + s.bias if s.kind == "lin" else act(v))
        return vals
    vals = [x]
    for s in reversed(flow):
        v = vals[-1]
        if s.kind == "lin":
            vals.append(np.linalg.solve(s.lower @ s.upper, v - s.bias))
        else:
            vals.append(act.inverse(v))
    return vals[::-1]


def _build(blocks, impl: str):
    if impl == "numpy":
        model = (
            reference_net(blocks)
            if len(blocks) > 1
            else LULayer(blocks[0].lower, blocks[0].upper, blocks[0].bias)
        )
        layers = model.layers if len(blocks) > 1 else [model]
    else:
        model = (
            torch_net(blocks, TORCH[impl])
            if len(blocks) > 1
            else torch_layer(blocks[0], TORCH[impl])
        )
        layers = [m for m in model.modules() if isinstance(m, LULinear)]
    factors = []
    for layer in layers:
        low, up, b = held_factors(layer)
        inv = evaluate(exact_lu(low, up)).inverse
        factors.append((low, up, b, float(np.abs(inv).sum(axis=0).max())))
    return model, stages(factors)


@given(
    blocks=st.one_of(lu_nets(max_blocks=1), lu_nets(max_blocks=3)),
    impl=st.sampled_from(IMPLS),
    direction=st.sampled_from(("inverse∘forward", "forward∘inverse")),
    seed=seeds(),
    scale=st.integers(-3, 3),
)
def test_round_trips_are_identity_within_kappa_scaled_bound(blocks, impl, direction, seed, scale):
    model, flow = _build(blocks, impl)
    n, dt = blocks[0].n, _dtype(impl)
    x = np.random.default_rng(seed).standard_normal((3, n)) * 2.0**scale
    x = x.astype(dt).astype(np.float64)  # the input as the layer's dtype holds it
    out = _run(model, x, direction, impl)
    worst = 0.0
    with reproducible(
        f"# {impl}: {direction} of each row of x through the LU layer(s)", blocks=blocks, x=x
    ):
        for row, got in zip(x, out, strict=True):
            unit = roundtrip_scale(flow, _values(flow, row, direction), direction, eps(dt))
            err = float(np.abs(got - row).sum())
            if not (np.all(np.isfinite(got)) and err <= THRESHOLD * unit):
                raise ToleranceError(
                    f"{direction} ({impl}): error {err:.4g} is "
                    f"{err / unit:.4g} round-trip units > {THRESHOLD}"
                )
            worst = max(worst, err / unit)
    steer("round-trip error / unit", worst)


@given(case=lu_factors(), impl=st.sampled_from(IMPLS))
def test_layer_logdet_matches_oracle_of_exact_lu(case, impl):
    if impl == "numpy":
        layer = LULayer(case.lower, case.upper, case.bias)
        ld = layer.logabsdet()
    else:
        layer = torch_layer(case, TORCH[impl])
        with torch.no_grad():
            ld = float(layer.logabsdet())
    low, up, _ = held_factors(layer)
    truth = evaluate(exact_lu(low, up))
    with reproducible("# log|det| of the layer vs evaluate(exact L·U)", case=case):
        assert_logabsdet(
            out=ld,
            expected=truth.logabsdet,
            n=case.n,
            kappa=max(1, truth.kappa),
            dtype=_dtype(impl),
        )
        sign = int(np.prod(np.sign(np.diagonal(up))))
        if sign != truth.sign:
            raise ToleranceError(f"Π sign(u_ii) = {sign} but the oracle's sign is {truth.sign}")


@given(blocks=lu_nets(max_blocks=3), dtype=st.sampled_from(("float64", "float32")), seed=seeds())
def test_logdet_matches_autograd_jacobian(blocks, dtype, seed):
    tdt = getattr(torch, dtype)
    model = torch_net(blocks, tdt) if len(blocks) > 1 else torch_layer(blocks[0], tdt)
    n = blocks[0].n
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(tdt)
    jac = torch.autograd.functional.jacobian(lambda t: model(t)[0], x).double()
    with torch.no_grad():
        ld = float(model(x)[1])
    _, expected = np.linalg.slogdet(jac.numpy())
    # ∏|M_i|: |W_B|·|D_{B−1}|·…·|W_1| at this x (D_i = diag f′ of the pre-activations).
    prod = np.eye(n)
    z = x.clone()
    with torch.no_grad():
        for m in model.layers if len(blocks) > 1 else [model]:
            if isinstance(m, LULinear):
                prod = np.abs(m.weight().double().numpy()) @ prod
                z = m(z)[0]
            else:
                prod = np.exp(m.log_derivative(z).double().numpy())[:, None] * prod
                z = m(z)[0]
    jinv = np.linalg.inv(jac.numpy())
    blocks_b = len(blocks)
    kappa = (
        kappa1(jac.numpy())
        + blocks_b * np.abs(jinv).sum(axis=0).max() * np.abs(prod).sum(axis=0).max()
    )
    with reproducible(
        "# torch LUNet/LULinear log|det| vs slogdet(autograd Jacobian) at x",
        blocks=blocks,
        seed=seed,
    ):
        assert_logabsdet(out=ld, expected=expected, n=n, kappa=kappa, dtype=dtype)


def _mp_logdet(diag: np.ndarray) -> float:
    with mpmath.workdps(30):
        return float(mpmath.fsum(mpmath.log(abs(mpmath.mpf(float(d)))) for d in diag))


def _check_pivots(case, impl: str, y: np.ndarray) -> float:
    """The near-zero-pivot checks for one implementation; returns min |u_ii| as held."""
    dt = _dtype(impl)
    if impl == "numpy":
        layer = LULayer(case.lower, case.upper, case.bias)
        diag = np.diagonal(layer.upper)
        inp = y
    else:
        layer = torch_layer(case, TORCH[impl])
        diag = layer.upper_diag.detach().double().numpy()
        inp = torch.from_numpy(y).to(TORCH[impl])
    if impl == "numpy":
        _, ld = layer.forward(y)
    else:
        with torch.no_grad():
            ld = layer(inp)[1].double().numpy()
    if np.any(np.isnan(ld)) or np.any(ld == np.inf):
        raise ToleranceError(f"{impl}: forward log|det| is {ld.tolist()} (NaN or +inf)")
    if np.any(diag == 0):
        if not np.all(ld == -np.inf):
            raise ToleranceError(f"{impl}: a zero pivot must give log|det| = -inf, got {ld}")
        with pytest.raises(ValueError, match="index"):
            layer.inverse(inp)
        return 0.0
    expected = _mp_logdet(diag)
    tol = (case.n + 1) * eps(dt) * float(np.abs(np.log(np.abs(diag))).sum())
    if not np.all(np.abs(ld - expected) <= tol):
        raise ToleranceError(
            f"{impl}: log|det| {ld[0]!r} vs Σ log|u_ii| = {expected!r}: off by "
            f"{abs(ld[0] - expected):.3g} > {tol:.3g}"
        )
    try:
        if impl == "numpy":
            x, ldi = layer.inverse(y)
        else:
            with torch.no_grad():
                x, ldi = (t.double().numpy() for t in layer.inverse(inp))
    except ValueError as exc:  # reported: must name the index of the offending pivot
        if "index" not in str(exc) and "upper_diag[" not in str(exc):
            raise ToleranceError(f"{impl}: ValueError without the pivot's index: {exc}") from exc
        return float(np.abs(diag).min())
    if np.any(np.isnan(x)) or np.any(np.isnan(ldi)):
        raise ToleranceError(
            f"{impl}: inverse returned NaN for a nonzero pivot "
            f"(min |u_ii| = {np.abs(diag).min():.3g}, diag(U) = "
            f"{diag.tolist()})"
        )
    return float(np.abs(diag).min())


# Found by this property: |u_22| = 1e-305 overflows the solve, the rows above form inf − inf
# and the NumPy and torch inverses returned NaN (now a ValueError naming the pivot).
_TINY_PIVOT = build_lu(
    np.array([1.0, -1.0, 1e-305, 1.0, 1.0, 1.0]), np.random.default_rng(0), offdiag=0.5
)


@given(
    case=st.one_of(lu_factors(tiny=3), lu_factors(tiny=1, zero=True)),
    seed=seeds(),
    scale=st.integers(0, 20),
)
@example(case=_TINY_PIVOT, seed=0, scale=10)
def test_near_zero_pivot_is_reported_never_nan(case, seed, scale):
    y = np.random.default_rng(seed).standard_normal((8, case.n)) * 2.0**scale
    smallest = 1.0
    with reproducible(
        "# forward/inverse of LULayer(case.lower, case.upper, case.bias) and of "
        "LULinear (float64, float32) holding them, at the rows of y",
        case=case,
        y=y,
    ):
        for impl in IMPLS:
            smallest = min(smallest, _check_pivots(case, impl, y))
    if smallest > 0:
        target(-math.log10(smallest), label="-log10 min |u_ii|")
