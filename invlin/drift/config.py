"""Sweep configurations: what to run, with which seeds, and where to measure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from invlin._validation import positive_int
from invlin.drift.regimes import REGIMES
from invlin.drift.vocabulary import DEFAULTS, DTYPES, ENGINES, POLICIES

__all__ = [
    "DEFAULTS",
    "DTYPES",
    "Configuration",
    "checkpoints",
    "plan_sweep",
]


def checkpoints(updates: int, event: int | None = None) -> tuple[int, ...]:
    """Log-spaced checkpoints 1, 2, 5, 10, 20, 50, … and ``updates``; with an ``event`` (the
    closest approach or the sign change) also event ± 4^i, i = 0, 1, 2, and every tenth of the
    run, for the trajectory through the event.

    >>> checkpoints(100)
    (1, 2, 5, 10, 20, 50, 100)
    >>> checkpoints(100, event=50)
    (1, 2, 5, 10, 20, 30, 34, 40, 46, 49, 50, 51, 54, 60, 66, 70, 80, 90, 100)
    """
    updates = positive_int(updates, "updates")
    points = {int(m * 10**e) for e in range(20) for m in (1, 2, 5) if m * 10**e <= updates}
    points.add(int(updates))
    if event is not None:
        if not 1 <= event <= updates:
            raise ValueError(f"event must be in [1, {updates}], got {event!r}")
        points.add(int(event))
        for step in (1, 4, 16):
            points.update(p for p in (event - step, event + step) if 1 <= p <= updates)
        points.update(round(updates * i / 10) for i in range(1, 10))
        points.discard(0)
    return tuple(sorted(points))


@dataclass(frozen=True)
class Configuration:
    """One unit of work: an update sequence and the tracks (engine, policy) that follow it.

    All tracks see the same proposals, so policies are compared on identical sequences. The
    sequence depends on (seed, regime, n, updates) only, not on the dtype: float32 runs use the
    float64 plan rounded to float32.
    """

    regime: str
    n: int
    updates: int
    dtype: str
    tracks: tuple[tuple[str, str], ...]
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"
    scale: float = 0.05
    depth: float = 1e-10
    refresh_every: int = 100

    @property
    def label(self) -> str:
        """A short unique name, e.g. ``walk-n32-k1000-float64``."""
        return f"{self.regime}-n{self.n}-k{self.updates}-{self.dtype}"

    def sequence_seed(self) -> np.random.SeedSequence:
        """The seed of the update sequence (independent of dtype and tracks)."""
        return np.random.SeedSequence([self.seed, REGIMES.index(self.regime), self.n, self.updates])

    def track_seed(self, index: int) -> int:
        """A seed for track ``index``'s monitor and the checkpoint estimators."""
        ss = np.random.SeedSequence(
            [
                self.seed,
                REGIMES.index(self.regime),
                self.n,
                self.updates,
                DTYPES.index(self.dtype),
                index,
                1,
            ]
        )
        return int(ss.generate_state(1)[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings of this configuration."""
        out = asdict(self)
        out["tracks"] = [{"engine": e, "policy": p} for e, p in self.tracks]
        out["label"] = self.label
        return out


def _choices(values: Iterable[Any], allowed: Sequence[Any], name: str) -> tuple[Any, ...]:
    out = tuple(dict.fromkeys(values))
    if not out:
        raise ValueError(f"{name} must not be empty")
    bad = [v for v in out if v not in allowed]
    if bad:
        raise ValueError(f"{name} must be among {tuple(allowed)}, got {bad[0]!r}")
    return out


def _positive(values: Iterable[Any], name: str, minimum: int) -> tuple[int, ...]:
    out = tuple(dict.fromkeys(values))
    if not out:
        raise ValueError(f"{name} must not be empty")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {v!r}")
    return tuple(int(v) for v in out)


def plan_sweep(
    *,
    dims: Iterable[int] = DEFAULTS["dims"],
    updates: Iterable[int] = DEFAULTS["updates"],
    regimes: Iterable[str] = DEFAULTS["regimes"],
    dtypes: Iterable[str] = DEFAULTS["dtypes"],
    policies: Iterable[str] = DEFAULTS["policies"],
    engines: Iterable[str] = DEFAULTS["engines"],
    device: str = DEFAULTS["device"],
    seed: int = DEFAULTS["seed"],
    backend: str = DEFAULTS["backend"],
    scale: float = DEFAULTS["scale"],
    depth: float = DEFAULTS["depth"],
    refresh_every: int = DEFAULTS["refresh_every"],
) -> list[Configuration]:
    """Every (regime, n, updates, dtype) configuration of a sweep, each with its tracks.

    The reference engine runs float64/float32 on the CPU; the layer engine runs on ``device`` and
    is the only one for bfloat16, which needs a CUDA device. Raises ValueError naming the
    argument for anything unknown or impossible (e.g. bfloat16 without CUDA).
    """
    dims = _positive(dims, "dims", 3)
    updates = _positive(updates, "updates", 1)
    regimes = _choices(regimes, REGIMES, "regimes")
    dtypes = _choices(dtypes, DTYPES, "dtypes")
    policies = _choices(policies, POLICIES, "policies")
    engines = _choices(engines, ENGINES, "engines")
    if backend not in ("auto", "flint", "mpmath"):
        raise ValueError(f"backend must be 'auto', 'flint' or 'mpmath', got {backend!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:index]', got {device!r}")
    if device != "cpu" and "layer" not in engines:
        raise ValueError(f"device {device!r} needs the layer engine (engines: {engines})")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
    if "bfloat16" in dtypes and not (device.startswith("cuda") and "layer" in engines):
        raise ValueError(
            "dtypes: bfloat16 runs only on the layer engine on a CUDA device (--device cuda)"
        )
    if any(k < 12 for k in updates) and set(regimes) - {"walk"}:
        raise ValueError(f"updates must be >= 12 for the approach/crossing regimes, got {updates}")
    configs = []
    for regime in regimes:
        for n in dims:
            for k in updates:
                for dt in dtypes:
                    tracks = tuple(
                        (e, p)
                        for e in engines
                        for p in policies
                        if not (dt == "bfloat16" and e == "reference")
                    )
                    configs.append(
                        Configuration(
                            regime,
                            n,
                            k,
                            dt,
                            tracks,
                            int(seed),
                            device,
                            backend,
                            float(scale),
                            float(depth),
                            int(refresh_every),
                        )
                    )
    return configs
