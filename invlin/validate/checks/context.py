"""A conditional layer honours its context: per row, broadcast, extreme, in both directions."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from hypothesis import strategies as st

from invlin.testing import eps
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    batch_values,
    fresh,
    numpy64,
    pair,
    result,
    skipped,
    tensor,
)
from invlin.validate.checks.truth import (
    first_nonfinite,
    input_scales,
    judge_logdet,
    judge_values,
    kappa_logdet,
    local,
    output_scales,
    reference_finite,
    scale_input,
)
from invlin.validate.conditioning import draw_contexts, given_context
from invlin.validate.perturbation import standard_inputs
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Probe

__all__ = ["KINDS", "ROWS", "context"]

NAME = "context"
#: Rows of every batch the check draws.
ROWS = 8
#: Context kinds and their scale: c = scale·g, g ~ N(0, 1) per entry (exact in float32 and
#: far inside both dtypes' range, so the same contexts serve float64 and float32).
KINDS: dict[str, float] = {"ordinary": 1.0, "large": 1e2, "extreme": 1e4}
_SHARE = 0.04  # of the profile's examples: 6 cases in ci, each 6 forward and 5 inverse calls
_PER_ROW, _OTHER = 1, 2  # draw streams: the per-row contexts c, the other contexts c'


class _Layouts64(NamedTuple):
    """The float64 copy's values in both context layouts: per row (c, one row each) and one
    row's context broadcast to every row (c_r); forward at x, inverse at the tested y."""

    y_rows: np.ndarray
    ld_rows: np.ndarray
    y_one: np.ndarray
    ld_one: np.ndarray
    x_rows: np.ndarray
    ldi_rows: np.ndarray
    x_one: np.ndarray
    ldi_one: np.ndarray


def _layouts64(ref: Adapter, x: np.ndarray, y: np.ndarray, c: np.ndarray, r: int) -> _Layouts64:
    """The float64 copy ``ref`` at x (forward) and at the tested y (inverse), under the
    per-row contexts c (B, M) and under row r's context c[r] (M,) broadcast."""
    xt, yt = (torch.as_tensor(a, dtype=torch.float64) for a in (x, y))
    rows, one = torch.as_tensor(c), torch.as_tensor(c[r])
    with torch.no_grad():
        y_rows, ld_rows = ref.forward(xt, context=rows)
        y_one, ld_one = ref.forward(xt, context=one)
        x_rows, ldi_rows = ref.inverse(yt.clone(), context=rows)
        x_one, ldi_one = ref.inverse(yt.clone(), context=one)
    return _Layouts64(
        y_rows=numpy64(y_rows),
        ld_rows=numpy64(ld_rows),
        y_one=numpy64(y_one),
        ld_one=numpy64(ld_one),
        x_rows=numpy64(x_rows),
        ldi_rows=numpy64(ldi_rows),
        x_one=numpy64(x_one),
        ldi_one=numpy64(ldi_one),
    )


def _values(t: torch.Tensor, shape: tuple[int, ...], what: str) -> np.ndarray:
    if tuple(t.shape) != shape:
        raise LayerFault(f"{what} has shape {tuple(t.shape)}, expected {shape}")
    return numpy64(t)


def _call(
    adapter: Adapter, inverse: bool, v: torch.Tensor, c: torch.Tensor, n: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(values (b, n), log|det| (b,)) of one call with context ``c``, shapes checked."""
    out, ld = (adapter.inverse if inverse else adapter.forward)(v.detach().clone(), context=c)
    b = v.shape[0]
    return _values(out, (b, n), what), batch_values(ld, (b,), f"{what}'s log|det|")


def _independent(tested: Adapter, ctx: CheckContext, domain: tuple[float, float] | None) -> bool:
    """Whether forward and inverse (values and log|det|) are bit for bit the same under two
    different sets of ordinary contexts: the layer ignores its context."""
    n, m = ctx.features, tested.context_features
    x = tensor(standard_inputs(n, ROWS, seed=ctx.seed, dtype=ctx.dtype, domain=domain), ctx)
    c1, c2 = (
        tensor(draw_contexts(m, ROWS, seed=ctx.seed, stream=s), ctx) for s in (_PER_ROW, _OTHER)
    )
    with torch.no_grad():
        y1, l1 = tested.forward(x, context=c1)
        y2, l2 = tested.forward(x, context=c2)
        x1, k1 = tested.inverse(y1.clone(), context=c1)
        x2, k2 = tested.inverse(y1.clone(), context=c2)
    pairs = ((y1, y2), (l1, l2), (x1, x2), (k1, k2))
    return all(a.shape == b.shape and bool(torch.equal(a, b)) for a, b in pairs)


def _independence_snippet(ctx: CheckContext, n: int, m: int) -> str:
    """What :func:`_independent` does, as a script that asserts the layer ignores c."""
    draws = ", ".join(
        f"draw_contexts({m}, {ROWS}, seed={ctx.seed}, stream={s})" for s in (_PER_ROW, _OTHER)
    )
    return (
        "from invlin.validate.conditioning import draw_contexts\n"
        "from invlin.validate.perturbation import standard_inputs\n"
        f"dt = torch.{ctx.dtype}\n"
        f"x = torch.as_tensor(standard_inputs({n}, {ROWS}, seed={ctx.seed}, "
        f"dtype={ctx.dtype!r}, domain=adapter.domain()), dtype=dt)\n"
        f"c1, c2 = (torch.as_tensor(c, dtype=dt) for c in ({draws}))\n"
        "with torch.no_grad():\n"
        "    y1, ld1 = adapter.forward(x, context=c1)\n"
        "    y2, ld2 = adapter.forward(x, context=c2)\n"
        "    x1, _ = adapter.inverse(y1.clone(), context=c1)\n"
        "    x2, _ = adapter.inverse(y1.clone(), context=c2)\n"
        "# the same outputs under two different sets of contexts: the context is not used\n"
        "assert torch.equal(y1, y2) and torch.equal(ld1, ld2) and torch.equal(x1, x2)"
    )


def context(make: Make, ctx: CheckContext) -> CheckResult:
    """A conditional layer (``context_features`` M > 0) honours its context the same way in
    forward, inverse, log|det| and a fresh instance, for ordinary and extreme contexts.

    Cases: a seeded standard batch x of :data:`ROWS` rows and per-row contexts c = s·g
    (g ~ N(0, 1), s of :data:`KINDS`: 1, 1e2, 1e4 — far outside what a conditioner network is
    trained on, where coupling inverses are reported to explode), plus other contexts c′ of
    the same kind. Judged, each with the tolerance engine (ratio ≤ THRESHOLD):

    * finiteness: y, log|det| and the inverse's x are finite (a non-finite one fails, naming the
      row and its context);
    * round trip under c: x → y → x, with the κ-scaled input-space bound of
      :mod:`~invlin.validate.checks.truth` from the float64 copy's Jacobian at x under the same
      c (:func:`~invlin.validate.conditioning.given_context`); an inverse that ignores or
      misreads the context (reversed, the first row's for every row) fails here;
    * log|det| consistency under c: inverse at y plus forward at x is 0 within the bound of
      ``logdet_consistency`` (κ_eff = κ + (|ℓ*| + Σ|∂ℓ/∂xᵢ·xᵢ| + ‖∇ℓ‖_∞κ_in‖x‖₁)/n);
    * another context: x′ = f⁻¹(y; c′) must satisfy f(x′; c′) = y (output-space bound at x′
      under c′) — an inverse that returns x whatever the context (a stale cache) fails, since
      f(x; c′) ≠ y where the context matters;
    * per row vs broadcast: row r of f(x; c) (one context per row) equals row r of f(x; c_r)
      with c_r of shape (M,) broadcast to every row, forward and inverse, values and log|det|;
    * fresh instance: a new layer from the factory (same seed) gives row for row the values and
      log|det| of the first, and inverts its y under c.

    The two layouts of a comparison (per row vs broadcast, first vs fresh instance) are each
    computed in the dtype; they may differ by each one's own rounding, measured against the
    float64 copy evaluated in the same layout, plus the κ-scaled evaluation bound:
    |v_A − v_B| ≤ |v_A − v64_A| + |v_B − v64_B| + ε·scale. A routing defect (a row reading
    another row's context) is in the float64 copy too, so v64_A ≠ v64_B and it fails.

    A layer whose forward and inverse are bit for bit the same under two different sets of
    contexts does not depend on its context: built by a factory asked for M > 0 context
    features, it fails (the context is not wired in — e.g. masks that drop the context
    inputs); an inner transform of a whole flow (a permutation) is ``skip``, saying so.
    An unconditional layer (M = 0) is ``skip`` too. Rows whose float64 Jacobian is singular or
    not finite under their context are not judged.
    """
    m = ctx.context_features
    if m == 0:
        return skipped(
            NAME, ctx, "unconditional layer: run with context_features M > 0 to check contexts"
        )
    tested, ref = pair(make, ctx)
    n = ctx.features
    domain = tested.domain()
    if _independent(tested, ctx, domain):
        same = "forward and inverse are bit for bit the same under two different sets of contexts"
        if ctx.flow_part:  # a permutation inside a conditional flow has nothing to condition
            return skipped(NAME, ctx, f"the flow's inner transform ignores its context: {same}")
        return CheckResult(
            check=NAME,
            dtype=ctx.dtype,
            device=ctx.device,
            status="fail",
            message=(
                f"the layer was built with context_features={m} but does not depend on its "
                f"context: {same} (is the context wired into the layer? for a layer that is "
                "meant to be unconditional, run without --context-features)"
            ),
            repro=ctx.repro(_independence_snippet(ctx, n, m)),
            cases=1,
        )
    second = fresh(make, ctx)
    e = eps(ctx.dtype)

    def draw(case: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kind, s = case
        x = standard_inputs(n, ROWS, seed=s, dtype=ctx.dtype, domain=domain)
        scale = KINDS[kind]
        c = draw_contexts(m, ROWS, seed=s, scale=scale, stream=_PER_ROW)
        c2 = draw_contexts(m, ROWS, seed=s, scale=scale, stream=_OTHER)
        return x, c, c2

    def fail(msg: str, example: dict, ratio: float = math.inf) -> Probe:
        return Probe(ok=False, ratio=ratio, allowed=ALLOWED, message=msg, example=example)

    def run(case: tuple[str, int]) -> Probe:
        kind, s = case
        x, c, c2 = draw(case)
        xt, ct, c2t = tensor(x, ctx), tensor(c, ctx), tensor(c2, ctx)
        example: dict = {"kind": kind, "seed": s, "x": x, "context": c}

        def where(j: int, cc: np.ndarray = c) -> str:
            return f"row {j} (context {cc[j].tolist()}, {kind})"

        with given_context(ref, c):
            loc = local(ref, x)
        usable = reference_finite(loc) & np.isfinite(loc.kappa)
        y, ld = _call(tested, False, xt, ct, n, "the forward y")
        yt = torch.as_tensor(y).to(ctx.device, ctx.torch_dtype)
        xb, ldi = _call(tested, True, yt, ct, n, "the inverse x")
        every = np.ones(ROWS, dtype=bool)
        bad = first_nonfinite({"forward y": y, "forward log|det|": ld[:, None]}, every)
        if bad is None:
            bad = first_nonfinite({"inverse x": xb, "inverse log|det|": ldi[:, None]}, usable)
        if bad is not None:
            example.update(row=bad.row, output=bad.what)
            return fail(
                f"{bad.what} is {bad.value} at {where(bad.row)}, for the finite forward "
                f"input x = {x[bad.row].tolist()} (outputs must be finite there)",
                example,
            )
        parts: list[tuple[float, str, dict]] = []

        def add(v, what: str, cc: np.ndarray = c) -> None:
            if v.ratio is not None:
                parts.append((v.value, f"{what}: {where(v.row, cc)}", {"row": v.row}))

        # Round trip and log|det| consistency under the same per-row contexts.
        add(
            judge_values(
                xb,
                x,
                input_scales(loc, x, loc.y, ctx.dtype, componentwise=False),
                usable,
                ctx.dtype,
            ),
            "x → y → x under the same context",
        )
        grad = np.zeros((ROWS, n)) if loc.grad_ladj is None else np.abs(loc.grad_ladj)
        with np.errstate(all="ignore"):
            drift = grad.max(axis=1) * scale_input(loc, x, loc.y) / n
            kap = kappa_logdet(loc, n) + np.where(np.isfinite(drift), drift, math.inf)
        add(judge_logdet(ld, -ldi, kap, usable, n, ctx.dtype), "log|det| forward + inverse")
        # Another context c′: the inverse must invert f(·; c′), not return x.
        x2, _ = _call(tested, True, yt, c2t, n, "the inverse x (other context)")
        fin = np.isfinite(x2).all(axis=1)
        if fin.any():
            y2, _ = _call(tested, False, tensor(x2[fin], ctx), c2t[fin], n, "the forward y")
            with given_context(ref, c2[fin]):
                loc2 = local(ref, x2[fin])
            ok2 = reference_finite(loc2) & np.isfinite(loc2.kappa)
            s2 = output_scales(loc2, x2[fin], y[fin], ctx.dtype, componentwise=False)
            v = judge_values(y2, y[fin], s2, ok2, ctx.dtype)
            if v.ratio is not None:
                j = int(np.flatnonzero(fin)[v.row])
                parts.append(
                    (
                        v.value,
                        f"f(f⁻¹(y; c′); c′) ≠ y under another context c′ (y = f(x; c)): "
                        f"{where(j, c2)}",
                        {"row": j, "other_context": c2[j]},
                    )
                )

        # Per row vs broadcast, and a fresh instance: two layouts of the same values.
        def layouts(
            a: np.ndarray,
            b: np.ndarray,
            a64: np.ndarray,
            b64: np.ndarray,
            scales: np.ndarray,
            rows: np.ndarray,
            what: str,
            log: bool = False,
        ) -> None:
            # scales: ε-units bound per row (κ_eff per row for a log|det|), plus the layouts'
            # own rounding measured against the float64 copy in the same layout.
            with np.errstate(all="ignore"):
                dev = np.abs(a - a64) + np.abs(b - b64)
                dev = dev.reshape(dev.shape[0], -1).sum(axis=1) / e
            if log:
                add(judge_logdet(a, b, scales + dev / n, rows, n, ctx.dtype), what)
            else:
                add(judge_values(a, b, scales + dev, rows, ctx.dtype), what)

        r = s % ROWS
        one = ct[r]
        yb, ldb = _call(tested, False, xt, one, n, "the forward y (broadcast context)")
        xbb, ldib = _call(tested, True, yt, one, n, "the inverse x (broadcast context)")
        f64 = _layouts64(ref, x, y, c, r)
        sl = slice(r, r + 1)
        row = usable[sl]
        s_out = output_scales(loc, x, loc.y, ctx.dtype, componentwise=False)
        s_in = input_scales(loc, x, loc.y, ctx.dtype, componentwise=False)
        broadcast = "per-row context vs the same context broadcast"
        layouts(
            y[sl], yb[sl], f64.y_rows[sl], f64.y_one[sl], s_out[sl], row, f"forward y, {broadcast}"
        )
        layouts(
            ld[sl],
            ldb[sl],
            f64.ld_rows[sl],
            f64.ld_one[sl],
            kap[sl],
            row,
            f"forward log|det|, {broadcast}",
            log=True,
        )
        layouts(
            xb[sl], xbb[sl], f64.x_rows[sl], f64.x_one[sl], s_in[sl], row, f"inverse x, {broadcast}"
        )
        layouts(
            ldi[sl],
            ldib[sl],
            f64.ldi_rows[sl],
            f64.ldi_one[sl],
            kap[sl],
            row,
            f"inverse log|det|, {broadcast}",
            log=True,
        )
        # A fresh instance from the factory: same values, and it inverts the first one's y.
        yf, ldf = _call(second, False, xt, ct, n, "the fresh instance's forward y")
        xf, _ = _call(second, True, yt, ct, n, "the fresh instance's inverse x")
        zero = np.zeros_like(y)
        layouts(yf, y, zero, zero, s_out, usable, "forward y, fresh instance vs first")
        layouts(
            ldf,
            ld,
            zero[:, 0],
            zero[:, 0],
            kap,
            usable,
            "forward log|det|, fresh instance vs first",
            log=True,
        )
        add(
            judge_values(xf, x, s_in, usable, ctx.dtype),
            "x → y → x, fresh instance inverting the first's y",
        )
        judged = int(usable.sum())
        if not parts:
            return Probe(ok=True, message="no row could be judged", judged=0)
        value, what, extra = max(parts, key=lambda p: p[0])
        example.update(extra)
        msg = f"{what} ratio {value:.3g}"
        ok = value <= ALLOWED
        if not ok:
            msg = f"with drawn contexts, {msg}, allowed {ALLOWED:g}"
        return Probe(
            ok=ok, ratio=value, allowed=ALLOWED, message=msg, example=example, judged=judged
        )

    def snippet(case: tuple[str, int]) -> str:
        kind, s = case
        return (
            "from invlin.validate.conditioning import draw_contexts\n"
            "from invlin.validate.perturbation import standard_inputs\n"
            f"dt = torch.{ctx.dtype}\n"
            f"x = torch.as_tensor(standard_inputs({n}, {ROWS}, seed={s}, dtype={ctx.dtype!r}, "
            f"domain=adapter.domain()), dtype=dt)\n"
            f"c = torch.as_tensor(draw_contexts({m}, {ROWS}, seed={s}, scale={KINDS[kind]!r}, "
            f"stream={_PER_ROW}), dtype=dt)  # {kind} contexts, one per row\n"
            f"c2 = torch.as_tensor(draw_contexts({m}, {ROWS}, seed={s}, scale={KINDS[kind]!r}, "
            f"stream={_OTHER}), dtype=dt)  # other contexts c′\n"
            f"y, ladj = adapter.forward(x, context=c)\n"
            f"x_back, ladj_inv = adapter.inverse(y.clone(), context=c)\n"
            f"print('x → y → x error per row:', (x_back - x).abs().sum(-1))\n"
            f"print('log|det| forward + inverse:', ladj + ladj_inv)\n"
            f"x2, _ = adapter.inverse(y.clone(), context=c2)\n"
            f"y2, _ = adapter.forward(x2, context=c2)\n"
            f"print('y → x′ → y error under c′ per row:', (y2 - y).abs().sum(-1))\n"
            f"r = {s % ROWS}\n"
            f"yb, _ = adapter.forward(x, context=c[r])  # one (M,) context broadcast\n"
            f"print('row', r, 'per-row vs broadcast context:', (yb[r] - y[r]).abs().sum())"
        )

    cases = st.tuples(st.sampled_from(tuple(KINDS)), st.integers(0, 2**31 - 1))
    out = ctx.search(
        cases,
        run,
        snippet=snippet,
        share=_SHARE,
        minimum=len(KINDS),
        describe=lambda case: {"kind": case[0], "seed": case[1]},
        explicit=[(k, ctx.seed) for k in KINDS],
    )
    return result(NAME, ctx, out, "the context is honoured (per row, broadcast, extreme, fresh)")
