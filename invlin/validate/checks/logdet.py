"""log|det| checks: against float64 autograd slogdet, against the oracle, forward vs inverse."""

from __future__ import annotations

import math

import numpy as np
import torch

from invlin.oracle import OracleSingularError, evaluate
from invlin.testing import eps, forward_ratio, logdet_ratio
from invlin.testing.strategies import layer_inputs
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    ShapeMismatch,
    batch_values,
    numpy64,
    pair,
    result,
    skipped,
    tensor,
)
from invlin.validate.checks.truth import (
    Local,
    kappa_logdet,
    local,
    scale_input,
    worst_logdet,
)
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["logdet_autograd", "logdet_consistency", "logdet_oracle"]


def _shape_fail(exc: ShapeMismatch, x: np.ndarray) -> Probe:
    return Probe(ok=False, message=f"{exc} (the batch-shape check reports this too)",
                 example={"x": x})


def _forward_snippet(ctx: CheckContext, x: np.ndarray, extra: str) -> str:
    return (f"x = {tensor_literal(x, ctx.dtype)}\n"
            f"y, ladj = adapter.forward(x)\n{extra}")


def _truth_error(loc: Local) -> np.ndarray:
    """Error bound of the float64 autograd truth ℓ* per sample: ‖∇ₓℓ‖_∞‖J⁻¹‖₁‖y‖₁ε₆₄.

    Autograd formulas that reuse the computed output (σ′ = y(1 − y), tanh′ = 1 − y², exp′ = y)
    return the exact Jacobian at the point x + Δx that the rounded output belongs to,
    ‖Δx‖₁ ≲ ‖J⁻¹‖₁‖y‖₁ε₆₄; ℓ* then errs by ≲ ‖∇ₓℓ‖_∞‖Δx‖₁. (Measured: 3.5e-13 at ℓ* = −22.6
    for a sigmoid with x near ±7.6 — 1600 ulps — against this bound's 5e-13.)
    """
    if loc.grad_ladj is None:
        return np.zeros(loc.kappa.shape[0])
    with np.errstate(all="ignore"):
        err = np.abs(loc.grad_ladj).max(axis=1) * loc.norm_inv * np.abs(loc.y).sum(axis=1) * \
            eps("float64")
    return np.where(np.isfinite(err), err, np.inf)


def logdet_autograd(make: Make, ctx: CheckContext) -> CheckResult:
    """The forward log|det| matches slogdet of the float64 autograd Jacobian, per sample.

    Truth: a float64 CPU copy of the layer (its float32 parameters are exact in float64), J by
    autograd, ℓ* = log|det J| by LU (error ≲ nκε₆₄, negligible in float32, within the bound in
    float64; but autograd's derivative formulas need not be accurate to ε₆₄: torch's sigmoid
    backward forms y(1 − y) from the rounded y, so the truth itself errs by up to
    ‖∇ₓℓ‖_∞‖J⁻¹‖₁‖y‖₁ε₆₄ (:func:`_truth_error`), added to the bound as that/(nε) in κ_eff — it
    matters in float64 only). Bound: a
    backward-stable computation errs by |Δℓ| ≲ ‖J⁻¹‖‖ΔJ‖ ≲ nκε, plus the
    rounding of the value itself ≲ ε|ℓ*|, plus ε·Σᵢ|∂ℓ/∂xᵢ·xᵢ| for a nonlinear layer evaluated
    at an ε-perturbed input — :func:`logdet_ratio` with κ_eff = κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n,
    ≤ THRESHOLD. A sign error or a missing factor moves ℓ by O(1), i.e. by 10⁷ (float32) to
    10¹⁶ (float64) ratio units.
    """
    name = "logdet_autograd"
    tested, ref = pair(make, ctx)
    n = ctx.features
    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain())

    def probe(x: np.ndarray) -> Probe:
        _, ladj = tested.forward(tensor(x, ctx))
        try:
            got = batch_values(ladj, x.shape[:-1], "the forward log|det|")
        except ShapeMismatch as exc:
            return _shape_fail(exc, x)
        loc = local(ref, x)
        slack = _truth_error(loc)
        kap = kappa_logdet(loc, n) + slack / (n * eps(ctx.dtype))
        w = worst_logdet(got, loc.logabsdet, kap, n, ctx.dtype)
        if w.ratio is None:
            return Probe(ok=True, message=f"{w.skipped} rows with a singular Jacobian")
        j = w.row
        msg = (f"row {j}: log|det| {got[j]:.17g}, autograd slogdet {loc.logabsdet[j]:.17g}, "
               f"ratio {w.value:.3g} (κ_eff {w.kappa:.3g})")
        ok = w.ratio.passed(ALLOWED)
        example = {"x": x, "row": j, "ladj": got[j], "slogdet": loc.logabsdet[j],
                   "det_sign": loc.sign[j], "kappa_eff": w.kappa, "truth_error": slack[j]}
        return Probe(ok=ok, ratio=w.value, allowed=ALLOWED, example=example,
                     message=msg if ok else f"log|det| disagrees with autograd: {msg}")

    def snippet(x: np.ndarray) -> str:
        # The float64 copy is taken before the layer runs: a called torch Transform caches
        # non-leaf tensors, which deepcopy refuses.
        return (f"import copy\n"
                f"ref = copy.deepcopy(adapter).to(dtype=torch.float64, device='cpu')\n"
                f"x = {tensor_literal(x, ctx.dtype)}\n"
                f"y, ladj = adapter.forward(x)\n"
                f"jac = torch.stack([torch.autograd.functional.jacobian(\n"
                f"    lambda r: ref.forward(r[None])[0][0], row) for row in x.double()])\n"
                f"print('layer:', ladj, 'autograd slogdet:', "
                f"torch.linalg.slogdet(jac).logabsdet)")

    out = ctx.search(strategy, probe, snippet=snippet)
    return result(name, ctx, out, "log|det| matches float64 autograd slogdet")


def _oracle_matrix(adapter: object) -> np.ndarray | None:
    w = adapter.matrix()  # type: ignore[attr-defined]
    return None if w is None else numpy64(w)


def logdet_oracle(make: Make, ctx: CheckContext) -> CheckResult:
    """For a linear layer (``adapter.matrix()`` is not None): log|det| (and the determinant's
    sign when the adapter has ``sign()``) match the arbitrary-precision oracle.

    The oracle evaluates the matrix the float64 copy holds, exactly as stored, and returns
    certified ℓ* and κ₁. Bound as :func:`logdet_autograd`: (nκ₁ + |ℓ*|)ε, i.e.
    :func:`logdet_ratio` with κ_eff = κ₁ + |ℓ*|/n, ≤ THRESHOLD; the sign must be exact. The
    matrix must also be the layer's Jacobian (float64 autograd, :func:`forward_ratio` with κ = 1
    per row, ε of the dtype under test): when it is not — an adapter that extracted the wrong
    matrix, or a layer that only approximates its matrix (a truncated series for exp(M)) — the
    check fails with that message instead of comparing against a different matrix.
    """
    name = "logdet_oracle"
    tested, ref = pair(make, ctx)
    w = _oracle_matrix(ref)
    if w is None:
        return skipped(name, ctx, "not a linear layer: the adapter gives no matrix")
    n = ctx.features
    try:
        oracle = evaluate(w)
    except OracleSingularError as exc:
        return CheckResult(check=name, dtype=ctx.dtype, device=ctx.device, status="fail",
                           message=f"the layer's matrix is singular: {exc}",
                           example={"matrix": w.tolist()})
    sign_fn = getattr(tested, "sign", None)
    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain())
    kappa = oracle.kappa + abs(oracle.logabsdet) / n

    def probe(x: np.ndarray) -> Probe:
        loc = local(ref, x)
        jr = max((forward_ratio(loc.jac[j], w, kappa=1.0, dtype=ctx.dtype)
                  for j in range(x.shape[0])), key=lambda r: r.value)
        if not jr.passed(ALLOWED):
            return Probe(ok=False, ratio=jr.value, allowed=ALLOWED,
                         message=(f"adapter.matrix() is not the layer's Jacobian (ratio "
                                  f"{jr.value:.3g}); the oracle comparison would be meaningless"),
                         example={"x": x, "matrix": w, "jacobian": loc.jac[0]})
        _, ladj = tested.forward(tensor(x, ctx))
        try:
            got = batch_values(ladj, x.shape[:-1], "the forward log|det|")
        except ShapeMismatch as exc:
            return _shape_fail(exc, x)
        r = logdet_ratio(got, oracle.logabsdet, n=n, kappa=kappa, dtype=ctx.dtype)
        example = {"x": x, "ladj": got, "oracle_logabsdet": oracle.logabsdet,
                   "oracle_sign": oracle.sign, "kappa1": oracle.kappa, "matrix": w}
        msg = (f"log|det| {got[r.worst_index[0]]:.17g} vs oracle {oracle.logabsdet:.17g} "
               f"(κ₁ {oracle.kappa:.3g}), ratio {r.value:.3g}")
        if not r.passed(ALLOWED):
            return Probe(ok=False, ratio=r.value, allowed=ALLOWED, example=example,
                         message=f"log|det| disagrees with the oracle: {msg}")
        if callable(sign_fn):
            sign = np.atleast_1d(numpy64(torch.as_tensor(sign_fn())))
            if not np.all(sign == oracle.sign):
                example["layer_sign"] = sign
                return Probe(ok=False, ratio=r.value, allowed=ALLOWED, example=example,
                             message=f"det sign {sign.tolist()} but the oracle's is "
                                     f"{oracle.sign}")
            msg += f"; sign {oracle.sign:+d} exact"
        return Probe(ok=True, ratio=r.value, allowed=ALLOWED, message=msg)

    def snippet(x: np.ndarray) -> str:
        return _forward_snippet(ctx, x, (
            "from invlin.oracle import evaluate\n"
            "w = adapter.matrix().detach().double().cpu().numpy()\n"
            "print('layer:', ladj, 'oracle:', evaluate(w).logabsdet)"))

    out = ctx.search(strategy, probe, snippet=snippet, share=0.1)
    return result(name, ctx, out, "log|det| matches the oracle")


def logdet_consistency(make: Make, ctx: CheckContext) -> CheckResult:
    """The inverse's log|det| at y = f(x) is minus the forward's at x, per sample.

    Both values err by ≲ (nκ + |ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)ε (:func:`logdet_autograd`); the inverse
    sees the computed y, whose preimage moves
    from x by the round-trip error ≲ ε·κ_in‖x‖ (κ_in = κ + ‖J⁻¹‖‖y‖/‖x‖), which moves ℓ by
    ≲ ‖∇ₓℓ‖_∞·ε·κ_in‖x‖₁ (∇ₓℓ of the float64 copy's log|det|, zero for linear layers). So
    :func:`logdet_ratio` with κ_eff = κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ| + ‖∇ₓℓ‖_∞κ_in‖x‖₁)/n,
    ≤ THRESHOLD.
    """
    name = "logdet_consistency"
    tested, ref = pair(make, ctx)
    n = ctx.features
    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain())

    def probe(x: np.ndarray) -> Probe:
        y, ladj = tested.forward(tensor(x, ctx))
        _, ladj_inv = tested.inverse(y.detach().clone())
        batch = x.shape[:-1]
        try:
            fwd = batch_values(ladj, batch, "the forward log|det|")
            inv = batch_values(ladj_inv, batch, "the inverse log|det|")
        except ShapeMismatch as exc:
            return _shape_fail(exc, x)
        loc = local(ref, x)
        drift = np.abs(loc.grad_ladj).max(axis=1) * scale_input(loc, x, loc.y) / n
        with np.errstate(all="ignore"):
            kap = kappa_logdet(loc, n) + np.where(np.isfinite(drift), drift, math.inf)
        w = worst_logdet(fwd, -inv, kap, n, ctx.dtype)
        if w.ratio is None:
            return Probe(ok=True, message=f"{w.skipped} rows with a singular Jacobian")
        j = w.row
        msg = (f"row {j}: forward {fwd[j]:.17g}, −inverse {-inv[j]:.17g}, ratio "
               f"{w.value:.3g} (κ_eff {w.kappa:.3g})")
        ok = w.ratio.passed(ALLOWED)
        example = {"x": x, "row": j, "forward_ladj": fwd[j], "inverse_ladj": inv[j],
                   "kappa_eff": w.kappa}
        return Probe(ok=ok, ratio=w.value, allowed=ALLOWED, example=example,
                     message=msg if ok else f"forward and inverse log|det| disagree: {msg}")

    def snippet(x: np.ndarray) -> str:
        return _forward_snippet(ctx, x, (
            "_, ladj_inv = adapter.inverse(y.clone())\n"
            "print('forward:', ladj, 'minus inverse:', -ladj_inv)"))

    out = ctx.search(strategy, probe, snippet=snippet)
    return result(name, ctx, out, "forward and inverse log|det| agree")
