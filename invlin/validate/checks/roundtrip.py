"""Round trips x → y → x and y → x → y, judged against κ-scaled forward-error bounds."""

from __future__ import annotations

import numpy as np
import torch

from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    numpy64,
    pair,
    result,
    tensor,
)
from invlin.validate.checks.truth import (
    diagonal,
    first_nonfinite,
    input_scales,
    judge_values,
    output_scales,
    reference_finite,
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
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Probe, tensor_literal

__all__ = ["round_trip"]

NAME = "round_trip"


def _rows(t: torch.Tensor, shape: tuple[int, int], what: str) -> np.ndarray:
    if tuple(t.shape) != shape:
        raise LayerFault(f"{what} has shape {tuple(t.shape)}, expected {shape}")
    return numpy64(t)


def round_trip(make: Make, ctx: CheckContext) -> CheckResult:
    """x → y → x and y → x → y agree with their start within κ-scaled bounds.

    Bound (see :mod:`~invlin.validate.checks.truth`): x → y → x maps the forward's error
    cε(‖J‖‖x‖ + ‖y‖) back through J⁻¹ and adds the inverse's own, so
    ‖x̂ − x‖/‖x‖ ≲ cε(κ + ‖J⁻¹‖‖y‖/‖x‖) — :func:`forward_ratio` with that κ, ≤ THRESHOLD.
    y → x → y: the inverse's residual f(x̂) − y and the forward's rounding are both
    ≲ cε(‖J‖‖x‖ + ‖y‖), so ‖ŷ − y‖/‖y‖ ≲ cε(κ + ‖J‖‖x‖/‖y‖). κ, ‖J‖, ‖J⁻¹‖ come from the float64
    Jacobian at x; for a diagonal J every coordinate is judged alone, κᵢ = 1:
    |x̂ᵢ − xᵢ| ≲ cε(|xᵢ| + |yᵢ/Jᵢᵢ|), |ŷᵢ − yᵢ| ≲ cε(|yᵢ| + |Jᵢᵢxᵢ|); underflowed outputs add
    μ (the smallest normal number) per coordinate. The start y of the second trip is the float64
    reference's f(x) rounded to the dtype (a point of the codomain whatever it is). The inverse
    is always given a copy of y, so a ``cache_size=1`` transform really inverts instead of
    returning its cached input.

    Inputs: wide batches (:mod:`~invlin.validate.checks.values`), up to 1e4 and beyond (rows
    beyond 1e4 only where the float64 copy computes them, :func:`judged_rows`). A non-finite
    y fails, naming the output and row; so does a non-finite x̂, x₁ or y₁ where the float64
    Jacobian is finite and nonsingular (where it is singular, as for a saturated sigmoid whose
    y rounded to 1, the exact preimage of the rounded y may be infinite). Rows whose y is not
    strictly inside the codomain are not inverted, and those whose rounded y the float64 copy
    cannot invert either (:func:`out_of_reach`) are not judged; rows whose float64 Jacobian is
    singular or not finite are not judged (and not counted as judged).
    """
    tested, ref = pair(make, ctx)
    n = ctx.features
    codomain = tested.codomain()

    def run(x: np.ndarray) -> Probe:
        rows = judged_rows(ref, x, codomain, dtype=ctx.dtype)
        idx, xs, loc = rows.index, rows.x, rows.loc
        m = idx.size
        dropped = (
            f"; {rows.dropped} rows beyond 1e4 that the float64 copy does not compute not judged"
            if rows.dropped
            else ""
        )
        if m == 0:
            return Probe(ok=True, message=f"no row could be judged{dropped}", judged=0)
        y, _ = tested.forward(tensor(xs, ctx))
        y_np = _rows(y, (m, n), "the forward y")
        every = np.ones(m, dtype=bool)
        bad = first_nonfinite({"forward y": y_np}, every)
        if bad is not None:
            return nonfinite_probe(bad, x, idx)
        # x → y → x on the rows whose y can be inverted.
        in1 = inside_codomain(y_np, codomain)
        sel1 = np.flatnonzero(in1)
        xb = np.full((m, n), np.nan)
        if sel1.size:
            x_back, _ = tested.inverse(y.detach()[torch.as_tensor(sel1)].clone())
            xb[sel1] = _rows(x_back, (sel1.size, n), "the inverse x")
        # Where the float64 J is singular (a saturated σ: σ′(40) = 0 in float64) the rounded y
        # may have an infinite exact preimage: the inverse is not asked for a finite one there.
        usable = reference_finite(loc) & np.isfinite(loc.kappa)
        in1 &= ~out_of_reach(ref, y_np, loc.y, in1 & ~np.isfinite(xb).all(axis=1))
        bad = first_nonfinite({"inverse x (of the forward's y)": xb}, in1 & usable)
        if bad is not None:
            return nonfinite_probe(bad, x, idx, y=y_np[bad.row])
        # y → x → y from the float64 copy's image of x, rounded to the dtype.
        y0 = tensor(loc.y, ctx)
        y0_np = numpy64(y0)
        in2 = inside_codomain(y0_np, codomain) & np.isfinite(loc.y).all(axis=1)
        sel2 = np.flatnonzero(in2)
        x1 = np.full((m, n), np.nan)
        y1 = np.full((m, n), np.nan)
        if sel2.size:
            x1t, _ = tested.inverse(y0[torch.as_tensor(sel2)].clone())
            x1[sel2] = _rows(x1t, (sel2.size, n), "the inverse x")
            fin = np.isfinite(x1[sel2]).all(axis=1)  # a non-finite x is reported below
            if fin.any():
                y1t, _ = tested.forward(x1t.detach()[torch.as_tensor(np.flatnonzero(fin))].clone())
                y1[sel2[fin]] = _rows(y1t, (int(fin.sum()), n), "the forward y")
        in2 &= ~out_of_reach(ref, y0_np, loc.y, in2 & ~np.isfinite(x1).all(axis=1))
        bad = first_nonfinite(
            {"inverse x (of the float64 copy's y, rounded)": x1, "forward y (of that x)": y1},
            in2 & usable,
        )
        if bad is not None:
            return nonfinite_probe(bad, x, idx, y=y0_np[bad.row])
        comp = diagonal(loc, usable)
        s_in = input_scales(loc, xs, loc.y, ctx.dtype, componentwise=comp)
        s_out = output_scales(loc, xs, loc.y, ctx.dtype, componentwise=comp)
        first = judge_values(xb, xs, s_in, usable & in1, ctx.dtype)
        second = judge_values(y1, y0_np, s_out, usable & in2, ctx.dtype)
        judged = int((first.judged | second.judged).sum())
        singular = int((reference_finite(loc) & ~np.isfinite(loc.kappa)).sum())
        note = (
            f"; {singular} rows with a singular Jacobian not judged" if singular else ""
        ) + dropped
        trips = [
            (v, t, g, e)
            for v, t, g, e in ((first, "x → y → x", xb, xs), (second, "y → x → y", y1, y0_np))
            if v.ratio is not None
        ]
        if not trips:
            return Probe(ok=True, message=f"no row could be judged{note}", judged=0)
        w, trip, got, want = max(trips, key=lambda t: t[0].value)
        ratio = w.ratio
        j = w.row
        where = f"row {idx[j]}" + (f" coordinate {w.coord}" if w.coord is not None else "")
        mode = "per coordinate, diagonal J" if comp else "normwise"
        start = want[j] if w.coord is None else want[j, w.coord]
        err = (
            f"relative error {ratio.rel_error:.3g}"
            if np.abs(start).sum() > 0
            else f"absolute error {ratio.abs_error:.3g} from zero"
        )
        msg = f"{trip}: {where} ratio {w.value:.3g} (κ_eff {w.kappa:.3g} {mode}, {err}){note}"
        example = {
            "x": x,
            "trip": trip,
            "row": int(idx[j]),
            "coordinate": w.coord,
            "kappa_eff": w.kappa,
            "start": want[j],
            "end": got[j],
            "y": y_np[j],
        }
        ok = ratio.passed(ALLOWED)
        if not ok:
            msg = f"round trip {msg}, allowed {ALLOWED:g}"
        return Probe(
            ok=ok, ratio=w.value, allowed=ALLOWED, message=msg, example=example, judged=judged
        )

    def snippet(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, ctx.dtype)}\n"
            f"y, _ = adapter.forward(x)\n"
            f"x_back, _ = adapter.inverse(y.clone())\n"
            f"print('y:', y, 'x → y → x error per row:', (x_back - x).abs().sum(-1))"
        )

    out = ctx.search(
        strategy(ctx, tested, ref),
        run,
        snippet=snippet,
        share=SHARE,
        explicit=explicit(ctx, tested, ref),
    )
    return result(NAME, ctx, out, "both round trips within κ-scaled bounds")
