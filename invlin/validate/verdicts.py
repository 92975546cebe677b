"""One verdict per defect, whatever the dtype: replay a case that failed in one dtype in the other.

A logic defect (a forward-only clamp, a wrong branch) fails wherever the search reaches the
region it lives in; two dtypes draw different inputs, so one may fail and the other pass, and
the reader takes a logic defect for a precision issue. After every dtype has run, each case
that failed in one dtype is replayed, as an explicit first case, in every dtype where the same
check passed (the case is exact in both: inputs are drawn exact in the narrower dtype):

* the replay fails too → the passing result is replaced by the replay's failure, marked as
  found by replaying (the defect is not precision-only);
* the replay passes → both results say so: the failure is precision-only (the wider dtype
  judges the very same case within its bound), the pass was blind to nothing.

Only checks whose cases are plain input batches x (rows of the layer's input) are replayed;
the others' cases (matrices of prescribed κ, batch shapes) are not comparable across dtypes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from invlin.validate.results import CheckResult, LayerReport

__all__ = ["REPLAYABLE", "Rerun", "reconcile"]

#: Checks whose search cases are input batches x of shape (b, n), replayable in any dtype.
REPLAYABLE: frozenset[str] = frozenset(
    {
        "invertibility",
        "round_trip",
        "logdet_autograd",
        "logdet_oracle",
        "logdet_consistency",
        "edges",
        "modes",
        "cache",
        "gradients",
    }
)

#: ``rerun(check, dtype, device, case)`` runs one check again with ``case`` tried first.
Rerun = Callable[[str, str, str, np.ndarray], CheckResult]


def _case(r: CheckResult, features: int) -> np.ndarray | None:
    """The failing input batch of ``r`` as float64 (b, n), or ``None`` when it has none."""
    if r.example is None or "x" not in r.example:
        return None
    try:
        x = np.asarray(r.example["x"], dtype=np.float64)
    except (TypeError, ValueError):
        return None  # an example too large to be stored whole ("shape and extremes")
    if x.ndim != 2 or x.shape[-1] != features or not np.isfinite(x).all():
        return None
    return x


def reconcile(report: LayerReport, rerun: Rerun, *, features: int) -> int:
    """Replay, in place, every failing x-case of ``report`` in the dtypes where the same check
    passed on the same device; returns how many replays ran. See the module docstring."""
    by_key = {(r.check, r.dtype, r.device): i for i, r in enumerate(report.results)}
    replays = 0
    for r in list(report.results):
        if r.status != "fail" or r.check not in REPLAYABLE:
            continue
        x = _case(r, features)
        if x is None:
            continue
        for (check, dtype, device), i in by_key.items():
            other = report.results[i]
            if check != r.check or device != r.device or dtype == r.dtype or other.status != "pass":
                continue
            again = rerun(check, dtype, device, x)
            replays += 1
            here = f"{r.dtype} failing case replayed in {dtype}"
            if again.status == "fail":
                report.results[i] = dataclasses.replace(
                    again,
                    message=f"{again.message} [found by replaying the {r.dtype} failing "
                    f"case: a logic defect, not precision-only]",
                )
            elif again.status == "pass":
                ratio = "" if again.ratio is None else f" (ratio {again.ratio:.3g})"
                report.results[i] = dataclasses.replace(
                    other, message=f"{other.message}; the {here} passes{ratio}"
                )
                idx = by_key[(r.check, r.dtype, r.device)]
                report.results[idx] = dataclasses.replace(
                    report.results[idx],
                    message=f"{report.results[idx].message} [precision-only: {dtype} judges "
                    f"this very case within its bound{ratio}]",
                )
    return replays
