"""Batch-shape and dtype/device checks: outputs keep the input's batch shape, dtype and device."""

from __future__ import annotations

import copy
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
    batch_values,
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
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import Outcome, Probe, tensor_literal

__all__ = ["batch_shape", "dtype_device"]

_PER_SAMPLE = 3  # rows recomputed one at a time to catch samples that see each other


def _cases(n: int, ctx: CheckContext, ndim: int, domain: object) -> st.SearchStrategy:
    return batch_shapes(ndim, ndim, 4).flatmap(
        lambda shape: layer_inputs(n, dtype=ctx.dtype, batch=shape, domain=domain))


def _worse(a: tuple[Worst, str], b: tuple[Worst, str]) -> tuple[Worst, str]:
    return b if b[0].ratio is not None and (a[0].ratio is None or b[0].value > a[0].value) \
        else a


@dataclass
class _Own:
    """The dtype's own error in one layout, per flattened row: ``values`` (b,) the 1-norm of
    the output error, ``logdet`` (b,) the log|det| error (zeros when not measured)."""

    values: np.ndarray
    logdet: np.ndarray

    def row(self, j: int) -> _Own:
        return _Own(self.values[j:j + 1], self.logdet[j:j + 1])


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

    def _own(self, call: str, inp: np.ndarray, got: np.ndarray, got_ld: np.ndarray) -> _Own:
        rows = got.reshape(-1, self.n).shape[0]
        zero = np.zeros(rows)
        if not self.on:
            return _Own(zero, zero)
        with torch.no_grad():
            try:
                out, ld = getattr(self.ref, call)(torch.as_tensor(inp, dtype=self.input_dtype))
            except Exception:  # the copy cannot run this: no allowance, strict bound
                return _Own(zero, zero)
        want, want_ld = numpy64(out).reshape(rows, self.n), numpy64(ld).reshape(-1)
        err = np.abs(got.reshape(rows, self.n) - want).sum(axis=1)
        if want_ld.size == 1:
            want_ld = np.full(rows, want_ld[0])
        err_ld = np.abs(got_ld.reshape(-1) - want_ld) if want_ld.size == rows else zero
        # a non-finite difference is no allowance: the comparison itself reports it
        return _Own(self.scale * np.where(np.isfinite(err), err, 0.0),
                    self.scale * np.where(np.isfinite(err_ld), err_ld, 0.0))

    def forward(self, x: np.ndarray, y: np.ndarray, ld: np.ndarray) -> _Own:
        """Own error of y = f(x) and its log|det| computed with input ``x`` in its layout."""
        return self._own("forward", x, y, ld)

    def inverse(self, y: np.ndarray, x: np.ndarray, ld: np.ndarray) -> _Own:
        """Own error of x = f⁻¹(y) and its log|det| computed with input ``y`` in its layout."""
        return self._own("inverse", y, x, ld)

    def rows(self, a: _Own, b: _Own) -> np.ndarray:
        """Extra output-space scale (units of ε) allowing |v_A − v_B| the measured errors."""
        return (a.values + b.values) / (THRESHOLD * eps(self.dtype))

    def logdets(self, a: _Own, b: _Own) -> np.ndarray:
        """Extra κ_eff of :func:`logdet_ratio` (which divides by nκε) for the log|det| errors."""
        return (a.logdet + b.logdet) / (THRESHOLD * self.n * eps(self.dtype))


def batch_shape(make: Make, ctx: CheckContext) -> CheckResult:
    """Outputs have shape ``(*batch, n)`` and log|det| exactly ``batch`` for 1-, 2- and 3-D
    batch shapes, in both directions, and the values equal those of the flattened batch
    ``(B, n)`` and of single samples (so a sum over the wrong axes, or samples that see each
    other, cannot hide behind a right shape).

    Each value is computed twice in the dtype; both computations err by the evaluation bounds of
    :mod:`~invlin.validate.checks.truth`: y-values κ + ‖J‖‖x‖/‖y‖, x-values κ + ‖J⁻¹‖‖y‖/‖x‖
    (:func:`forward_ratio`), log|det| ``kappa_logdet`` (:func:`logdet_ratio`), each ≤ THRESHOLD.

    Below float64 that is not the whole error of a layer with a deep parameter network (a
    coupling layer's conditioner): its outputs carry the network's rounding, which κ(J) of the
    layer's own Jacobian does not bound, and BLAS blocks a (1, n) and a (B, n) product
    differently (nflows' rational-quadratic coupling: 455 ratio units in float32 between a
    sample alone and in a batch of two). So in float32 each comparison of layouts A and B is
    also allowed the dtype's own error *measured* in each layout against the float64 copy
    evaluated in that same layout: |v_A − v_B| ≤ |v_A − v64_A| + |v_B − v64_B| + THRESHOLD·ε·
    (κ-scaled bound) (:func:`_measured`). By the triangle inequality this passes exactly when
    the float64 copy's own layouts agree to within the κ-scaled bound, so a log|det| averaged
    over the batch or summed over the wrong axes still fails — the float64 copy differs
    between layouts too. In float64 the same allowance uses the float64 error *estimated* from
    a float32 copy (|v32 − v64|·ε64/ε32, see :class:`_Measured`); a batch-mean or wrong-axes
    log|det| still fails, because the float32 copy carries the same defect in each layout.
    """
    name = "batch_shape"
    tested, ref = pair(make, ctx)
    n = ctx.features
    domain = tested.domain()

    def probe(x: np.ndarray) -> Probe:
        batch = x.shape[:-1]
        xt = tensor(x, ctx)
        y, ladj = tested.forward(xt)
        problems = []
        if tuple(y.shape) != x.shape:
            problems.append(f"forward y has shape {tuple(y.shape)}, expected {x.shape}")
        if tuple(ladj.shape) != batch:
            problems.append(f"forward log|det| has shape {tuple(ladj.shape)}, expected the "
                            f"batch shape {batch}")
        xb, ladj_inv = tested.inverse(y.detach().clone()) if not problems else (None, None)
        if xb is not None and tuple(xb.shape) != x.shape:
            problems.append(f"inverse x has shape {tuple(xb.shape)}, expected {x.shape}")
        if ladj_inv is not None and tuple(ladj_inv.shape) != batch:
            problems.append(f"inverse log|det| has shape {tuple(ladj_inv.shape)}, expected "
                            f"the batch shape {batch}")
        example = {"x_shape": list(x.shape), "x": x}
        if problems:
            return Probe(ok=False, message="; ".join(problems), example=example)
        flat = x.reshape(-1, n)
        yf, lf = tested.forward(tensor(flat, ctx))
        y_in = y.detach().clone()
        xf, lif = tested.inverse(y_in.reshape(-1, n))
        loc = local(ref, flat)
        ky, kx, kl = scale_output(loc, flat, loc.y), scale_input(loc, flat, loc.y), \
            kappa_logdet(loc, n)
        y2, x2 = numpy64(y).reshape(-1, n), numpy64(xb).reshape(-1, n)
        l2, li2 = numpy64(ladj).reshape(-1), numpy64(ladj_inv).reshape(-1)
        b = (flat.shape[0],)
        try:
            lf_, lif_ = batch_values(lf, b, "the flattened forward log|det|"), \
                batch_values(lif, b, "the flattened inverse log|det|")
        except ShapeMismatch as exc:
            return Probe(ok=False, message=str(exc), example=example)
        m = _Measured(ref, ctx, n)
        fwd_a, fwd_f = m.forward(x, y2, l2), m.forward(flat, numpy64(yf), lf_)
        inv_a = m.inverse(numpy64(y_in), x2, li2)
        inv_f = m.inverse(numpy64(y_in).reshape(-1, n), numpy64(xf), lif_)
        worst = max(
            (worst_rows(y2, numpy64(yf), ky + m.rows(fwd_a, fwd_f), ctx.dtype),
             "forward y vs the flattened batch"),
            (worst_logdet(l2, lf_, kl + m.logdets(fwd_a, fwd_f), n, ctx.dtype),
             "forward log|det| vs the flattened batch"),
            (worst_rows(x2, numpy64(xf), kx + m.rows(inv_a, inv_f), ctx.dtype),
             "inverse x vs the flattened batch"),
            (worst_logdet(li2, lif_, kl + m.logdets(inv_a, inv_f), n, ctx.dtype),
             "inverse log|det| vs the flattened batch"),
            key=lambda t: t[0].value)
        rows = min(_PER_SAMPLE, flat.shape[0]) if flat.shape[0] > 1 else 0
        for j in range(rows):
            ys, ls = tested.forward(tensor(flat[j:j + 1], ctx))
            try:
                ls_ = batch_values(ls, (1,), f"the forward log|det| of sample {j} alone")
            except ShapeMismatch as exc:
                return Probe(ok=False, message=str(exc), example=example)
            one = m.forward(flat[j:j + 1], numpy64(ys), ls_)
            here = fwd_a.row(j)
            worst = _worse(worst, (worst_rows(numpy64(ys), y2[j:j + 1],
                                              ky[j:j + 1] + m.rows(one, here), ctx.dtype),
                                   f"forward y of sample {j} alone"))
            worst = _worse(worst, (worst_logdet(ls_, l2[j:j + 1],
                                                kl[j:j + 1] + m.logdets(one, here), n,
                                                ctx.dtype),
                                   f"forward log|det| of sample {j} alone"))
        w, what = worst
        if w.ratio is None:
            return Probe(ok=True, message="shapes right; no row could be judged")
        ok = w.ratio.passed(ALLOWED)
        msg = f"{what}: ratio {w.value:.3g} (row {w.row} of the flattened batch)"
        example["row"] = w.row
        return Probe(ok=ok, ratio=w.value, allowed=ALLOWED, example=example,
                     message=msg if ok else f"values depend on the batch layout: {msg}")

    def snippet(x: np.ndarray) -> str:
        return (f"x = {tensor_literal(x, ctx.dtype)}\n"
                f"y, ladj = adapter.forward(x)\n"
                f"x_back, ladj_inv = adapter.inverse(y.clone())\n"
                f"print(y.shape, ladj.shape, x_back.shape, ladj_inv.shape)\n"
                f"yf, lf = adapter.forward(x.reshape(-1, {n}))\n"
                f"print('log|det|:', ladj.reshape(-1), 'flattened:', lf)")

    total = Outcome()
    for ndim in (1, 2, 3):
        out = ctx.search(_cases(n, ctx, ndim, domain), probe, snippet=snippet, share=1 / 3,
                         describe=lambda x: {"x_shape": list(x.shape), "x": x})
        total.examples += out.examples
        total.notes += out.notes
        if out.worst is not None and (total.worst is None or (out.worst.ratio or 0) >
                                      (total.worst.ratio or 0)):
            total.worst = out.worst
        if out.failure is not None:
            total.failure, total.raised = out.failure, out.raised
            break
    return result(name, ctx, total, "shapes exact for 1-, 2- and 3-D batches; values equal "
                                    "the flattened batch's")


def _mismatches(outputs: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device
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
            bad = _mismatches({"forward y": y, "forward log|det|": ladj, "inverse x": xb,
                               "inverse log|det|": ladj_inv}, want_dtype, want_device)
            if bad:
                where = "" if mode is None else (" in train mode" if mode else " in eval mode")
                example["mode"] = None if mode is None else ("train" if mode else "eval")
                return Probe(ok=False, example=example,
                             message=f"{ctx.dtype} on {ctx.device}{where}: " + ", ".join(bad))
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
            bad = _mismatches({"forward y": ym, "forward log|det|": lm, "inverse x": xm,
                               "inverse log|det|": lim}, want_dtype, want_device)
            where = "" if mode is None else (" (train mode)" if mode else " (eval mode)")
            if bad:
                example["mode"] = where.strip(" ()")
                return Probe(ok=False, example=example, message=(
                    f"after running in {str(other).removeprefix('torch.')} on the CPU and "
                    f"moving to {ctx.dtype} on {ctx.device}{where}: " + ", ".join(bad)))
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
        return Probe(ok=ok, ratio=w.value, allowed=ALLOWED, example=example,
                     message=msg if ok else f"stale state after .to(): {msg}")

    def snippet(x: np.ndarray) -> str:
        return (f"x = {tensor_literal(x, ctx.dtype)}.to({ctx.device!r})\n"
                f"adapter.train(False)\n"
                f"y, ladj = adapter.forward(x)\n"
                f"x_back, ladj_inv = adapter.inverse(y.clone())\n"
                f"print([(t.dtype, t.device) for t in (y, ladj, x_back, ladj_inv)])")

    strategy = layer_inputs(n, dtype=ctx.dtype, domain=tested.domain(), max_batch=4)
    out = ctx.search(strategy, probe, snippet=snippet, share=0.1)
    res = result(name, ctx, out, f"{ctx.dtype} and {ctx.device} kept in every output")
    if want_device.type == "cpu" and res.status == "pass" and not torch.cuda.is_available():
        res.message += "; CUDA not available here, so only the CPU device was exercised"
    return res
