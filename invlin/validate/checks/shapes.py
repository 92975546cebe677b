"""Batch-shape and dtype/device checks: outputs keep the input's batch shape, dtype and device."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from invlin.testing import THRESHOLD, eps
from invlin.testing.strategies import batch_shapes, layer_inputs
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    ShapeMismatch,
    move,
    numpy64,
    pair,
    result,
    tensor,
)
from invlin.validate.checks.truth import (
    Worst,
    kappa_logdet,
    local,
    scale_input,
    scale_output,
    worst_logdet,
    worst_rows,
)
from invlin.validate.perturbation import standard_inputs
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import Outcome, Probe, tensor_literal

__all__ = ["CHUNKS", "ROWS", "batch_shape", "centre", "dtype_device", "recomposition"]

#: Chunk sizes of the recomposed batch: four single rows (a single-sample path; the first is
#: the centre of the domain, see :func:`recomposition`), 7 (small, odd), 37 (prime: no block
#: size divides it, and above 32) and 82 (above 64): none is a power of two.
CHUNKS: tuple[int, ...] = (1, 1, 1, 1, 7, 37, 82)
#: Rows of the batch every row of which is recomputed in :data:`CHUNKS`: 130 ≥ 100 and above
#: 128 = 2⁷, so blocks of 16, 32, 64 and 128 rows all end inside it (the last one partial) and a
#: path taken only for large batches (> 64 rows) is taken.
ROWS: int = sum(CHUNKS)
_SHAPE_SHARE = 1 / 30  # share of the profile's examples for the batch shapes (ci: 5 cases,
#                        each a 1-, a 2- and a 3-D batch)
#: Batch shapes every search tries first, so that a short search meets sides other than 1.
_SHAPES: tuple[tuple[int, ...], ...] = ((3,), (2, 3), (3, 1, 2))
_RECOMPOSE_SHARE = 0.01  # share of the profile's examples for recompositions (ci: 2)


def recomposition(seed: int) -> np.ndarray:
    """The seeded order (a permutation of ``range(ROWS)``) in which the rows of a batch of
    :data:`ROWS` are recomputed, cut into consecutive chunks of :data:`CHUNKS` rows: row
    ``order[i]`` of the batch is row i of the recomposed one. Row 0 comes first, alone."""
    rest = np.random.default_rng([int(seed), 0x5EED]).permutation(ROWS - 1) + 1
    return np.concatenate([[0], rest])


def centre(domain: tuple[float, float] | None) -> float:
    """The point every coordinate of row 0 of the recomposed batch takes: 0 on all of R (where
    outputs are smallest, so rounding that differs between layouts is judged most strictly),
    the midpoint of a bounded domain, one unit inside a half-line."""
    if domain is None:
        return 0.0
    lo, hi = float(domain[0]), float(domain[1])
    if math.isfinite(lo) and math.isfinite(hi):
        return (lo + hi) / 2
    if math.isfinite(lo):
        return lo + 1.0
    return hi - 1.0 if math.isfinite(hi) else 0.0


def _clean(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a``, ``b`` with the entries that are the same non-finite value in both (the same
    infinity, or NaN in both) set to 0: no layout difference there; non-finite values are the
    edges check's business."""
    same = ~np.isfinite(a) & ((a == b) | (np.isnan(a) & np.isnan(b)))
    return np.where(same, 0.0, a), np.where(same, 0.0, b)


def _worst_rows(out: np.ndarray, expected: np.ndarray, scales: np.ndarray, dtype: str) -> Worst:
    """:func:`~invlin.validate.checks.truth.worst_rows` of two layouts (:func:`_clean`)."""
    return worst_rows(*_clean(out, expected), scales, dtype)


def _worst_logdet(
    out: np.ndarray, expected: np.ndarray, kappas: np.ndarray, n: int, dtype: str
) -> Worst:
    """:func:`~invlin.validate.checks.truth.worst_logdet` of two layouts (:func:`_clean`)."""
    return worst_logdet(*_clean(out, expected), kappas, n, dtype)


@dataclass
class _Own:
    """The dtype's own error in one layout, per flattened row: ``values`` (b,) the 1-norm of
    the output error, ``logdet`` (b,) the log|det| error (zeros when not measured)."""

    values: np.ndarray
    logdet: np.ndarray

    def take(self, idx: np.ndarray) -> _Own:
        """The rows ``idx`` (e.g. a permutation back to the original order)."""
        return _Own(self.values[idx], self.logdet[idx])


class _Measured:
    """The tested layer's own rounding error in one layout, per row.

    Below float64: measured against the float64 copy run on the very same inputs in the very
    same layout. In float64 there is no more precise copy, so the error is *estimated* from a
    float32 copy: to first order rounding errors scale with the unit roundoff, so
    |v32 − v64|·ε64/ε32 estimates the size of the float64 error (the "precision doubling"
    estimate run the other way). It estimates a magnitude, not a bound (two runs of random
    rounding differ by small factors: 5× on the synthetic layer of the tests), so, like every
    fresh-computation error in the engine, it is allowed THRESHOLD times. When the layer
    cannot be moved to float32 the allowance is zero.
    """

    def __init__(self, ref: Adapter, ctx: CheckContext, n: int) -> None:
        self.ref, self.n, self.dtype = ref, n, ctx.dtype
        self.on = True
        self.scale = 1.0
        self.input_dtype = torch.float64
        if ctx.dtype == "float64":
            self.scale = THRESHOLD * eps("float64") / eps("float32")
            self.input_dtype = torch.float32
            try:
                self.ref = copy.deepcopy(ref).to(dtype=torch.float32)
            except Exception:  # cannot be copied or moved: strict bound only
                self.on = False

    def own(self, call: str, parts: list[np.ndarray], got: np.ndarray, got_ld: np.ndarray) -> _Own:
        """Own error of ``got`` (b rows of n) and ``got_ld`` (b,), computed by ``call``
        ("forward"/"inverse") from the inputs ``parts`` — one call per part, in order, so the
        copy sees the same layout (the same chunks) as the tested layer did."""
        rows = got.reshape(-1, self.n).shape[0]
        zero = np.zeros(rows)
        if not self.on:
            return _Own(zero, zero)
        outs, lds = [], []
        with torch.no_grad():
            for part in parts:
                try:
                    out, ld = getattr(self.ref, call)(torch.as_tensor(part, dtype=self.input_dtype))
                except Exception:  # the copy cannot run this: no allowance, strict bound
                    return _Own(zero, zero)
                b = part.reshape(-1, self.n).shape[0]
                ld_ = numpy64(ld).reshape(-1)
                outs.append(numpy64(out).reshape(-1, self.n))
                lds.append(
                    np.full(b, ld_[0])
                    if ld_.size == 1
                    else ld_
                    if ld_.size == b
                    else np.full(b, np.nan)
                )
        want, want_ld = np.concatenate(outs), np.concatenate(lds)
        if want.shape != (rows, self.n):
            return _Own(zero, zero)
        err = np.abs(got.reshape(rows, self.n) - want).sum(axis=1)
        err_ld = np.abs(got_ld.reshape(-1) - want_ld)
        # a non-finite difference is no allowance: the comparison itself reports it
        return _Own(
            self.scale * np.where(np.isfinite(err), err, 0.0),
            self.scale * np.where(np.isfinite(err_ld), err_ld, 0.0),
        )

    def rows(self, a: _Own, b: _Own) -> np.ndarray:
        """Extra output-space scale (units of ε) allowing |v_A − v_B| the measured errors."""
        return (a.values + b.values) / (THRESHOLD * eps(self.dtype))

    def logdets(self, a: _Own, b: _Own) -> np.ndarray:
        """Extra κ_eff of :func:`logdet_ratio` (which divides by nκε) for the log|det| errors."""
        return (a.logdet + b.logdet) / (THRESHOLD * self.n * eps(self.dtype))


def _run(
    adapter: Adapter, direction: str, parts: list[np.ndarray], ctx: CheckContext
) -> tuple[np.ndarray, np.ndarray]:
    """``adapter.forward`` or ``adapter.inverse`` (``direction``) called once per part (each a
    (b, n) batch); the outputs (Σb, n) and log|det| (Σb,) concatenated in order. Raises
    :class:`ShapeMismatch` unless every output has shape (b, n) and every log|det| exactly
    (b,): this is the batch-shape check, so a one-element log|det| is a wrong shape here."""
    ys, lds = [], []
    name = "y" if direction == "forward" else "x"
    for part in parts:
        b = part.shape[0]
        out, ld = getattr(adapter, direction)(tensor(part, ctx))
        if tuple(out.shape) != part.shape:
            raise ShapeMismatch(
                f"{direction} {name} of a batch of {b} rows has shape "
                f"{tuple(out.shape)}, expected {part.shape}"
            )
        if not isinstance(ld, torch.Tensor) or tuple(ld.shape) != (b,):
            shape = tuple(ld.shape) if isinstance(ld, torch.Tensor) else type(ld).__name__
            raise ShapeMismatch(
                f"{direction} log|det| of a batch of {b} rows has shape "
                f"{shape}, expected the batch shape {(b,)}"
            )
        ys.append(numpy64(out))
        lds.append(numpy64(ld))
    return np.concatenate(ys), np.concatenate(lds)


def _merge(total: Outcome, out: Outcome) -> None:
    total.examples += out.examples
    total.judged += out.judged
    total.notes += out.notes
    if out.worst is not None and (
        total.worst is None or (out.worst.ratio or 0) > (total.worst.ratio or 0)
    ):
        total.worst = out.worst
    if out.failure is not None:
        total.failure, total.raised = out.failure, out.raised


def batch_shape(make: Make, ctx: CheckContext) -> CheckResult:
    """Outputs have shape ``(*batch, n)`` and log|det| exactly ``batch`` for 1-, 2- and 3-D
    batch shapes, in both directions, and every value is independent of the batch it was
    computed in: a row's y, x and both log|det| are the same alone, in a small batch and in a
    large one, wherever the row sits in it (so a sum over the wrong axes, samples that see each
    other, or rows processed in blocks that mix up their results cannot hide behind a right
    shape).

    Two parts. *Shapes*: batches of 1–3 dimensions (sides 1–4) drawn by Hypothesis, values
    compared with those of the flattened ``(B, n)`` batch. *Recomposition*: a seeded standard
    batch of :data:`ROWS` = 130 rows is computed whole, then permuted (:func:`recomposition`)
    and cut into chunks of :data:`CHUNKS` = 1, 1, 1, 1, 7, 37 and 82 rows (row 0, the centre
    of the domain, alone): batch sizes of 1, not a power of two, and above 100 — and every
    row of forward y, forward log|det|, inverse x (of the whole batch's y) and inverse
    log|det| is compared between the two compositions.

    Adapters of libraries whose layers take exactly one batch axis (nflows, normflows, FrEIA:
    further axes are *event* axes there, images' channels and pixels) flatten a multi-axis
    batch to ``(B, n)`` (:func:`~invlin.validate.adapters._common.flat_call`); their layers'
    own batch handling is the ``(B, n)`` one, which the recomposition part calls directly (2-D
    inputs pass through unflattened). Other adapters hand every batch shape to the layer.

    Each value is computed twice in the dtype; both computations err by the evaluation bounds of
    :mod:`~invlin.validate.checks.truth`: y-values κ + ‖J‖‖x‖/‖y‖, x-values κ + ‖J⁻¹‖‖y‖/‖x‖
    (:func:`forward_ratio`), log|det| ``kappa_logdet`` (:func:`logdet_ratio`), each ≤ THRESHOLD.

    Below float64 that is not the whole error of a layer with a deep parameter network (a
    coupling layer's conditioner): its outputs carry the network's rounding, which κ(J) of the
    layer's own Jacobian does not bound, and BLAS blocks a (1, n) and a (B, n) product
    differently (nflows' rational-quadratic coupling: 455 ratio units in float32 between a
    sample alone and in a batch of two). So in float32 each comparison of layouts A and B is
    also allowed the dtype's own error *measured* in each layout against the float64 copy
    evaluated in that same layout (the same chunks): |v_A − v_B| ≤ |v_A − v64_A| +
    |v_B − v64_B| + THRESHOLD·ε·(κ-scaled bound) (:class:`_Measured`). By the triangle
    inequality this passes exactly when the float64 copy's own layouts agree to within the
    κ-scaled bound, so a log|det| averaged over the batch or read from the wrong rows still
    fails — the float64 copy differs between layouts too. In float64 the same allowance uses
    the float64 error *estimated* from a float32 copy (|v32 − v64|·ε64/ε32, see
    :class:`_Measured`); a layout-dependent value still fails, because the float32 copy carries
    the same defect in each layout.

    Shapes are exact in both parts: a log|det| of one element for a batch of several rows (one
    value "for the whole batch") is a wrong shape here, though the value checks broadcast it.
    Rows whose float64 Jacobian is singular are not judged; the number judged is reported.
    """
    name = "batch_shape"
    tested, ref = pair(make, ctx)
    n = ctx.features
    domain = tested.domain()
    m = _Measured(ref, ctx, n)

    def inputs(shape: tuple[int, ...], seed: int) -> np.ndarray:
        rows = int(np.prod(shape))
        x = standard_inputs(n, rows, seed=seed, dtype=ctx.dtype, domain=domain)
        return x.reshape(*shape, n)

    def one_shape(x: np.ndarray) -> Probe:
        batch = x.shape[:-1]
        y, ladj = tested.forward(tensor(x, ctx))
        problems = []
        if tuple(y.shape) != x.shape:
            problems.append(f"forward y has shape {tuple(y.shape)}, expected {x.shape}")
        if tuple(ladj.shape) != batch:
            problems.append(
                f"forward log|det| has shape {tuple(ladj.shape)}, expected the batch shape {batch}"
            )
        y_in = y.detach().clone()
        xb, ladj_inv = tested.inverse(y_in.clone()) if not problems else (None, None)
        if xb is not None and tuple(xb.shape) != x.shape:
            problems.append(f"inverse x has shape {tuple(xb.shape)}, expected {x.shape}")
        if ladj_inv is not None and tuple(ladj_inv.shape) != batch:
            problems.append(
                f"inverse log|det| has shape {tuple(ladj_inv.shape)}, expected "
                f"the batch shape {batch}"
            )
        example = {"x_shape": list(x.shape), "x": x}
        if problems:
            return Probe(ok=False, message="; ".join(problems), example=example)
        flat = x.reshape(-1, n)
        y_flat = numpy64(y_in).reshape(-1, n)
        try:
            yf, lf = _run(tested, "forward", [flat], ctx)
            xf, lif = _run(tested, "inverse", [y_flat], ctx)
        except ShapeMismatch as exc:
            return Probe(ok=False, message=str(exc), example=example)
        loc = local(ref, flat)
        ky, kx, kl = (
            scale_output(loc, flat, loc.y),
            scale_input(loc, flat, loc.y),
            kappa_logdet(loc, n),
        )
        y2, x2 = y_flat, numpy64(xb).reshape(-1, n)
        l2, li2 = numpy64(ladj).reshape(-1), numpy64(ladj_inv).reshape(-1)
        fwd_a, fwd_f = m.own("forward", [x], y2, l2), m.own("forward", [flat], yf, lf)
        inv_a = m.own("inverse", [numpy64(y_in)], x2, li2)
        inv_f = m.own("inverse", [y_flat], xf, lif)
        worst = max(
            (
                _worst_rows(y2, yf, ky + m.rows(fwd_a, fwd_f), ctx.dtype),
                "forward y vs the flattened batch",
            ),
            (
                _worst_logdet(l2, lf, kl + m.logdets(fwd_a, fwd_f), n, ctx.dtype),
                "forward log|det| vs the flattened batch",
            ),
            (
                _worst_rows(x2, xf, kx + m.rows(inv_a, inv_f), ctx.dtype),
                "inverse x vs the flattened batch",
            ),
            (
                _worst_logdet(li2, lif, kl + m.logdets(inv_a, inv_f), n, ctx.dtype),
                "inverse log|det| vs the flattened batch",
            ),
            key=lambda t: t[0].value,
        )
        judged = int(np.isfinite(loc.kappa).sum())
        w, what = worst
        if w.ratio is None or judged == 0:
            return Probe(
                ok=True,
                judged=0,
                example=example,
                message="shapes right; no row could be judged (singular Jacobians)",
            )
        ok = w.ratio.passed(ALLOWED)
        msg = f"{what}: ratio {w.value:.3g} (batch {batch}, row {w.row} of the flattened batch)"
        example["row"] = w.row
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            judged=judged,
            message=msg if ok else f"values depend on the batch layout: {msg}",
        )

    def shape_lines(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, ctx.dtype)}\n"
            f"y, ladj = adapter.forward(x)\n"
            f"x_back, ladj_inv = adapter.inverse(y.clone())\n"
            f"print(y.shape, ladj.shape, x_back.shape, ladj_inv.shape)\n"
            f"yf, lf = adapter.forward(x.reshape(-1, {n}))\n"
            f"print('log|det|:', ladj.reshape(-1), 'flattened:', lf)"
        )

    def shape_probe(case: tuple[tuple[tuple[int, ...], ...], int]) -> Probe:
        """One batch of each dimension 1, 2, 3: the first failure, else the worst."""
        shapes, seed = case
        worst: Probe | None = None
        judged = 0
        for k, shape in enumerate(shapes):
            x = inputs(shape, seed + k)
            out = one_shape(x)
            if not out.ok:
                out.repro = shape_lines(x)
                return out
            judged += out.judged
            if out.ratio is not None and (worst is None or out.ratio > (worst.ratio or 0)):
                worst = out
        if worst is None:
            return Probe(
                ok=True,
                judged=0,
                message="shapes right; no row could be judged (singular Jacobians)",
            )
        worst.judged = judged
        return worst

    def shape_snippet(case: tuple[tuple[tuple[int, ...], ...], int]) -> str:
        shapes, seed = case
        return "\n".join(shape_lines(inputs(shape, seed + k)) for k, shape in enumerate(shapes))

    cuts = np.cumsum(CHUNKS)[:-1]

    def where(order: np.ndarray, j: int) -> str:
        """Where row j of the whole batch sits in the recomposed one."""
        pos = int(np.argsort(order)[j])
        k = int(np.searchsorted(cuts, pos, side="right"))
        start = int(cuts[k - 1]) if k else 0
        return f"row {pos - start} of the chunk of {CHUNKS[k]}"

    def batch(seed: int) -> np.ndarray:
        x = inputs((ROWS,), seed)
        x[0] = float(np.dtype(ctx.dtype).type(centre(domain)))
        return x

    def recompose_probe(seed: int) -> Probe:
        x = batch(seed)
        order = recomposition(seed)
        back = np.argsort(order)
        example = {"rows": ROWS, "seed": seed, "chunks": list(CHUNKS), "x": x}
        try:
            ya, la = _run(tested, "forward", [x], ctx)
            xa, lia = _run(tested, "inverse", [ya], ctx)
            x_parts, y_parts = np.split(x[order], cuts), np.split(ya[order], cuts)
            yb, lb = _run(tested, "forward", x_parts, ctx)
            xb, lib = _run(tested, "inverse", y_parts, ctx)
        except ShapeMismatch as exc:
            return Probe(ok=False, message=str(exc), example=example)
        yb, lb, xb, lib = yb[back], lb[back], xb[back], lib[back]
        loc = local(ref, x)
        ky, kx, kl = scale_output(loc, x, loc.y), scale_input(loc, x, loc.y), kappa_logdet(loc, n)
        fa, fb = (
            m.own("forward", [x], ya, la),
            m.own("forward", x_parts, yb[order], lb[order]).take(back),
        )
        ia, ib = (
            m.own("inverse", [ya], xa, lia),
            m.own("inverse", y_parts, xb[order], lib[order]).take(back),
        )
        pairs = {
            "forward y": (ya, yb),
            "forward log|det|": (la, lb),
            "inverse x": (xa, xb),
            "inverse log|det|": (lia, lib),
        }
        worst = max(
            (_worst_rows(ya, yb, ky + m.rows(fa, fb), ctx.dtype), "forward y"),
            (_worst_logdet(la, lb, kl + m.logdets(fa, fb), n, ctx.dtype), "forward log|det|"),
            (_worst_rows(xa, xb, kx + m.rows(ia, ib), ctx.dtype), "inverse x"),
            (_worst_logdet(lia, lib, kl + m.logdets(ia, ib), n, ctx.dtype), "inverse log|det|"),
            key=lambda t: t[0].value,
        )
        judged = int(np.isfinite(loc.kappa).sum())
        w, what = worst
        if w.ratio is None or judged == 0:
            return Probe(
                ok=True,
                judged=0,
                example=example,
                message=f"no row of the batch of {ROWS} could be judged (singular Jacobians)",
            )
        j = w.row
        a, b = pairs[what]
        example.update(row=j, compared=what, whole=a[j], recomposed=b[j], x_row=x[j])
        msg = (
            f"{what} of row {j}: in one batch of {ROWS} vs as {where(order, j)} (the "
            f"batch permuted, in chunks of {', '.join(map(str, CHUNKS))}): ratio "
            f"{w.value:.3g}"
        )
        ok = w.ratio.passed(ALLOWED)
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            judged=judged,
            message=msg if ok else f"values depend on the batch layout: {msg}",
        )

    def recompose_snippet(seed: int) -> str:
        return (
            f"from invlin.validate.checks.shapes import CHUNKS, ROWS, centre, recomposition\n"
            f"from invlin.validate.perturbation import standard_inputs\n"
            f"x = torch.as_tensor(standard_inputs({n}, ROWS, seed={seed}, "
            f"dtype={ctx.dtype!r}, domain=adapter.domain()), dtype=torch.{ctx.dtype})\n"
            f"x[0] = centre(adapter.domain())\n"
            f"order = torch.as_tensor(recomposition({seed}))\n"
            f"back = torch.argsort(order)\n"
            f"def recomposed(fn, t):\n"
            f"    parts = [fn(c) for c in torch.split(t[order], list(CHUNKS))]\n"
            f"    out = torch.cat([p[0] for p in parts])[back]\n"
            f"    ld = torch.cat([p[1].reshape(-1).expand(len(p[0])) for p in parts])\n"
            f"    return out, ld[back]\n"
            f"y, ladj = adapter.forward(x)\n"
            f"x_back, ladj_inv = adapter.inverse(y.detach().clone())\n"
            f"y2, ladj2 = recomposed(adapter.forward, x)\n"
            f"x2, ladj_inv2 = recomposed(adapter.inverse, y.detach().clone())\n"
            f"for what, a, b in (('y', y, y2), ('log|det|', ladj, ladj2),\n"
            f"                   ('x', x_back, x2), ('inverse log|det|', ladj_inv, "
            f"ladj_inv2)):\n"
            f"    d = (a - b).detach().abs().reshape(ROWS, -1).sum(-1)\n"
            f"    print(what, 'largest difference', float(d.max()), 'at row', "
            f"int(d.argmax()))"
        )

    total = Outcome()
    shapes = st.tuples(*(batch_shapes(d, d, 4) for d in (1, 2, 3)))
    out = ctx.search(
        st.tuples(shapes, st.integers(0, 2**16)),
        shape_probe,
        snippet=shape_snippet,
        share=_SHAPE_SHARE,
        explicit=[(_SHAPES, ctx.seed)],
        describe=lambda c: {"x_shapes": [[*s, n] for s in c[0]], "seed": c[1]},
    )
    _merge(total, out)
    if total.failure is None:
        out = ctx.search_seeds(
            recompose_probe,
            stride=1,
            snippet=recompose_snippet,
            share=_RECOMPOSE_SHARE,
            describe=lambda s: {"rows": ROWS, "seed": s, "chunks": list(CHUNKS)},
        )
        _merge(total, out)
    return result(
        name,
        ctx,
        total,
        f"shapes exact for 1-, 2- and 3-D batches; values equal "
        f"the flattened batch's, and every row of a batch of {ROWS} "
        f"equals its value in chunks of "
        f"{', '.join(map(str, CHUNKS))} rows",
    )


def _mismatches(
    outputs: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device
) -> list[str]:
    bad = []
    for what, t in outputs.items():
        if not isinstance(t, torch.Tensor):
            bad.append(f"{what} is a {type(t).__name__}, not a tensor")
            continue
        if t.dtype != dtype:
            bad.append(f"{what} is {str(t.dtype).removeprefix('torch.')}")
        if t.device != device:
            bad.append(f"{what} is on {t.device}")
    return bad


def _modes(adapter: object) -> list[bool | None]:
    try:
        adapter.train(False)  # type: ignore[attr-defined]
        adapter.train(True)  # type: ignore[attr-defined]
    except Unsupported:
        return [None]
    return [True, False]


def dtype_device(make: Make, ctx: CheckContext) -> CheckResult:
    """Every output (y, x, both log|det|) keeps the input's dtype and device, in train and eval
    mode, and a layer moved to the dtype/device *after* it has run (caches filled in the other
    dtype, on the CPU) gives the same results as one moved before.

    On a machine without CUDA the device part reduces to the CPU (the message says so); a layer
    that builds a tensor without ``dtype=``/``device=`` (``torch.eye(n)``) is then still caught
    in float64, where that tensor is float32: the output comes out float32, a solve or product
    raises (reported as an error with its exception), or the values lose float64 accuracy. The
    moved layer's values are judged like two evaluations (:mod:`~invlin.validate.checks.truth`
    bounds, ≤ THRESHOLD).
    """
    name = "dtype_device"
    n = ctx.features
    want_dtype, want_device = ctx.torch_dtype, torch.device(ctx.device)
    if want_device.type == "cuda" and want_device.index is None:
        want_device = torch.device("cuda", torch.cuda.current_device())
    base = make()
    spare = copy.deepcopy(base)  # the same parameters even if the factory is not seeded
    ref = move(copy.deepcopy(base), torch.float64, "cpu")
    tested = move(base, want_dtype, ctx.device)
    modes = _modes(tested)
    # Layers are usually built in float32 on the CPU and moved later: that is the "before".
    other = torch.float32
    moves = (want_dtype, want_device.type) != (other, "cpu")

    def probe(x: np.ndarray) -> Probe:
        example = {"x": x}
        for mode in modes:
            if mode is not None:
                tested.train(mode)
            y, ladj = tested.forward(tensor(x, ctx))
            xb, ladj_inv = tested.inverse(y.detach().clone())
            bad = _mismatches(
                {
                    "forward y": y,
                    "forward log|det|": ladj,
                    "inverse x": xb,
                    "inverse log|det|": ladj_inv,
                },
                want_dtype,
                want_device,
            )
            if bad:
                where = "" if mode is None else (" in train mode" if mode else " in eval mode")
                example["mode"] = None if mode is None else ("train" if mode else "eval")
                return Probe(
                    ok=False,
                    example=example,
                    message=f"{ctx.dtype} on {ctx.device}{where}: " + ", ".join(bad),
                )
        if not moves:
            return Probe(ok=True, message="dtype and device kept")
        # The same layer moved after use: run in float32 on the CPU, then move.
        moved = copy.deepcopy(spare)
        move(moved, other, "cpu")
        worst = None
        for mode in modes:
            if mode is not None:
                moved.train(mode)
            yo, _ = moved.forward(torch.as_tensor(x, dtype=other))
            moved.inverse(yo.detach().clone())
        move(moved, want_dtype, ctx.device)
        loc = local(ref, x)
        for mode in modes:
            if mode is not None:
                moved.train(mode)
                tested.train(mode)
            xt = tensor(x, ctx)
            ym, lm = moved.forward(xt)
            xm, lim = moved.inverse(ym.detach().clone())
            bad = _mismatches(
                {"forward y": ym, "forward log|det|": lm, "inverse x": xm, "inverse log|det|": lim},
                want_dtype,
                want_device,
            )
            where = "" if mode is None else (" (train mode)" if mode else " (eval mode)")
            if bad:
                example["mode"] = where.strip(" ()")
                return Probe(
                    ok=False,
                    example=example,
                    message=(
                        f"after running in {str(other).removeprefix('torch.')} on the CPU and "
                        f"moving to {ctx.dtype} on {ctx.device}{where}: " + ", ".join(bad)
                    ),
                )
            yt, _ = tested.forward(xt)
            xtb, _ = tested.inverse(ym.detach().clone())
            wy = worst_rows(numpy64(ym), numpy64(yt), scale_output(loc, x, loc.y), ctx.dtype)
            wx = worst_rows(numpy64(xm), numpy64(xtb), scale_input(loc, x, loc.y), ctx.dtype)
            for w, what in ((wy, "forward y"), (wx, "inverse x")):
                if w.ratio is not None and (worst is None or w.value > worst[0].value):
                    worst = (w, f"{what} of the layer moved after use{where}")
        if worst is None:
            return Probe(ok=True, message="no row could be judged")
        w, what = worst
        ok = w.ratio.passed(ALLOWED)  # type: ignore[union-attr]
        msg = f"{what} vs moved before use: ratio {w.value:.3g} (row {w.row})"
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            message=msg if ok else f"stale state after .to(): {msg}",
        )

    def snippet(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, ctx.dtype)}.to({ctx.device!r})\n"
            f"adapter.train(False)\n"
            f"y, ladj = adapter.forward(x)\n"
            f"x_back, ladj_inv = adapter.inverse(y.clone())\n"
            f"print([(t.dtype, t.device) for t in (y, ladj, x_back, ladj_inv)])"
        )

    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain(), max_batch=4)
    out = ctx.search(strategy, probe, snippet=snippet, share=0.1)
    res = result(name, ctx, out, f"{ctx.dtype} and {ctx.device} kept in every output")
    if want_device.type == "cpu" and res.status == "pass" and not torch.cuda.is_available():
        res.message += "; CUDA not available here, so only the CPU device was exercised"
    return res
