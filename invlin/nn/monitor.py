"""The drift monitor: O(n²) probes of a tracked inverse and the action they trigger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from invlin._dtypes import eps
from invlin._validation import is_real, positive_int

__all__ = ["DriftMonitor", "DriftReading", "probe_drift"]


@dataclass(frozen=True)
class DriftReading:
    """One O(n²) reading of a tracked inverse X of A.

    ``residual``: estimate of ‖XA − I‖_F (Gaussian probes); ``ratio``: that residual on the
    LAPACK scale residual / (n‖A‖₁‖X‖₁ε); ``logdet_drift``: Hutchinson estimate of log det(XA);
    ``logdet_ratio``: |logdet_drift| / (n κ₁ ε), the log|det| scale of the tolerance engine;
    ``kappa``: κ₁ = ‖A‖₁‖X‖₁ (``None``: not measured).
    """

    residual: float
    ratio: float
    logdet_drift: float
    logdet_ratio: float
    kappa: float | None = None


def probe_drift(
    a: torch.Tensor, x: torch.Tensor, *, probes: int = 4, generator: torch.Generator | None = None
) -> DriftReading:
    """Estimate the drift of ``x`` ≈ ``a``⁻¹ (both ``(n, n)``) with ``probes`` random vectors.

    Two mat-vecs per probe in the dtype of ``a`` (O(n²)); the same estimators as
    :mod:`invlin.reference.estimators`. Gaussian probes estimate the residual, Rademacher probes
    (the signs of the same draws) the trace.
    """
    n = a.shape[-1]
    z = torch.randn(n, probes, dtype=a.dtype, device=a.device, generator=generator)
    r = x @ (a @ z) - z
    s = torch.sign(z)
    s = torch.where(s == 0, torch.ones_like(s), s)
    rs = x @ (a @ s) - s
    # the four values read on the host in one transfer (off the CPU: one wait, not four)
    residual, logdet, na, nx = torch.stack(
        [
            torch.sqrt(torch.mean(torch.sum(r * r, dim=0))),
            torch.mean(torch.sum(s * rs, dim=0)),
            a.abs().sum(dim=0).max(),
            x.abs().sum(dim=0).max(),
        ]
    ).tolist()
    scale = n * na * nx * eps(a.dtype)
    if not (residual < float("inf") and abs(logdet) < float("inf")):
        return DriftReading(float("inf"), float("inf"), float("inf"), float("inf"), float("inf"))
    return DriftReading(residual, residual / scale, logdet, abs(logdet) / scale, na * nx)


@dataclass
class DriftMonitor:
    """When to probe a P4Inv layer's tracked inverse and what to do when it has drifted.

    Every ``every`` merges the layer is probed (O(n²)); when the estimated LAPACK ratio exceeds
    ``max_ratio`` (or the log det(XA) estimate exceeds it on the log|det| scale |δ|/(nκε)) the
    inverse is corrected by a hyperpower step of ``order`` (2 = Newton–Schulz, O(n³) once) when the
    residual estimate is below ``max_correctable`` (the iteration needs ‖I − XA‖ < 1), otherwise —
    or when ``action="refresh"`` — X, sign and log|det| are recomputed from A by LU.

    The probes see X against A, not the tracked log|det| against det A: a merge made at a high κ
    leaves an error in log|det| of order nκε that later merges keep and no probe can see (it is
    within the allowance while κ stays high, far outside it once κ has come back down). So the
    caller also passes the largest κ₁ read since sign and log|det| were last computed from A,
    and when the current κ₁ is more than ``max_kappa_drop`` times below it the state is
    refreshed (``None``: never). A layer that passes through an ill-conditioned stretch is thus
    refreshed about log(κ_peak/κ_end)/log(max_kappa_drop) times on its way back.

    ``DriftMonitor()`` probes after every merge; :meth:`default` (what ``P4InvLinear`` uses unless
    told otherwise) probes every 8th merge against a tighter ``max_ratio``, see there.
    """

    every: int = 1
    max_ratio: float = 100.0
    order: int = 2
    max_correctable: float = 0.25
    probes: int = 4
    action: Literal["auto", "correct", "refresh"] = "auto"
    max_kappa_drop: float | None = 100.0

    def __post_init__(self) -> None:
        for name, least in (("every", 1), ("order", 2), ("probes", 1)):
            positive_int(getattr(self, name), name, minimum=least)
        if not (is_real(self.max_ratio) and self.max_ratio > 0):
            raise ValueError(f"max_ratio must be a positive number, got {self.max_ratio!r}")
        if not (is_real(self.max_correctable) and 0 < self.max_correctable <= 1):
            raise ValueError(
                "max_correctable must lie in (0, 1] (the hyperpower step needs "
                f"‖I − XA‖ < 1), got {self.max_correctable!r}"
            )
        if self.action not in ("auto", "correct", "refresh"):
            raise ValueError(f"action must be 'auto', 'correct' or 'refresh', got {self.action!r}")
        if self.max_kappa_drop is not None and not (
            is_real(self.max_kappa_drop) and self.max_kappa_drop > 1
        ):
            raise ValueError(
                f"max_kappa_drop must be a number > 1 or None, got {self.max_kappa_drop!r}"
            )

    @classmethod
    def default(cls) -> DriftMonitor:
        """The monitor a :class:`~invlin.nn.P4InvLinear` gets by default: a probe every 8 merges
        (``every=8``; one probe costs about what one merge costs, O(n²)), acting at an estimated
        ratio of 10 (``max_ratio=10``) instead of 100, so that the drift the unprobed merges add
        (about 0.01–0.03 ratio units per merge on benign paths) leaves the LAPACK inverse ratio
        below the tolerance engine's threshold of 30. Between probes a rise and fall of κ₁ is not
        seen, so the κ rule judges against the largest κ₁ read at the probes."""
        return cls(every=8, max_ratio=10.0)

    def decide(
        self, reading: DriftReading, kappa_peak: float | None = None
    ) -> Literal["none", "correct", "refresh"]:
        """The action a reading calls for; ``kappa_peak``: the largest κ₁ read since sign and
        log|det| were last computed from A (``None``: unknown, the κ rule is skipped)."""
        drifted = not (reading.ratio <= self.max_ratio and reading.logdet_ratio <= self.max_ratio)
        if self._kappa_dropped(reading, kappa_peak) or (
            drifted and (self.action == "refresh" or not reading.residual < self.max_correctable)
        ):
            return "refresh"
        return "correct" if drifted else "none"

    def _kappa_dropped(self, reading: DriftReading, kappa_peak: float | None) -> bool:
        if self.max_kappa_drop is None or kappa_peak is None or reading.kappa is None:
            return False
        return kappa_peak > self.max_kappa_drop * reading.kappa
