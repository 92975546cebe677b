"""Run a generated update path through a tracked implementation and through the oracle."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import target

from invlin.nn.monitor import DriftMonitor
from invlin.nn.p4 import P4InvLinear
from invlin.oracle import ExactMatrix, OracleResult, evaluate
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing.cases import PathCase
from invlin.testing.paths import PathAllowance, path_allowance

__all__ = [
    "IMPLEMENTATIONS",
    "OraclePath",
    "Track",
    "oracle_path",
    "run_path",
    "sign_determined",
    "steer",
]

#: Tracked implementations of the rank-one state: the NumPy reference and the torch layer with
#: its state in the case's dtype ("torch") or in float64 with float32 parameters ("torch64").
IMPLEMENTATIONS = ("numpy", "torch", "torch64")


@dataclass
class Track:
    """What an implementation held after each applied update (index 0: before any update)."""

    dtype: str  # dtype of the tracked state (sets ε)
    matrices: list[np.ndarray] = field(default_factory=list)  # the A it holds
    inverses: list[np.ndarray] = field(default_factory=list)
    signs: list[int] = field(default_factory=list)
    logdets: list[float] = field(default_factory=list)
    applied: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    refused: int = 0
    owner: object = None  # the TrackedMatrix or P4InvLinear, in its final state

    def record(self, a, x, sign, logdet) -> None:
        self.matrices.append(np.array(a, dtype=np.float64))
        self.inverses.append(np.array(x))
        self.signs.append(int(sign))
        self.logdets.append(float(logdet))


def _layer(case: PathCase, impl: str, guard: Guard, monitor: DriftMonitor | None) -> P4InvLinear:
    dt = getattr(torch, case.dtype)
    state, params = (torch.float64, torch.float32) if impl == "torch64" else (dt, dt)
    if impl == "torch64" and case.dtype == "float64":
        params = torch.float64  # float64 vectors do not fit float32 parameters exactly
    layer = P4InvLinear(
        case.n,
        bias=False,
        init=torch.from_numpy(case.a0.astype(np.float64)),
        guard=guard,
        monitor=monitor,
        state_dtype=state,
        dtype=params,
        generator=torch.Generator().manual_seed(0),
    )
    return layer


def run_path(
    case: PathCase,
    impl: str = "numpy",
    *,
    guard: Guard | None = None,
    monitor: DriftMonitor | None = None,
    hook=None,
    device: str = "cpu",
) -> Track:
    """Apply the updates of ``case`` one by one (refused ones are skipped and counted).

    ``impl``: one of :data:`IMPLEMENTATIONS`; ``guard`` defaults to :meth:`Guard.off`;
    ``monitor`` (torch only) runs after each merge; ``device``: where the torch layer lives.
    ``hook(owner, index)`` is called after each applied update (e.g. to record a monitor action).
    """
    guard = Guard.off() if guard is None else guard
    if impl == "numpy":
        t = TrackedMatrix(case.a0, dtype=case.dtype, guard=guard)
        track = Track(case.dtype, owner=t)
        track.record(t.a, t.inverse, t.sign, t.logabsdet)
        for u, v in case.updates():
            if t.update(u, v, on_refuse="skip").applied:
                track.applied.append((u, v))
                if hook is not None:
                    hook(t, len(track.applied))
                track.record(t.a, t.inverse, t.sign, t.logabsdet)
            else:
                track.refused += 1
        return track
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    layer = _layer(case, impl, guard, monitor).to(device)
    layer.generator = torch.Generator(device=device).manual_seed(0)  # v's resets, the probes
    track = Track(str(layer.weight.dtype).removeprefix("torch."), owner=layer)

    def rec() -> None:
        track.record(
            layer.weight.cpu().numpy(),
            layer.weight_inverse.cpu().numpy(),
            int(layer.sign),
            float(layer.logabsdet),
        )

    rec()
    for u, v in case.updates():
        with torch.no_grad():
            layer.u.copy_(torch.from_numpy(u.astype(np.float64)))
            layer.v.copy_(torch.from_numpy(v.astype(np.float64)))
        merged_u = layer.u.detach().double().cpu().numpy().copy()
        merged_v = layer.v.detach().double().cpu().numpy().copy()
        if layer.merge():
            track.applied.append((merged_u, merged_v))
            if hook is not None:
                hook(layer, len(track.applied))
            rec()
        else:
            track.refused += 1
            layer.reset_perturbation()
    return track


@dataclass
class OraclePath:
    """The exact matrices of a path (rounded to float64) and the oracle's verdict on each."""

    matrices: list[np.ndarray]
    results: list[OracleResult]

    @property
    def inverses(self) -> list[np.ndarray]:
        return [r.inverse for r in self.results]

    @property
    def signs(self) -> list[int]:
        return [r.sign for r in self.results]

    @property
    def logdets(self) -> list[float]:
        return [r.logabsdet for r in self.results]

    @property
    def kappas(self) -> list[float]:
        # ‖A‖₁‖A⁻¹‖₁ ≥ 1 in exact arithmetic; the oracle's rounded value can land a hair below.
        return [max(1.0, r.kappa) for r in self.results]

    def allowance(self) -> PathAllowance:
        """The path allowance of :mod:`invlin.testing.paths` for this path."""
        return path_allowance(self.matrices, self.inverses, self.logdets)


def oracle_path(a0: np.ndarray, applied: list[tuple[np.ndarray, np.ndarray]]) -> OraclePath:
    """Exact A_j = a0 + Σ_{i<j} u_i v_iᵀ of every prefix, with the oracle's verdict on each."""
    exact = ExactMatrix.from_float(a0)
    mats, results = [exact.to_float()], [evaluate(exact)]
    for u, v in applied:
        exact.apply(u, v)
        mats.append(exact.to_float())
        results.append(evaluate(exact))
    return OraclePath(mats, results)


def sign_determined(track: Track, truth: OraclePath) -> int:
    """How many leading states (0 … k) have a sign the tracked inverse could get right.

    The sign of det flips when the computed c_j = 1 + vᵀX_{j−1}u is negative. Its error is
    |vᵀ(X_{j−1} − A_{j−1}⁻¹)u| (the drift of the held inverse, measured against the oracle) plus
    the rounding of forming it, ≤ (n + 2)ε(1 + |v|ᵀ|X_{j−1}||u|); while that is below the true
    |c_j| the computed sign is the true one. After the first update where it is not, the tracked
    sign is decided by rounding and drift (theme 1 bounds the drift), not by the implementation.
    """
    from invlin.testing import eps as unit

    e = unit(track.dtype)
    for j, (u, v) in enumerate(track.applied, start=1):
        x, y = track.inverses[j - 1].astype(np.float64), truth.inverses[j - 1]
        u64, v64 = np.asarray(u, np.float64), np.asarray(v, np.float64)
        n = u64.size
        rounding = (n + 2) * e * (1 + np.abs(v64) @ (np.abs(x) @ np.abs(u64)))
        error = abs(v64 @ ((x - y) @ u64)) + rounding
        ratio = math.exp(truth.logdets[j] - truth.logdets[j - 1])
        c_true = truth.signs[j] * truth.signs[j - 1] * ratio
        if not error * (1 + 1e-6) < abs(c_true):
            return j
    return len(track.applied) + 1


def steer(label: str, value: float) -> None:
    """``hypothesis.target(log10 value)`` for finite positive values (profiles with the target
    phase steer toward large values; elsewhere this only records the observation)."""
    if value > 0 and math.isfinite(value):
        target(math.log10(value), label=label)
