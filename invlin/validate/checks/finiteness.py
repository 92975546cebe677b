"""Finite outputs near the ends of the layer's domain and for large inputs."""

from __future__ import annotations

import numpy as np
import torch

from invlin.testing.strategies import LARGE_INPUT, wide_batch, wide_inputs
from invlin.validate.checks.base import CheckContext, Make, fresh, numpy64, result, tensor
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["LARGE", "edges"]

#: Largest |x| drawn towards an infinite end of the domain (beyond it the value checks judge
#: finiteness against the float64 copy, see :mod:`~invlin.validate.checks.values`).
LARGE: float = LARGE_INPUT
#: Regime mixes edges draws (no ordinary-only batches); its batches have up to this many rows.
MIXES: tuple[str, ...] = ("extreme", "ends", "large", "mixed")
ROWS: int = 64


def _first_nonfinite(
    values: dict[str, torch.Tensor], rows: int, judged: np.ndarray | None = None
) -> tuple[str, int, float] | None:
    """The first (output, row, value) that is not finite, among the rows ``judged`` (bool
    (rows,), all when ``None``)."""
    for what, t in values.items():
        a = numpy64(t)
        # (rows, ...) as the protocol asks; any other shape (the batch-shape check reports it)
        # is judged as one row.
        per_row = a.size and a.size % rows == 0 and a.shape[:1] == (rows,)
        a = a.reshape(rows, -1) if per_row else a.reshape(1, -1)
        bad = ~np.isfinite(a).all(axis=1)
        if per_row and judged is not None:
            bad &= judged
        bad = np.flatnonzero(bad)
        if bad.size:
            j = int(bad[0])
            row = a[j]
            return what, j, float(row[~np.isfinite(row)][0])
    return None


def _strictly_inside(y: np.ndarray, codomain: tuple[float, float] | None) -> np.ndarray:
    """Rows (b, n) of ``y`` strictly inside ``codomain`` (all rows when it is ``None``)."""
    if codomain is None:
        return np.ones(y.shape[0], dtype=bool)
    lo, hi = codomain
    with np.errstate(invalid="ignore"):
        return ((y > lo) & (y < hi)).all(axis=1)


def edges(make: Make, ctx: CheckContext) -> CheckResult:
    """y, log|det| and the inverse of y are finite for inputs near the domain's ends (end ±
    max(|end|, 1)·2⁻ᵏ, k up to the mantissa length, strictly inside) and, towards an infinite
    end, for |x| up to 1e4 (finite in float32 and float64 alike).

    No tolerance: a NaN or ±inf where the exact map is finite is a failure (the log|det| of a
    sigmoid at x = 1e4 is −1e4, not −inf). The inverse is given the forward's outputs. Rows
    whose y is already non-finite fail on y. The inverse is not judged on rows whose y was
    rounded onto a finite end of the codomain (``adapter.codomain()``; tanh(x) rounds to ±1
    from |x| ≈ 19.06 on in float64, 9.01 in float32): such a y is the map's limit, not a value it
    takes, and its exact preimage is ±∞ — atanh(−1) = −inf is the correct answer there (torch
    documents the case: ``TanhTransform`` does not clamp, use ``cache_size=1``). Those rows
    are counted in the message; their forward y and log|det| are judged as every other row.
    Inputs: wide batches of up to 64 rows (:func:`~invlin.testing.strategies.wide_inputs`,
    capped at |x| ≤ 1e4); a failing batch is reported as its failing row alone.
    """
    name = "edges"
    tested = fresh(make, ctx)
    n = ctx.features
    domain = tested.domain()
    codomain = tested.codomain()
    skipped_rows = {"n": 0}

    def probe(x: np.ndarray) -> Probe:
        b = x.shape[0]
        y, ladj = tested.forward(tensor(x, ctx))
        bad = _first_nonfinite({"forward y": y, "forward log|det|": ladj}, b)
        on_end = 0
        if bad is None:
            xb, ladj_inv = tested.inverse(y.detach().clone())
            judged = _strictly_inside(numpy64(y).reshape(b, -1), codomain)
            on_end = int(b - judged.sum())
            bad = _first_nonfinite(
                {"inverse x (of the forward's y)": xb, "inverse log|det|": ladj_inv}, b, judged
            )
        if bad is None:
            skipped_rows["n"] += on_end
            return Probe(ok=True, message="all outputs finite", judged=b)
        what, j, value = bad
        example = {"x": x, "row": j, "output": what, "value": value}
        msg = f"{what} is {value} for row {j}: x = {x[j].tolist()}"
        if what.startswith("inverse"):  # say where the forward put that row
            yj = numpy64(y)[j]
            example["y"] = yj
            msg += f", forward y = {yj.tolist()}"
        return Probe(ok=False, message=msg, example=example)

    def snippet(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, ctx.dtype)}\n"
            "y, ladj = adapter.forward(x)\n"
            "x_back, ladj_inv = adapter.inverse(y.clone())\n"
            "print(y, ladj, x_back, ladj_inv, sep='\\n')"
        )

    # Wide batches capped at |x| ≤ 1e4: entries near finite ends of the domain (end ±
    # max(|end|, 1)·2⁻ᵏ), large ones towards infinite ends, one extreme entry among ordinary ones.
    strategy = wide_inputs(
        n, dtype=ctx.dtype, domain=domain, max_rows=ROWS, huge=LARGE, mixes=MIXES
    )
    first = [
        wide_batch(n, seed=ctx.seed, mix=m, rows=ROWS, dtype=ctx.dtype, domain=domain, huge=LARGE)
        for m in ("ends", "large")
    ]
    out = ctx.search(strategy, probe, snippet=snippet, share=0.05, explicit=first)
    where = "near the domain's ends" if domain is not None else "for |x| up to 1e4"
    res = result(name, ctx, out, f"outputs finite {where}")
    if skipped_rows["n"]:
        res.message += (
            f"; the inverse of {skipped_rows['n']} rows whose y was rounded onto an "
            f"end of the codomain {codomain} was not judged (its preimage is ±∞)"
        )
    return res
