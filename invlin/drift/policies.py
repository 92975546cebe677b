"""Drift policies run on the NumPy reference (TrackedMatrix) or the torch layer (P4InvLinear)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from invlin._dtypes import eps
from invlin._validation import positive_int
from invlin.drift.vocabulary import ENGINES, POLICIES
from invlin.reference.estimators import estimate_drift
from invlin.reference.rank_one import Guard, TrackedMatrix

__all__ = [
    "ENGINES",
    "POLICIES",
    "LayerTrack",
    "PolicySpec",
    "ReferenceTrack",
    "TrackState",
    "make_track",
    "policy_spec",
]


_DESCRIPTIONS = {
    "plain": "Sherman–Morrison + determinant lemma, no guard (only c = 0 or non-finite refused)",
    "guarded": "P4 merge guard: refuse log|c| ≤ −6 or log|det| outside (−2.5, 15.5)",
    "monitored": "P4 guard + drift monitor after every merge (O(n²) probes; estimated ratio > "
    "{max_ratio:g} → Newton–Schulz correction, or LU refresh when ‖R‖ ≥ "
    "{max_correctable:g}{kappa_rule})",
    "refresh": "no guard; LU refresh of X, sign and log|det| every {refresh_every} merges",
}


@dataclass(frozen=True)
class PolicySpec:
    """What a policy does: its merge ``guard``, the drift ``monitor`` settings (``None``: none)
    and ``refresh_every`` (merges between LU refreshes, ``None``: never)."""

    name: str
    guard: Guard
    monitor: dict[str, float | None] | None
    refresh_every: int | None
    description: str


def policy_spec(
    name: str,
    *,
    refresh_every: int = 100,
    max_ratio: float = 100.0,
    max_correctable: float = 0.25,
    max_kappa_drop: float | None = 100.0,
) -> PolicySpec:
    """The :class:`PolicySpec` of policy ``name`` (one of :data:`POLICIES`); the monitor's
    settings are those of :class:`~invlin.nn.DriftMonitor`."""
    if name not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {name!r}")
    refresh_every = positive_int(refresh_every, "refresh_every")
    rule = (
        ""
        if max_kappa_drop is None
        else f", and when κ₁ falls {max_kappa_drop:g}× below its peak since the last LU"
    )
    text = _DESCRIPTIONS[name].format(
        refresh_every=refresh_every,
        max_ratio=max_ratio,
        max_correctable=max_correctable,
        kappa_rule=rule,
    )
    monitor = {
        "max_ratio": float(max_ratio),
        "max_correctable": float(max_correctable),
        "max_kappa_drop": None if max_kappa_drop is None else float(max_kappa_drop),
    }
    if name == "plain":
        return PolicySpec(name, Guard.off(), None, None, text)
    if name == "guarded":
        return PolicySpec(name, Guard.p4(), None, None, text)
    if name == "monitored":
        return PolicySpec(name, Guard.p4(), monitor, None, text)
    return PolicySpec(name, Guard.off(), None, refresh_every, text)


@dataclass(frozen=True)
class TrackState:
    """A track's state as float64 NumPy values: held matrix ``a`` and tracked inverse ``x``
    (both (n, n), exact copies of the held numbers), ``sign`` (±1) and ``logabsdet``."""

    a: np.ndarray
    x: np.ndarray
    sign: int
    logabsdet: float


class ReferenceTrack:
    """A policy on :class:`TrackedMatrix` (float64 or float32 state).

    ``a0``: (n, n) starting matrix already rounded to ``dtype``; ``seed`` drives the monitor's
    probes. :meth:`propose` offers one update and returns whether it was merged.
    """

    engine = "reference"
    device = "cpu"

    def __init__(self, a0: np.ndarray, dtype: str, spec: PolicySpec, *, seed: Any = 0):
        if dtype not in ("float64", "float32"):
            raise ValueError(
                f"dtype must be 'float64' or 'float32' for the reference engine, got {dtype!r}"
            )
        self.dtype, self.spec = dtype, spec
        self._t = TrackedMatrix(np.asarray(a0), dtype=dtype, guard=spec.guard)
        self._rng = np.random.default_rng(seed)
        self.applied = self.refused = self.corrections = self.refreshes = 0
        self._kappa_peak = 0.0  # the largest κ₁ the monitor read since the last LU
        if spec.monitor is not None:
            from invlin.nn.monitor import DriftMonitor

            self._monitor = DriftMonitor(**spec.monitor)

    def propose(self, u: np.ndarray, v: np.ndarray) -> bool:
        """Offer A ← A + u vᵀ (u, v: (n,) in the track's dtype); True when merged."""
        if not self._t.update(u, v, on_refuse="skip").applied:
            self.refused += 1
            return False
        self.applied += 1
        if self.spec.monitor is not None:
            self._check()
        if self.spec.refresh_every and self.applied % self.spec.refresh_every == 0:
            self._refresh()
        return True

    def _check(self) -> None:
        from invlin.nn.monitor import DriftReading

        t = self._t
        est = estimate_drift(
            t.a, t.inverse, dtype=self.dtype, probes=self._monitor.probes, seed=self._rng
        )
        ld_scale = t.n * est.kappa * eps(self.dtype)  # the log|det| scale of invlin.testing
        ld_ratio = abs(est.logdet_drift) / ld_scale if ld_scale > 0 else np.inf
        reading = DriftReading(
            est.residual, est.ratio, est.logdet_drift, float(ld_ratio), est.kappa
        )
        self._kappa_peak = max(est.kappa, self._kappa_peak)
        action = self._monitor.decide(reading, self._kappa_peak)
        if action == "correct":
            try:
                t.correct(order=self._monitor.order)
                self.corrections += 1
                return
            except ValueError:
                action = "refresh"
        if action == "refresh":
            self._refresh()

    def _refresh(self) -> None:
        self._t.refresh()
        self.refreshes += 1
        self._kappa_peak = 0.0  # the largest κ₁ read since the last LU

    def state(self) -> TrackState:
        """The held matrix, tracked inverse, sign and log|det| (float64 copies)."""
        t = self._t
        return TrackState(
            t.a.astype(np.float64), t.inverse.astype(np.float64), int(t.sign), float(t.logabsdet)
        )


class LayerTrack:
    """A policy on the torch :class:`~invlin.nn.P4InvLinear` (state in ``dtype`` on ``device``).

    Merges go through ``layer.merge()`` (guard and monitor are the layer's own); the refresh
    policy calls ``layer.refresh()`` every ``refresh_every`` merges. bfloat16 needs a CUDA device.
    """

    engine = "layer"

    def __init__(
        self, a0: np.ndarray, dtype: str, spec: PolicySpec, *, device: str = "cpu", seed: int = 0
    ):
        import torch

        from invlin.nn.monitor import DriftMonitor
        from invlin.nn.p4 import P4InvLinear

        dtypes = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
        if dtype not in dtypes:
            raise ValueError(f"dtype must be one of {tuple(dtypes)}, got {dtype!r}")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dtype == "bfloat16" and dev.type != "cuda":
            raise ValueError("dtype 'bfloat16' runs on a CUDA device only (device='cuda')")
        self.dtype, self.spec, self.device = dtype, spec, str(dev)
        self._torch = torch
        tdt = dtypes[dtype]
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        # explicitly off unless monitored (the layer's default is on): plain, guarded and
        # refresh stay baselines
        monitor = None
        if spec.monitor is not None:
            monitor = DriftMonitor(**spec.monitor)
        init = torch.as_tensor(np.asarray(a0, dtype=np.float64))
        self.layer = P4InvLinear(
            init.shape[0],
            bias=False,
            init=init,
            guard=spec.guard,
            monitor=monitor,
            state_dtype=tdt,
            device=dev,
            dtype=tdt,
            generator=gen,
        )
        self.refreshes_by_policy = 0

    def propose(self, u: np.ndarray, v: np.ndarray) -> bool:
        """Offer A ← A + u vᵀ through ``layer.merge()``; True when merged."""
        torch, layer = self._torch, self.layer
        with torch.no_grad():
            layer.u.copy_(torch.as_tensor(u))
            layer.v.copy_(torch.as_tensor(v))
        ok = layer.merge()
        if ok and self.spec.refresh_every and layer.merges % self.spec.refresh_every == 0:
            layer.refresh()
        return ok

    @property
    def applied(self) -> int:
        return self.layer.merges

    @property
    def refused(self) -> int:
        return self.layer.refusals

    @property
    def corrections(self) -> int:
        return self.layer.corrections

    @property
    def refreshes(self) -> int:
        return self.layer.refreshes

    def state(self) -> TrackState:
        """The layer's buffers as float64 NumPy copies (bfloat16 values are exact in float64)."""
        layer = self.layer

        def host(t: Any) -> np.ndarray:
            return t.detach().to("cpu", self._torch.float64).numpy().copy()

        return TrackState(
            host(layer.weight), host(layer.weight_inverse), int(layer.sign), float(layer.logabsdet)
        )


def make_track(
    engine: str,
    policy: str,
    a0: np.ndarray,
    dtype: str,
    *,
    device: str = "cpu",
    seed: int = 0,
    refresh_every: int = 100,
) -> ReferenceTrack | LayerTrack:
    """A fresh track of ``policy`` on ``engine`` (one of :data:`ENGINES`) starting from ``a0``."""
    spec = policy_spec(policy, refresh_every=refresh_every)
    if engine == "reference":
        if device != "cpu":
            raise ValueError(f"device must be 'cpu' for the reference engine, got {device!r}")
        return ReferenceTrack(a0, dtype, spec, seed=seed)
    if engine == "layer":
        return LayerTrack(a0, dtype, spec, device=device, seed=seed)
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
