"""log|det| checks: against float64 autograd slogdet, against the oracle, forward vs inverse."""

from __future__ import annotations

import math

import numpy as np
import torch

from invlin.oracle import OracleBudgetError, OracleSingularError, evaluate
from invlin.testing import eps, forward_ratio
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
    unjudged,
)
from invlin.validate.checks.truth import (
    CrossCheck,
    Verdict,
    cross_check,
    diagonal,
    first_nonfinite,
    input_scales,
    judge_logdet,
    kappa_logdet,
    kappa_logdet_diagonal,
    kappa_reference,
    reference_finite,
    scale_input,
    truth_error,
)
from invlin.validate.checks.values import (
    SHARE,
    explicit,
    inside_codomain,
    judged_rows,
    nonfinite_probe,
    out_of_reach,
    strategy,
)
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Probe, tensor_literal

__all__ = ["logdet_autograd", "logdet_consistency", "logdet_oracle"]


def _shape_fail(exc: ShapeMismatch, x: np.ndarray) -> Probe:
    return Probe(
        ok=False, message=f"{exc} (the batch-shape check reports this too)", example={"x": x}
    )


def _forward_snippet(ctx: CheckContext, x: np.ndarray, extra: str) -> str:
    return f"x = {tensor_literal(x, ctx.dtype)}\ny, ladj = adapter.forward(x)\n{extra}"


def _parameter_term(ref: Adapter, row: np.ndarray) -> float:
    """Σ_θ |∂ℓ/∂θ·θ| of the float64 copy at one row (1, n), over its trainable parameters.

    A network of dot products and elementwise functions (a coupling's or an autoregressive
    layer's conditioner) is backward stable in its *parameters*, not its input: the computed
    output is the exact output for weights perturbed by |Δθ| ≤ γ|θ| (γ ≈ fan-in·ε), so ℓ errs
    by ≲ γ·Σ_θ |∂ℓ/∂θ||θ| — a term the Jacobian-based bound lacks (a float32 ResidualNet fed
    x ≈ 5e3 errs by 1.5e3·ε in ℓ where nκε allows 940ε; this term gives 9.6e3·ε)."""
    params = [p for p in ref.parameters() if p.is_floating_point()]
    if not params:
        return 0.0
    xt = torch.tensor(np.asarray(row, dtype=np.float64).reshape(1, -1), dtype=torch.float64)
    with torch.enable_grad():
        _, ld = ref.forward(xt)
        if not isinstance(ld, torch.Tensor) or not ld.requires_grad:
            return 0.0
        grads = torch.autograd.grad(ld.sum(), params, allow_unused=True)
    total = sum(
        float((g.detach() * p.detach()).abs().sum())
        for g, p in zip(grads, params, strict=True)
        if g is not None
    )
    return total if math.isfinite(total) else math.inf


def _ladj_rows(ladj: torch.Tensor, b: int, what: str, x: np.ndarray) -> np.ndarray | Probe:
    try:
        return batch_values(ladj, (b,), what)
    except ShapeMismatch as exc:
        return _shape_fail(exc, x)


def logdet_autograd(make: Make, ctx: CheckContext) -> CheckResult:
    """The forward log|det| matches slogdet of the float64 autograd Jacobian, per sample.

    Truth: a float64 CPU copy of the layer (its float32 parameters are exact in float64), J by
    autograd, ℓ* = log|det J| by LU (error ≲ nκε₆₄, negligible in float32, within the bound in
    float64; but autograd's derivative formulas need not be accurate to ε₆₄: torch's sigmoid
    backward forms y(1 − y) from the rounded y, so the truth itself errs by up to
    ‖∇ₓℓ‖_∞‖J⁻¹‖₁‖y‖₁ε₆₄ (:func:`~invlin.validate.checks.truth.truth_error`), added to the
    bound as that/(nε) in κ_eff — it matters in float64 only). Bound: a backward-stable
    computation errs by |Δℓ| ≲ ‖J⁻¹‖‖ΔJ‖ ≲ nκε, plus the rounding of the value itself
    ≲ ε|ℓ*|, plus ε·Σᵢ|∂ℓ/∂xᵢ·xᵢ| for a nonlinear layer evaluated at an ε-perturbed input —
    :func:`logdet_ratio` with κ_eff = κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n, ≤ THRESHOLD; for a
    diagonal J, κ_eff = 1 + (Σᵢ|log|Jᵢᵢ|| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n (see
    :mod:`~invlin.validate.checks.truth`). A row over that allowance is judged again with the
    parameters' backward error Σ_θ|∂ℓ/∂θ·θ|ε added (:func:`_parameter_term`: conditioner
    networks are backward stable in their weights, not their input; computed for such rows
    only). A row still over it has its reference evaluated again in forward mode
    (:func:`~invlin.validate.checks.truth.cross_check`): where reverse and forward mode disagree
    beyond their float64 bound and the layer is within its allowance of the forward-mode ℓ*
    (judged with the forward-mode J's own κ_eff), the row is not judged (counted, with the
    reason); where they agree, where the layer is beyond both, or where the layer has no
    forward-mode AD, the failure stands. A sign error or a missing factor moves ℓ by O(1),
    i.e. by 10⁷ (float32) to 10¹⁶ (float64) ratio units.

    Inputs: wide batches (:mod:`~invlin.validate.checks.values`). A non-finite log|det| on a row
    that must be finite fails; rows whose float64 Jacobian is singular or not finite are not
    judged.
    """
    name = "logdet_autograd"
    tested, ref = pair(make, ctx)
    n = ctx.features
    codomain = tested.codomain()
    unsure = {"rows": 0, "first": ""}  # rows left unjudged for an unreliable reference

    def run(x: np.ndarray) -> Probe:
        rows = judged_rows(ref, x, codomain, inverse=False, dtype=ctx.dtype)
        idx, xs, loc = rows.index, rows.x, rows.loc
        if idx.size == 0:
            return Probe(ok=True, message="no row could be judged", judged=0)
        _, ladj = tested.forward(tensor(xs, ctx))
        got = _ladj_rows(ladj, idx.size, "the forward log|det|", x)
        if isinstance(got, Probe):
            return got
        bad = first_nonfinite({"forward log|det|": got}, np.ones(idx.size, dtype=bool))
        if bad is not None:
            return nonfinite_probe(bad, x, idx)
        ref_ok = reference_finite(loc)
        usable = ref_ok & np.isfinite(loc.kappa)
        comp = diagonal(loc, usable)
        slack = truth_error(loc, comp)
        kap = kappa_reference(loc, n, ctx.dtype, comp)
        param = np.full(idx.size, np.nan)  # Σ_θ|∂ℓ/∂θ·θ|/n, computed for failing rows only
        added = np.zeros(idx.size, dtype=bool)  # rows whose kap holds it

        def param_term(j: int) -> float:
            if np.isnan(param[j]):
                param[j] = _parameter_term(ref, xs[j]) / n
            return float(param[j])

        def settle() -> Verdict:
            # Rows over the allowance get the parameters' backward error added, worst first,
            # until one still fails (a bug, reported) or none is left (one backward each).
            v = judge_logdet(got, loc.logabsdet, kap, usable, n, ctx.dtype)
            if v.ratio is None or v.ratio.passed(ALLOWED):
                return v
            order = np.argsort(-np.nan_to_num(v.ratios, nan=-1.0))
            for j in order[: int((np.nan_to_num(v.ratios, nan=0.0) > ALLOWED).sum())]:
                if added[j]:
                    continue
                kap[j] += param_term(j)
                added[j] = True
                again = judge_logdet(
                    got[j : j + 1],
                    loc.logabsdet[j : j + 1],
                    kap[j : j + 1],
                    usable[j : j + 1],
                    n,
                    ctx.dtype,
                )
                if again.ratio is not None and not again.ratio.passed(ALLOWED):
                    break
            return judge_logdet(got, loc.logabsdet, kap, usable, n, ctx.dtype)

        w = settle()
        cc: CrossCheck | None = None
        disputed: list[str] = []
        if w.ratio is not None and not w.ratio.passed(ALLOWED):
            # The reference is evaluated again in forward mode; a failing row where the two
            # evaluations disagree and the layer is within its allowance of the forward-mode
            # value is not judged (truth.cross_check).
            over = np.flatnonzero(usable & (np.nan_to_num(w.ratios, nan=0.0) > ALLOWED))
            cc = cross_check(ref, xs, loc, ctx.dtype, componentwise=comp)
            for j in over if cc.forward is not None else ():
                if not cc.disputed[j]:
                    continue
                fwd_l = cc.forward.logabsdet[j : j + 1]
                kf = cc.kappa[j : j + 1]
                one = np.ones(1, dtype=bool)
                again = judge_logdet(got[j : j + 1], fwd_l, kf, one, n, ctx.dtype)
                if again.ratio is not None and not again.ratio.passed(ALLOWED):
                    again = judge_logdet(
                        got[j : j + 1], fwd_l, kf + param_term(j), one, n, ctx.dtype
                    )
                if again.ratio is not None and again.ratio.passed(ALLOWED):
                    usable[j] = False
                    disputed.append(
                        f"row {idx[j]}: {cc.describe(j, loc)}; the layer's log|det| "
                        f"{got[j]:.17g} is within its allowance of the forward-mode value"
                    )
            if disputed:
                w = settle()
        unsure["rows"] += len(disputed)
        if disputed and not unsure["first"]:
            unsure["first"] = disputed[0]
        singular = int((ref_ok & ~np.isfinite(loc.kappa)).sum())
        why = f"{singular} with a singular Jacobian"
        if disputed:
            why += f", {len(disputed)} not judged: {disputed[0]}"
        if w.ratio is None:
            return Probe(ok=True, message=f"no row judged ({why})", judged=0)
        j = w.row
        mode = "diagonal J" if comp else "normwise"
        msg = (
            f"row {idx[j]}: log|det| {got[j]:.17g}, autograd slogdet "
            f"{loc.logabsdet[j]:.17g}, ratio {w.value:.3g} (κ_eff {w.kappa:.3g}, {mode})"
        )
        ok = w.ratio.passed(ALLOWED)
        example = {
            "x": x,
            "row": int(idx[j]),
            "ladj": got[j],
            "slogdet": loc.logabsdet[j],
            "det_sign": loc.sign[j],
            "kappa_eff": w.kappa,
            "truth_error": slack[j],
        }
        if not ok and cc is not None:
            msg += f"; {cc.describe(j, loc)}"
            if cc.forward is not None:
                example["forward_mode_slogdet"] = cc.forward.logabsdet[j]
                example["forward_mode_sign"] = cc.forward.sign[j]
                msg += ", and the layer is beyond both" if cc.disputed[j] else ""
        if ok and disputed:
            msg += f"; {len(disputed)} rows not judged ({disputed[0]})"
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            judged=w.count,
            message=msg if ok else f"log|det| disagrees with autograd: {msg}",
        )

    def snippet(x: np.ndarray) -> str:
        # The float64 copy is taken before the layer runs: a called torch Transform caches
        # non-leaf tensors, which deepcopy refuses.
        return (
            f"import copy\n"
            f"ref = copy.deepcopy(adapter).to(dtype=torch.float64, device='cpu')\n"
            f"x = {tensor_literal(x, ctx.dtype)}\n"
            f"y, ladj = adapter.forward(x)\n"
            f"jac = torch.stack([torch.autograd.functional.jacobian(\n"
            f"    lambda r: ref.forward(r[None])[0][0], row) for row in x.double()])\n"
            f"print('layer:', ladj, 'autograd slogdet:', "
            f"torch.linalg.slogdet(jac).logabsdet)"
        )

    out = ctx.search(
        strategy(ctx, tested, ref),
        run,
        snippet=snippet,
        share=SHARE,
        explicit=explicit(ctx, tested, ref),
    )
    res = result(name, ctx, out, "log|det| matches float64 autograd slogdet")
    if unsure["rows"] and res.status == "pass":
        res.message += f"; {unsure['rows']} rows not judged over the search, e.g. {unsure['first']}"
    return res


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
    check fails with that message instead of comparing against a different matrix, unless the
    reverse-mode J of that row is disputed by its forward-mode evaluation and the forward-mode
    J is the matrix (:func:`~invlin.validate.checks.truth.cross_check`). Inputs:
    wide batches; a non-finite log|det| fails.
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
        return CheckResult(
            check=name,
            dtype=ctx.dtype,
            device=ctx.device,
            status="fail",
            message=f"the layer's matrix is singular: {exc}",
            example={"matrix": w.tolist()},
        )
    except OracleBudgetError as exc:  # the size asks more than the oracle may spend: no verdict
        return unjudged(name, ctx, f"not judged: {exc}")
    sign_fn = getattr(tested, "sign", None)
    kappa = oracle.kappa + abs(oracle.logabsdet) / n
    wrow = np.abs(w).sum(axis=1)

    def run(x: np.ndarray) -> Probe:
        rows = judged_rows(ref, x, None, inverse=False, dtype=ctx.dtype)
        idx, xs, loc = rows.index, rows.x, rows.loc
        b = idx.size
        if b == 0:
            return Probe(ok=True, message="no row could be judged", judged=0)
        _, ladj = tested.forward(tensor(xs, ctx))
        got = _ladj_rows(ladj, b, "the forward log|det|", x)
        if isinstance(got, Probe):
            return got
        bad = first_nonfinite({"forward log|det|": got}, np.ones(b, dtype=bool))
        if bad is not None:
            return nonfinite_probe(bad, x, idx)
        ref_ok = np.isfinite(loc.jac).all(axis=(1, 2))
        # The matrix is the Jacobian: forward_ratio with κ = 1 per matrix row, all rows at once.
        with np.errstate(all="ignore"):
            jerr = np.abs(loc.jac - w).sum(axis=2) / (
                np.where(wrow > 0, wrow, 1.0) * eps(ctx.dtype)
            )
        jerr = np.where(np.isfinite(jerr), jerr, np.inf)
        jerr = np.where(ref_ok[:, None], jerr, 0.0)
        # Rows whose reverse-mode J is not the matrix get a forward-mode estimate: where the two
        # disagree and the forward-mode J is the matrix, that row's J is not held against the
        # layer (truth.cross_check); elsewhere the failure stands.
        over = np.flatnonzero(jerr.max(axis=1) > ALLOWED)
        cc: CrossCheck | None = None
        spared = ""
        if over.size:
            cc = cross_check(ref, xs, loc, ctx.dtype)
            for i in over if cc.forward is not None else ():
                if not cc.disputed[i]:
                    continue
                fr = forward_ratio(cc.forward.jac[i], w, kappa=1.0, dtype=ctx.dtype)
                if fr.passed(ALLOWED):
                    jerr[i] = 0.0
                    spared = spared or f"row {idx[i]}: {cc.describe(i, loc)}"
        j = int(np.argmax(jerr.max(axis=1)))
        jr = forward_ratio(loc.jac[j], w, kappa=1.0, dtype=ctx.dtype)
        if jerr[j].max() > 0 and not jr.passed(ALLOWED):
            why = "" if cc is None else f"; {cc.describe(j, loc)}"
            return Probe(
                ok=False,
                ratio=jr.value,
                allowed=ALLOWED,
                message=(
                    f"adapter.matrix() is not the layer's Jacobian (ratio "
                    f"{jr.value:.3g}); the oracle comparison would be meaningless{why}"
                ),
                example={"x": x, "row": int(idx[j]), "matrix": w, "jacobian": loc.jac[j]},
            )
        r = judge_logdet(got, np.full(b, oracle.logabsdet), np.full(b, kappa), ref_ok, n, ctx.dtype)
        if r.ratio is None:
            return Probe(ok=True, message="no row judged", judged=0)
        k = r.row
        example = {
            "x": x,
            "row": int(idx[k]),
            "ladj": got[k],
            "oracle_logabsdet": oracle.logabsdet,
            "oracle_sign": oracle.sign,
            "kappa1": oracle.kappa,
            "matrix": w,
        }
        msg = (
            f"log|det| {got[k]:.17g} vs oracle {oracle.logabsdet:.17g} "
            f"(κ₁ {oracle.kappa:.3g}), ratio {r.value:.3g}"
        )
        if not r.ratio.passed(ALLOWED):
            return Probe(
                ok=False,
                ratio=r.value,
                allowed=ALLOWED,
                example=example,
                message=f"log|det| disagrees with the oracle: {msg}",
            )
        if callable(sign_fn):
            sign = np.atleast_1d(numpy64(torch.as_tensor(sign_fn())))
            if not np.all(sign == oracle.sign):
                example["layer_sign"] = sign
                return Probe(
                    ok=False,
                    ratio=r.value,
                    allowed=ALLOWED,
                    example=example,
                    message=f"det sign {sign.tolist()} but the oracle's is {oracle.sign}",
                )
            msg += f"; sign {oracle.sign:+d} exact"
        if spared:
            msg += f"; the Jacobian of some rows taken from forward mode ({spared})"
        return Probe(ok=True, ratio=r.value, allowed=ALLOWED, message=msg, judged=r.count)

    def snippet(x: np.ndarray) -> str:
        return _forward_snippet(
            ctx,
            x,
            (
                "from invlin.oracle import evaluate\n"
                "w = adapter.matrix().detach().double().cpu().numpy()\n"
                "print('layer:', ladj, 'oracle:', evaluate(w).logabsdet)"
            ),
        )

    out = ctx.search(
        strategy(ctx, tested, ref),
        run,
        snippet=snippet,
        share=SHARE / 2,
        explicit=explicit(ctx, tested, ref),
    )
    return result(name, ctx, out, "log|det| matches the oracle")


def logdet_consistency(make: Make, ctx: CheckContext) -> CheckResult:
    """The inverse's log|det| at y = f(x) is minus the forward's at x, per sample.

    Both values err by ≲ (nκ + |ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)ε (:func:`logdet_autograd`); the inverse
    sees the computed y, whose preimage moves
    from x by the round-trip error ≲ ε·κ_in‖x‖ (κ_in = κ + ‖J⁻¹‖‖y‖/‖x‖), which moves ℓ by
    ≲ ‖∇ₓℓ‖_∞·ε·κ_in‖x‖₁ (∇ₓℓ of the float64 copy's log|det|, zero for linear layers). So
    :func:`logdet_ratio` with κ_eff = κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ| + ‖∇ₓℓ‖_∞κ_in‖x‖₁)/n,
    ≤ THRESHOLD. For a diagonal J the preimage moves by ≲ ε(|xᵢ| + |yᵢ/Jᵢᵢ|) per coordinate,
    so the last term is Σᵢ|∂ℓ/∂xᵢ|(|xᵢ| + |yᵢ/Jᵢᵢ|) and κ_eff starts from
    :func:`kappa_logdet_diagonal`. Inputs: wide batches; rows whose y is not strictly inside the
    codomain are not inverted (nor judged where the float64 copy cannot invert the rounded y);
    a non-finite forward log|det| fails, and so does a non-finite inverse log|det| where the
    float64 Jacobian is finite and nonsingular.
    """
    name = "logdet_consistency"
    tested, ref = pair(make, ctx)
    n = ctx.features
    codomain = tested.codomain()

    def run(x: np.ndarray) -> Probe:
        rows = judged_rows(ref, x, codomain, dtype=ctx.dtype)
        idx, xs, loc = rows.index, rows.x, rows.loc
        b = idx.size
        if b == 0:
            return Probe(ok=True, message="no row could be judged", judged=0)
        y, ladj = tested.forward(tensor(xs, ctx))
        fwd = _ladj_rows(ladj, b, "the forward log|det|", x)
        if isinstance(fwd, Probe):
            return fwd
        if tuple(y.shape) != (b, n):
            raise LayerFault(f"the forward y has shape {tuple(y.shape)}, expected {(b, n)}")
        y_np = numpy64(y)
        every = np.ones(b, dtype=bool)
        bad = first_nonfinite({"forward y": y_np, "forward log|det|": fwd}, every)
        if bad is not None:
            return nonfinite_probe(bad, x, idx)
        inside = inside_codomain(y_np, codomain)
        sel = np.flatnonzero(inside)
        inv = np.full(b, np.nan)
        if sel.size:
            _, ladj_inv = tested.inverse(y.detach()[torch.as_tensor(sel)].clone())
            got = _ladj_rows(ladj_inv, sel.size, "the inverse log|det|", x)
            if isinstance(got, Probe):
                return got
            inv[sel] = got
        ref_ok = reference_finite(loc)
        usable = ref_ok & np.isfinite(loc.kappa)
        # Not where the float64 J is singular, nor where rounding put y out of the map's range:
        # the rounded y may have an infinite preimage.
        inside &= ~out_of_reach(ref, y_np, loc.y, inside & ~np.isfinite(inv))
        bad = first_nonfinite({"inverse log|det|": inv}, inside & usable)
        if bad is not None:
            return nonfinite_probe(bad, x, idx, y=y_np[bad.row])
        comp = diagonal(loc, usable)
        grad = np.zeros((b, n)) if loc.grad_ladj is None else np.abs(loc.grad_ladj)
        with np.errstate(all="ignore"):
            if comp:
                s_in = input_scales(loc, xs, loc.y, ctx.dtype, componentwise=True)
                drift = (grad * s_in).sum(axis=1) / n
            else:
                drift = grad.max(axis=1) * scale_input(loc, xs, loc.y) / n
            base = kappa_logdet_diagonal(loc, n) if comp else kappa_logdet(loc, n)
            kap = base + np.where(np.isfinite(drift), drift, math.inf)
        w = judge_logdet(fwd, -inv, kap, usable & inside, n, ctx.dtype)
        singular = int((ref_ok & ~np.isfinite(loc.kappa)).sum())
        if w.ratio is None:
            return Probe(
                ok=True, message=f"no row judged ({singular} with a singular Jacobian)", judged=0
            )
        j = w.row
        mode = "diagonal J" if comp else "normwise"
        msg = (
            f"row {idx[j]}: forward {fwd[j]:.17g}, −inverse {-inv[j]:.17g}, ratio "
            f"{w.value:.3g} (κ_eff {w.kappa:.3g}, {mode})"
        )
        ok = w.ratio.passed(ALLOWED)
        example = {
            "x": x,
            "row": int(idx[j]),
            "forward_ladj": fwd[j],
            "inverse_ladj": inv[j],
            "kappa_eff": w.kappa,
        }
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            judged=w.count,
            message=msg if ok else f"forward and inverse log|det| disagree: {msg}",
        )

    def snippet(x: np.ndarray) -> str:
        return _forward_snippet(
            ctx,
            x,
            (
                "_, ladj_inv = adapter.inverse(y.clone())\n"
                "print('forward:', ladj, 'minus inverse:', -ladj_inv)"
            ),
        )

    out = ctx.search(
        strategy(ctx, tested, ref),
        run,
        snippet=snippet,
        share=SHARE,
        explicit=explicit(ctx, tested, ref),
    )
    return result(name, ctx, out, "forward and inverse log|det| agree")
