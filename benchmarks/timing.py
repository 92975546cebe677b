"""Side-by-side timing: interleaved repeats after warm-up, medians, ratios with their spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = ["Timing", "compare", "ratio", "sync_for"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one candidate: the median and the per-repeat samples."""

    median: float
    samples: tuple[float, ...]


def sync_for(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def _calls_for(fn: Callable[[], object], sync: Callable[[], None], target: float) -> int:
    """Calls per sample so that one sample lasts about ``target`` seconds (at least 1)."""
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(1000, round(target / once)))


def compare(
    candidates: Mapping[str, Callable[[], object]],
    *,
    device: str | torch.device = "cpu",
    repeats: int = 21,
    warmup: int = 3,
    target: float = 0.02,
) -> dict[str, Timing]:
    """Time every candidate in the same process, interleaved: repeat r times each once per round.

    Each candidate is warmed up (``warmup`` calls), then every round runs every candidate for a
    sample of k calls (k chosen so a sample lasts about ``target`` seconds) in an order that
    alternates between rounds, so slow drifts of a shared machine hit all candidates alike.
    Returns seconds per call (median of ``repeats`` samples) per candidate name.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not candidates:
        raise ValueError("candidates must name at least one function")
    sync = sync_for(device)
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
        sync()
    calls = {name: _calls_for(candidates[name], sync, target) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            fn, k = candidates[name], calls[name]
            sync()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync()
            samples[name].append((time.perf_counter() - t0) / k)
    return {name: Timing(statistics.median(s), tuple(s)) for name, s in samples.items()}


def ratio(num: Timing, den: Timing) -> dict[str, float]:
    """num/den as the median of the per-round ratios (each pair measured back to back, so a
    load change of a shared machine cancels) with their quartiles."""
    paired = sorted(a / b for a, b in zip(num.samples, den.samples, strict=True))
    if len(paired) >= 4:
        q1, _, q3 = statistics.quantiles(paired, n=4)
    else:
        q1, q3 = paired[0], paired[-1]
    return {"ratio": statistics.median(paired), "q1": q1, "q3": q3}
