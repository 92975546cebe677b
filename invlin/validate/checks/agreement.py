"""The worst of several engine comparisons in one case, and the Probe it gives.

Used by the checks that compare one layer with another computation of the same map (a
composition with its parts, a saved-and-loaded copy, a compiled layer): each comparison is
judged by the tolerance engine (:mod:`~invlin.validate.checks.truth` bounds, ratio ≤
THRESHOLD), a wrong shape or an operation that failed is a fault that fails the case at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from invlin.validate.checks.base import ALLOWED, ShapeMismatch, batch_values, numpy64
from invlin.validate.checks.truth import (
    Local,
    Worst,
    kappa_logdet,
    scale_input,
    scale_output,
    worst_logdet,
    worst_rows,
)
from invlin.validate.search import Probe

__all__ = ["Agreement", "Bounds", "Evaluation", "shape_of"]


def shape_of(t: object) -> tuple[int, ...] | None:
    """The shape of a tensor, ``None`` for anything else."""
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


class Evaluation(NamedTuple):
    """One layer's forward at a batch x, ``y`` (b, n) and ``ladj`` (b,), and its inverse at
    the forward's y, ``x`` (b, n) and ``ladj_inv`` (b,)."""

    y: torch.Tensor
    ladj: torch.Tensor
    x: torch.Tensor
    ladj_inv: torch.Tensor


class Bounds(NamedTuple):
    """Per-row allowances at a batch x (b, n) from the float64 copy ``loc``: output-space
    ``y``, input-space ``x`` (both (b,), in units of ε) and κ_eff of log|det| ``logdet``."""

    y: np.ndarray
    x: np.ndarray
    logdet: np.ndarray

    @classmethod
    def at(cls, loc: Local, x: np.ndarray, n: int) -> Bounds:
        """The bounds of :mod:`~invlin.validate.checks.truth` at the rows of ``x``."""
        return cls(scale_output(loc, x, loc.y), scale_input(loc, x, loc.y), kappa_logdet(loc, n))


class Agreement:
    """The worst ratio of several comparisons (``dtype`` under test, ``n`` features), or the
    first fault (a wrong shape, an operation that raised) met."""

    def __init__(self, dtype: str, n: int) -> None:
        self.dtype, self.n = dtype, n
        self.worst: tuple[Worst, str] | None = None
        self.fault: str | None = None
        self.judged = 0
        self.notes: list[str] = []

    def _add(self, w: Worst, what: str, rows: int) -> None:
        self.judged = max(self.judged, rows - w.skipped)
        if w.ratio is not None and (self.worst is None or not w.value <= self.worst[0].value):
            self.worst = (w, what)

    def fail(self, message: str) -> None:
        """Record a fault (the first one is reported)."""
        if self.fault is None:
            self.fault = message

    def note(self, message: str) -> None:
        """Something the case could not look at, said in the message (not a failure)."""
        if message not in self.notes:
            self.notes.append(message)

    def shape(self, got: object, want: tuple[int, ...], what: str) -> bool:
        """Whether ``got`` is a tensor of shape ``want``; a fault naming ``what`` if not."""
        have = shape_of(got)
        if have == tuple(want):
            return True
        kind = "not a tensor" if have is None else f"shape {have}"
        self.fail(f"{what} has {kind}, expected {tuple(want)}")
        return False

    def rows(self, got: torch.Tensor, want: np.ndarray, scales: np.ndarray, what: str) -> None:
        """Rows of ``got`` against ``want`` (b, n), row j allowed ``scales[j]``·ε."""
        b = scales.shape[0]
        w = worst_rows(
            numpy64(got).reshape(b, -1), np.asarray(want).reshape(b, -1), scales, self.dtype
        )
        self._add(w, what, b)

    def logdets(self, got: np.ndarray, want: np.ndarray, kappas: np.ndarray, what: str) -> None:
        """log|det| values (b,) against ``want`` with κ_eff per row (``n``·κ_eff·ε allowed)."""
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        want = np.asarray(want, dtype=np.float64).reshape(-1)
        kappas = np.asarray(kappas, dtype=np.float64).reshape(-1)
        self._add(worst_logdet(got, want, kappas, self.n, self.dtype), what, got.shape[0])

    def batch_logdets(
        self, got: torch.Tensor, want: torch.Tensor, kappas: np.ndarray, what: str
    ) -> None:
        """Two log|det| tensors of one batch (``kappas`` (b,)) by :meth:`logdets`; a wrong shape
        is the batch-shape check's finding: noted, not judged."""
        b = (kappas.shape[0],)
        try:
            g, w = batch_values(got, b, what), batch_values(want, b, what)
        except ShapeMismatch as exc:
            self.note(f"{exc} (left to the batch-shape check)")
            return
        self.logdets(g, w, kappas, what)

    def same_map(
        self, got: Evaluation, want: Evaluation, bounds: Bounds, name: Callable[[str], str]
    ) -> None:
        """``got`` against ``want`` both ways: values by :meth:`rows`, log|det| by
        :meth:`batch_logdets`; ``name("forward y")`` etc. names each comparison."""
        self.rows(got.y, numpy64(want.y), bounds.y, name("forward y"))
        self.rows(got.x, numpy64(want.x), bounds.x, name("inverse x"))
        self.batch_logdets(got.ladj, want.ladj, bounds.logdet, name("forward log|det|"))
        self.batch_logdets(got.ladj_inv, want.ladj_inv, bounds.logdet, name("inverse log|det|"))

    def probe(self, example: dict[str, Any], failing: str, passed: str) -> Probe:
        """The case's :class:`Probe`: a fault fails it, else the worst ratio against
        :data:`~invlin.validate.checks.base.ALLOWED`; ``judged`` 0 when no row was judged."""
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        if self.fault is not None:
            return Probe(ok=False, example=example, message=f"{failing}: {self.fault}")
        if self.worst is None:
            return Probe(
                ok=True,
                judged=0,
                example=example,
                message=f"{passed}; no row could be judged (singular Jacobians){notes}",
            )
        w, what = self.worst
        ok = bool(w.ratio is not None and w.ratio.passed(ALLOWED))
        msg = f"{what}: ratio {w.value:.3g} (row {w.row}, κ_eff {w.kappa:.3g})"
        return Probe(
            ok=ok,
            ratio=w.value,
            allowed=ALLOWED,
            example={**example, "compared": what, "row": w.row},
            message=(msg + notes) if ok else f"{failing}: {msg}",
            judged=max(1, self.judged),
        )
