"""Round trips x → y → x and y → x → y, judged against κ-scaled forward-error bounds."""

from __future__ import annotations

import numpy as np

from invlin.testing.strategies import layer_inputs
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    numpy64,
    pair,
    result,
    tensor,
)
from invlin.validate.checks.truth import local, scale_input, scale_output, worst_rows
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["round_trip"]

NAME = "round_trip"


def round_trip(make: Make, ctx: CheckContext) -> CheckResult:
    """x → y → x and y → x → y agree with their start within κ-scaled bounds.

    Bound (see :mod:`~invlin.validate.checks.truth`): x → y → x maps the forward's error
    cε(‖J‖‖x‖ + ‖y‖) back through J⁻¹ and adds the inverse's own, so
    ‖x̂ − x‖/‖x‖ ≲ cε(κ + ‖J⁻¹‖‖y‖/‖x‖) — :func:`forward_ratio` with that κ, ≤ THRESHOLD.
    y → x → y: the inverse's residual f(x̂) − y and the forward's rounding are both
    ≲ cε(‖J‖‖x‖ + ‖y‖), so ‖ŷ − y‖/‖y‖ ≲ cε(κ + ‖J‖‖x‖/‖y‖). κ, ‖J‖, ‖J⁻¹‖ come from the float64
    Jacobian at x. The start y of the second trip is the float64 reference's f(x) rounded to the
    dtype (a point of the codomain whatever it is). The inverse is always given a copy of y, so
    a ``cache_size=1`` transform really inverts instead of returning its cached input.
    """
    tested, ref = pair(make, ctx)
    n = ctx.features
    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain())

    def probe(x: np.ndarray) -> Probe:
        xt = tensor(x, ctx)
        y, _ = tested.forward(xt)
        x_back, _ = tested.inverse(y.detach().clone())
        loc = local(ref, x)
        y_np, xb = numpy64(y), numpy64(x_back)
        first = worst_rows(xb, x, scale_input(loc, x, loc.y), ctx.dtype)
        # y → x → y from the reference's image of x, rounded to the dtype.
        y0 = tensor(loc.y, ctx)
        y0_np = numpy64(y0)
        x1, _ = tested.inverse(y0.clone())
        y1, _ = tested.forward(x1.detach().clone())
        second = worst_rows(numpy64(y1), y0_np, scale_output(loc, x, loc.y), ctx.dtype)
        w, trip, got, want = max(((first, "x → y → x", xb, x), (second, "y → x → y",
                                 numpy64(y1), y0_np)), key=lambda t: t[0].value)
        skipped = first.skipped + second.skipped
        note = f" ({skipped} rows with a singular Jacobian not judged)" if skipped else ""
        if w.ratio is None:
            return Probe(ok=True, message=f"no row could be judged{note}")
        j = w.row
        err = (f"relative error {w.ratio.rel_error:.3g}" if np.abs(want[j]).sum() > 0 else
               f"absolute error {w.ratio.abs_error:.3g} from a zero row")
        msg = f"{trip}: row {j} ratio {w.value:.3g} (κ_eff {w.kappa:.3g}, {err}){note}"
        example = {"x": x, "trip": trip, "row": j, "kappa_eff": w.kappa,
                   "start": want[j], "end": got[j], "y": y_np[j]}
        ok = w.ratio.passed(ALLOWED)
        if not ok:
            msg = f"round trip {msg}, allowed {ALLOWED:g}"
        return Probe(ok=ok, ratio=w.value, allowed=ALLOWED, message=msg, example=example)

    def snippet(x: np.ndarray) -> str:
        return (f"x = {tensor_literal(x, ctx.dtype)}\n"
                f"y, _ = adapter.forward(x)\n"
                f"x_back, _ = adapter.inverse(y.clone())\n"
                f"print('x → y → x error per row:', (x_back - x).abs().sum(-1))")

    out = ctx.search(strategy, probe, snippet=snippet)
    return result(NAME, ctx, out, "both round trips within κ-scaled bounds")
