"""State checks: train vs eval mode, cached vs uncached calls, caches after a parameter update."""

from __future__ import annotations

import copy

import numpy as np
import torch

from invlin.testing.strategies import wide_inputs
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    ShapeMismatch,
    batch_values,
    fresh,
    move,
    numpy64,
    pair,
    result,
    skipped,
    supported,
    tensor,
)
from invlin.validate.checks.truth import (
    Local,
    Worst,
    kappa_logdet,
    local,
    scale_input,
    scale_output,
    worst_logdet,
    worst_rows,
)
from invlin.validate.perturbation import PERTURBATION, perturb
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["PERTURBATION", "cache", "modes", "perturb"]

#: Rows of one case and the input mixes drawn (:func:`~invlin.testing.strategies.wide_inputs`):
#: mode and cache defects do not depend on where the input lies, so ordinary batches reach
#: them; extreme inputs are the value checks' (which also decide what is judged beyond 10⁴,
#: where two computations may both overflow).
ROWS = 32
MIXES = ("ordinary",)


class _Table:
    """The worst of several comparisons, each judged by the engine (ratio ≤ THRESHOLD)."""

    def __init__(self, dtype: str, n: int) -> None:
        self.dtype, self.n = dtype, n
        self.worst: tuple[Worst, str] | None = None
        self.judged = 0  # rows judged by at least one comparison

    def _add(self, w: Worst, what: str, rows: int | None = None) -> None:
        if rows is not None:
            self.judged = max(self.judged, rows - w.skipped)
        if w.ratio is not None and (self.worst is None or not w.value <= self.worst[0].value):
            self.worst = (w, what)

    def rows(self, got: torch.Tensor, want: torch.Tensor, scales: np.ndarray, what: str) -> None:
        self._add(
            worst_rows(
                numpy64(got).reshape(scales.shape[0], -1),
                numpy64(want).reshape(scales.shape[0], -1),
                scales,
                self.dtype,
            ),
            what,
            scales.shape[0],
        )

    def logdet(self, got: torch.Tensor, want: torch.Tensor, loc: Local, what: str) -> None:
        b = (loc.kappa.shape[0],)
        try:
            g, w = batch_values(got, b, what), batch_values(want, b, what)
        except ShapeMismatch:  # wrong shapes: the batch-shape check reports them
            return
        self._add(worst_logdet(g, w, kappa_logdet(loc, self.n), self.n, self.dtype), what, b[0])

    def probe(self, example: dict, failing: str) -> Probe:
        if self.worst is None:
            return Probe(
                ok=True,
                judged=0,
                example=example,
                message="no row could be judged (every row's Jacobian singular)",
            )
        w, what = self.worst
        ok = bool(w.ratio is not None and w.ratio.passed(ALLOWED))
        msg = f"{what}: ratio {w.value:.3g} (row {w.row}, κ_eff {w.kappa:.3g})"
        example = {**example, "compared": what, "row": w.row}
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example=example,
            message=msg if ok else f"{failing}: {msg}",
            judged=self.judged,
        )


def modes(make: Make, ctx: CheckContext) -> CheckResult:
    """Train and eval mode give the same forward (y, log|det|) and inverse (x, log|det|).

    Two evaluations of the same map: y-values within κ + ‖J‖‖x‖/‖y‖, x-values within
    κ + ‖J⁻¹‖‖y‖/‖x‖ (:func:`forward_ratio`), log|det| within ``kappa_logdet``
    (:func:`logdet_ratio`), ≤ THRESHOLD (:mod:`~invlin.validate.checks.truth`). Both inverses
    get the same y (the train-mode output), so a batch-statistics layer shows up as a mode
    difference.
    """
    name = "modes"
    tested, ref = pair(make, ctx)
    reason = supported(lambda: tested.train(True))
    if reason is not None:
        return skipped(name, ctx, reason)
    n = ctx.features

    def probe(x: np.ndarray) -> Probe:
        xt = tensor(x, ctx)
        tested.train(True)
        y_t, l_t = tested.forward(xt)
        y_in = y_t.detach().clone()
        x_t, li_t = tested.inverse(y_in.clone())
        tested.train(False)
        try:
            y_e, l_e = tested.forward(xt)
            x_e, li_e = tested.inverse(y_in.clone())
        finally:
            tested.train(True)
        loc = local(ref, x)
        t = _Table(ctx.dtype, n)
        t.rows(y_e, y_t, scale_output(loc, x, loc.y), "forward y, eval vs train")
        t.rows(x_e, x_t, scale_input(loc, x, loc.y), "inverse x, eval vs train")
        t.logdet(l_e, l_t, loc, "forward log|det|, eval vs train")
        t.logdet(li_e, li_t, loc, "inverse log|det|, eval vs train")
        return t.probe({"x": x}, "train and eval mode disagree")

    def snippet(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, ctx.dtype)}\n"
            "adapter.train(True)\ny_t, l_t = adapter.forward(x)\n"
            "x_t, li_t = adapter.inverse(y_t.detach().clone())\n"
            "adapter.train(False)\ny_e, l_e = adapter.forward(x)\n"
            "x_e, li_e = adapter.inverse(y_t.detach().clone())\n"
            "print('forward:', (y_e - y_t).abs().max(), (l_e - l_t).abs().max())\n"
            "print('inverse:', (x_e - x_t).abs().max(), (li_e - li_t).abs().max())"
        )

    strategy = wide_inputs(n, dtype=ctx.dtype, domain=tested.domain(), max_rows=ROWS, mixes=MIXES)
    out = ctx.search(strategy, probe, snippet=snippet, share=0.1)
    return result(name, ctx, out, "train and eval mode agree")


def cache(make: Make, ctx: CheckContext) -> CheckResult:
    """Cached and uncached calls agree, and no cache goes stale after a parameter update.

    In eval mode (where layers cache): the forward is called twice with the same tensor
    object, the inverse with the very tensor the forward returned (a ``cache_size=1``
    transform's cache hit) and with a copy. Then the forward is called with x, every trainable
    parameter is changed in place (:func:`perturb`, as an optimizer step would) and the forward
    is called again with the SAME x tensor; likewise the inverse with one y tensor around a
    second update. Each answer must be that of a copy of the layer taken before any call (no
    caches) with the same updates. Bounds: two evaluations of one map (κ + ‖J‖‖x‖/‖y‖ for y,
    κ + ‖J⁻¹‖‖y‖/‖x‖ for x, ``kappa_logdet`` for log|det|, Jacobian of the updated layer), each
    ≤ THRESHOLD. A stale cache returns the old map's values: an O(δ) error, 10⁵–10¹⁵ ratio units.
    """
    name = "cache"
    n = ctx.features
    probe_layer = fresh(make, ctx)
    domain = probe_layer.domain()
    has_modes = supported(lambda: probe_layer.train(False)) is None
    has_params = bool(probe_layer.parameters())
    counter = {"i": 0}

    def probe(x: np.ndarray) -> Probe:
        tested = fresh(make, ctx)
        if has_modes:
            tested.train(False)
        # Copies taken before any call hold no cache (and a called torch Transform may hold
        # non-leaf tensors that cannot be deep-copied): the truths for each stage.
        ref0, fwd, fwd_ref, inv, inv_ref = (copy.deepcopy(tested) for _ in range(5))
        move(ref0, torch.float64, "cpu")
        xt = tensor(x, ctx)
        y1, l1 = tested.forward(xt)
        y2, l2 = tested.forward(xt)
        x_hit, _ = tested.inverse(y1)
        x_copy, _ = tested.inverse(y1.detach().clone())
        loc0 = local(ref0, x)
        t = _Table(ctx.dtype, n)
        t.rows(y2, y1, scale_output(loc0, x, loc0.y), "second forward call (same x) vs first")
        t.logdet(l2, l1, loc0, "second forward log|det| vs first")
        t.rows(
            x_hit,
            x_copy,
            scale_input(loc0, x, loc0.y),
            "inverse of the returned y (cache hit) vs of a copy",
        )
        example = {"x": x}
        if not has_params:
            return t.probe(example, "cached and uncached calls disagree")
        # Staleness of the forward: the same x tensor just before and after an update.
        tested.forward(xt)
        counter["i"] += 1
        perturb([tested, fwd, fwd_ref, inv, inv_ref], ctx.seed + 2 * counter["i"])
        y3, l3 = tested.forward(xt)
        y_fresh, l_fresh = fwd.forward(tensor(x, ctx))
        loc1 = local(move(fwd_ref, torch.float64, "cpu"), x)
        t.rows(
            y3,
            y_fresh,
            scale_output(loc1, x, loc1.y),
            "forward after a parameter update (same x tensor) vs a fresh copy",
        )
        t.logdet(l3, l_fresh, loc1, "forward log|det| after a parameter update vs a fresh copy")
        # Staleness of the inverse: the same y tensor just before and after another update.
        y_obj = y1.detach().clone()
        tested.inverse(y_obj)
        perturb([tested, inv, inv_ref], ctx.seed + 2 * counter["i"] + 1)
        x3, li3 = tested.inverse(y_obj)
        x_fresh, li_fresh = inv.inverse(y_obj.clone())
        xf = numpy64(x_fresh)
        loc2 = local(move(inv_ref, torch.float64, "cpu"), xf)
        t.rows(
            x3,
            x_fresh,
            scale_input(loc2, xf, numpy64(y_obj)),
            "inverse after a parameter update (same y tensor) vs a fresh copy",
        )
        t.logdet(li3, li_fresh, loc2, "inverse log|det| after a parameter update vs a fresh copy")
        moved = float(np.abs(numpy64(y_fresh) - numpy64(y1)).max())
        example["output_change_by_update"] = moved
        out = t.probe(example, "stale or inconsistent cache")
        if moved == 0.0:
            out.message += "; the update did not change the output (staleness not observable)"
        return out

    def snippet(x: np.ndarray) -> str:
        lines = [
            "import copy",
            "fresh = copy.deepcopy(adapter)  # taken before any call: it holds no cache",
            f"x = {tensor_literal(x, ctx.dtype)}",
        ]
        if has_modes:
            lines += ["adapter.train(False)", "fresh.train(False)"]
        lines += ["y1, _ = adapter.forward(x)", "x1, _ = adapter.inverse(y1)"]
        if has_params:
            lines += [
                "with torch.no_grad():  # an optimizer step's worth of change, in place",
                "    for a in (adapter, fresh):",
                "        for p in a.parameters():",
                "            p.add_(0.1 * p.abs() + 0.05)",
            ]
        lines += [
            "y2, _ = adapter.forward(x)  # the same x tensor as before",
            "x2, _ = adapter.inverse(y1)  # the same y tensor as before",
            "y_ref, _ = fresh.forward(x.clone())",
            "x_ref, _ = fresh.inverse(y1.detach().clone())",
            "print('forward vs a fresh copy:', (y2 - y_ref).abs().max())",
            "print('inverse vs a fresh copy:', (x2 - x_ref).abs().max())",
        ]
        return "\n".join(lines)

    strategy = wide_inputs(n, dtype=ctx.dtype, domain=domain, max_rows=ROWS, mixes=MIXES)
    out = ctx.search(strategy, probe, snippet=snippet, share=0.05)
    passed = "cached and uncached calls agree"
    passed += (
        "; no stale cache after a parameter update"
        if has_params
        else "; no trainable parameters, so staleness after an update was not tested"
    )
    if not has_modes:
        passed += " (the layer has no eval mode)"
    return result(name, ctx, out, passed)
