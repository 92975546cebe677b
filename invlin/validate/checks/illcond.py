"""Ill-conditioned weights: the inverse against the oracle within κ·ε-scaled bounds."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from hypothesis import strategies as st

from invlin.oracle import OracleBudgetError, OracleSingularError, evaluate
from invlin.testing import logdet_ratio
from invlin.testing.cases import MatrixCase, conditioned_matrix
from invlin.testing.strategies import conditioned_matrices, wide_inputs
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    fresh,
    move,
    numpy64,
    result,
    skipped,
    supported,
    tensor,
)
from invlin.validate.checks.truth import Local, scale_input, worst_rows
from invlin.validate.protocol import Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Probe, tensor_literal

__all__ = ["KAPPAS", "conditioning"]

#: The condition numbers always tried (explicit cases), per dtype: κ·ε ≤ 1.1e-10 in float64 and
#: ≤ 6e-4 in float32, so every one is well inside what the dtype can resolve. Hypothesis also
#: draws κ = 10^x with x between 1 and the largest exponent.
KAPPAS: dict[str, tuple[float, ...]] = {"float64": (1e2, 1e4, 1e6), "float32": (1e2, 1e3, 1e4)}


def _held(adapter: object, w: np.ndarray, ctx: CheckContext) -> np.ndarray:
    """Set ``w`` (LU layers: its pivot-free row order, same singular values) and return the
    matrix the layer really holds (float64)."""
    wt = torch.as_tensor(w, dtype=torch.float64)
    admissible = getattr(adapter, "admissible", None)
    if callable(admissible):
        wt = admissible(wt)
    adapter.set_matrix(wt.to(device=ctx.device, dtype=ctx.torch_dtype))  # type: ignore[attr-defined]
    held = adapter.matrix()  # type: ignore[attr-defined]
    if held is None:
        raise LayerFault("adapter.matrix() returned None after set_matrix")
    return numpy64(held)


def _local_of(w: np.ndarray, inverse: np.ndarray, kappa: float, logabsdet: float, b: int) -> Local:
    n = w.shape[0]
    norm = float(np.abs(w).sum(axis=0).max())
    norm_inv = float(np.abs(inverse).sum(axis=0).max())
    full = np.full(b, 1.0)
    return Local(
        np.broadcast_to(w, (b, n, n)),
        kappa * full,
        norm * full,
        norm_inv * full,
        full,
        logabsdet * full,
        np.zeros((b, n)),
        None,
        None,
    )


def conditioning(make: Make, ctx: CheckContext) -> CheckResult:
    """Where the layer's matrix can be set: W = Q₁·diag(s)·Q₂ᵀ with κ₂ = 10², 10⁴, 10⁶ (float64;
    10², 10³, 10⁴ in float32) and Hypothesis-drawn κ, sign, spectrum shape and scale; then

    * inverse forward error against the oracle: x* = W⁻¹(y − b) from the certified inverse of
      the matrix the layer holds; a backward-stable solve gives ‖x̂ − x*‖/‖x*‖ ≲ cε(κ +
      ‖W⁻¹‖‖y‖/‖x*‖) (the bias enters through |b| ≤ |y| + |Wx|): :func:`forward_ratio` with that
      κ (κ₁ from the oracle) ≤ THRESHOLD. Normal equations or an explicit inverse of WᵀW err by
      κ²ε, i.e. a ratio ≈ κ, and fail from κ ≈ 10²–10³ on;
    * round trip x → y → x with x = x* rounded: same bound;
    * inverse log|det| against the oracle's −log|det W|: (nκ₁ + |ℓ*|)ε (:func:`logdet_ratio`).

    Skipped when the adapter cannot set a matrix.
    """
    name = "conditioning"
    n = ctx.features
    probe_layer = fresh(make, ctx)
    w0 = np.eye(n)
    reason = supported(lambda: _held(probe_layer, w0, ctx))
    if reason is not None:
        return skipped(name, ctx, f"the layer's matrix cannot be set: {reason}")
    if probe_layer.matrix() is None:
        return skipped(name, ctx, "the adapter sets a matrix but cannot report it")
    kappas = KAPPAS[ctx.dtype]
    top = math.log10(kappas[-1])
    unset = {"count": 0}

    def probe(case: tuple[MatrixCase, np.ndarray]) -> Probe:
        mcase, y = case
        tested = fresh(make, ctx)
        try:
            held = _held(tested, mcase.a.astype(np.float64), ctx)
        except Unsupported as exc:
            unset["count"] += 1
            return Probe(ok=True, judged=0, message=f"matrix not representable: {exc}")
        try:
            oracle = evaluate(held)
        except OracleSingularError as exc:
            return Probe(
                ok=False,
                message=f"the matrix the layer holds is singular: {exc}",
                example={"kappa_target": mcase.kappa, "matrix": held},
            )
        except OracleBudgetError as exc:  # no verdict on this case, not the layer's fault
            return Probe(ok=True, judged=0, message=f"not judged: {exc}")
        ref = move(copy.deepcopy(tested), torch.float64, "cpu")
        bias = numpy64(ref.forward(torch.zeros(1, n, dtype=torch.float64))[0])[0]
        x_star = (y - bias) @ oracle.inverse.T
        x_hat, ladj_inv = tested.inverse(tensor(y, ctx))
        b = y.shape[0]
        loc = _local_of(held, oracle.inverse, oracle.kappa, oracle.logabsdet, b)
        parts = [
            (
                worst_rows(numpy64(x_hat), x_star, scale_input(loc, x_star, y), ctx.dtype),
                "inverse vs the oracle's x* = W⁻¹(y − b)",
            )
        ]
        x0 = numpy64(tensor(x_star, ctx))
        y0, _ = tested.forward(tensor(x0, ctx))
        x1, _ = tested.inverse(y0.detach().clone())
        parts.append(
            (
                worst_rows(numpy64(x1), x0, scale_input(loc, x0, numpy64(y0)), ctx.dtype),
                "round trip x → y → x",
            )
        )
        li = numpy64(ladj_inv).reshape(-1)
        lr = logdet_ratio(
            li,
            -oracle.logabsdet,
            n=n,
            kappa=oracle.kappa + abs(oracle.logabsdet) / n,
            dtype=ctx.dtype,
        )
        w, what = max(parts, key=lambda t: t[0].value)
        example = {
            "kappa_target": mcase.kappa,
            "kappa1": oracle.kappa,
            "sign": mcase.sign,
            "matrix": held,
            "y": y,
        }
        if not lr.passed(ALLOWED) and (w.ratio is None or lr.value > w.value):
            example.update(ladj_inv=li, oracle_logabsdet=oracle.logabsdet)
            return Probe(
                ok=False,
                ratio=lr.value,
                allowed=ALLOWED,
                example=example,
                message=(
                    f"inverse log|det| vs the oracle's −log|det W| at κ₁ "
                    f"{oracle.kappa:.3g}: ratio {lr.value:.3g}"
                ),
            )
        if w.ratio is None:
            return Probe(ok=True, judged=0, message="no row could be judged")
        ratio = max(w.value, lr.value)
        ok = w.ratio.passed(ALLOWED) and lr.passed(ALLOWED)
        example.update(compared=what, row=w.row)
        msg = (
            f"{what} at κ₁ {oracle.kappa:.3g}: ratio {w.value:.3g} (row {w.row}, relative "
            f"error {w.ratio.rel_error:.3g}); log|det| ratio {lr.value:.3g}"
        )
        return Probe(
            ok=ok,
            ratio=ratio,
            allowed=ALLOWED,
            example=example,
            judged=b,
            message=msg if ok else f"inaccurate for an ill-conditioned matrix: {msg}",
        )

    def snippet(case: tuple[MatrixCase, np.ndarray]) -> str:
        mcase, y = case
        return (
            f"import numpy as np\n"
            f"w = torch.tensor({mcase.a.astype(np.float64).tolist()!r}, "
            f"dtype=torch.float64)\n"
            f"if hasattr(adapter, 'admissible'):\n    w = adapter.admissible(w)\n"
            f"adapter.set_matrix(w.to(torch.{ctx.dtype}))\n"
            f"held = adapter.matrix().double().cpu()\n"
            f"y = {tensor_literal(y, ctx.dtype)}\n"
            f"x_hat, _ = adapter.inverse(y)\n"
            f"b = adapter.forward(torch.zeros(1, {n}, dtype=torch.{ctx.dtype}))[0].double()\n"
            f"x_star = torch.linalg.solve(held, (y.double() - b).T).T  # or invlin.oracle\n"
            f"print('relative error per row:', (x_hat.double() - x_star).abs().sum(-1) / "
            f"x_star.abs().sum(-1))"
        )

    # y: a linear layer's codomain is Rⁿ; a batch of rows per matrix costs one solve
    ys = wide_inputs(n, dtype=ctx.dtype, max_rows=16, mixes=("ordinary",))
    matrices = conditioned_matrices(n, ctx.dtype, min_log_kappa=1.0, max_log_kappa=top)
    rng = np.random.default_rng(ctx.seed)
    y_fixed = np.asarray(np.linspace(-1.0, 1.0, 2 * n).reshape(2, n), dtype=ctx.dtype)
    explicit = [
        (conditioned_matrix(n, k, 1, rng, dtype=ctx.dtype), y_fixed.astype(np.float64))
        for k in kappas
    ]
    out = ctx.search(
        st.tuples(matrices, ys),
        probe,
        snippet=snippet,
        share=0.05,
        minimum=len(kappas),
        explicit=explicit,
        describe=lambda c: {"kappa_target": c[0].kappa, "matrix": c[0].a, "y": c[1]},
    )
    res = result(name, ctx, out, f"accurate up to κ = {kappas[-1]:g}")
    if unset["count"]:
        res.message += f"; {unset['count']} matrices could not be set and were not judged"
    return res
