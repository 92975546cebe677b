"""Accuracy of the LeakySoftplus inverse in ulp: float64 reference, worst points by mpmath."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import torch

from invlin.nn import LeakySoftplus
from invlin.reference import activations as ref

__all__ = ["leaky_softplus_ulp", "mp_inverse", "sample_y"]

_NP = {torch.float32: np.float32, torch.float64: np.float64}


def sample_y(count: int, dtype: torch.dtype, seed: int = 0) -> np.ndarray:
    """``count`` float64 values exactly representable in ``dtype``: half N(0, 5²), half
    log-uniform magnitudes over the dtype's normal range with random signs, plus f(0)."""
    rng = np.random.default_rng(seed)
    info = torch.finfo(dtype)
    lo, hi = math.log10(info.tiny), math.log10(info.max) - 1
    mags = 10.0 ** rng.uniform(lo, hi, count - count // 2)
    signs = np.where(rng.random(mags.size) < 0.5, -1.0, 1.0)
    y = np.concatenate([5 * rng.standard_normal(count // 2), signs * mags, [0.9 * math.log(2)]])
    y = torch.from_numpy(y).to(dtype).double().numpy()
    # Leave out roots beyond the dtype's range (f⁻¹(y) ≈ y/α overflows): tested elsewhere.
    return y[np.isfinite(y) & (y > -0.09 * info.max)]


def mp_inverse(y: float, alpha: float = 0.1, dps: int = 40) -> mp.mpf:
    """f⁻¹(y) by bisection in mpmath on the bracket max(x, αx) ≤ f(x) ≤ that + (1 − α)·log 2."""
    with mp.workdps(dps):
        a, yy = mp.mpf(alpha), mp.mpf(y)
        c = (1 - a) * mp.log(2)
        lo = yy - c if yy - c >= 0 else (yy - c) / a
        hi = yy if yy >= 0 else yy / a
        lo, hi = lo - abs(lo) * mp.mpf(10) ** -30 - mp.mpf(10) ** -320, hi + abs(hi) * 1e-30

        def f(x: mp.mpf) -> mp.mpf:
            return a * x + (1 - a) * (mp.log1p(mp.exp(x)) if x < 0 else x + mp.log1p(mp.exp(-x)))

        for _ in range(3000):
            mid = (lo + hi) / 2
            if mid in (lo, hi) or hi - lo <= mp.mpf(10) ** -(dps - 2) * max(abs(lo), abs(hi)):
                break
            lo, hi = (mid, hi) if f(mid) < yy else (lo, mid)
        return (lo + hi) / 2


def _ulp(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Spacing of ``dtype`` at |values| (float64 array); bfloat16 has 7 stored fraction bits."""
    mags = np.abs(values)
    if dtype == torch.bfloat16:
        tiny = torch.finfo(torch.bfloat16).tiny
        return np.exp2(np.floor(np.log2(np.maximum(mags, tiny))) - 7)
    return np.spacing(mags.astype(_NP[dtype])).astype(np.float64)


def leaky_softplus_ulp(
    *, device: str, dtype: torch.dtype, count: int = 1_000_000, worst: int = 12
) -> dict[str, object]:
    """Max / 99.9 % / mean error of ``LeakySoftplus().inverse`` in ulp of ``dtype`` over
    ``count`` points against the float64 NumPy reference, and the ``worst`` points re-checked
    against an mpmath bisection (independent of both implementations)."""
    act = LeakySoftplus(0.1)
    reference = ref.LeakySoftplus(0.1)
    y = sample_y(count, dtype)
    y = torch.from_numpy(y).to(dtype).double().numpy()  # representable in dtype
    got = act.inverse(torch.from_numpy(y).to(device=device, dtype=dtype).reshape(-1, 1))[0]
    got = got.double().cpu().reshape(-1).numpy()
    truth = reference.inverse(y)
    err = np.abs(got - truth) / _ulp(truth, dtype)
    order = np.argsort(err)[::-1][:worst]
    mp_err = []
    for i in order:
        true = mp_inverse(float(y[i]))
        spacing = float(_ulp(np.array([float(true)]), dtype)[0])
        mp_err.append(float(abs(mp.mpf(float(got[i])) - true) / spacing))
    return {
        "case": "leaky_softplus_ulp",
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "points": int(y.size),
        "max_ulp": float(err.max()),
        "p999_ulp": float(np.quantile(err, 0.999)),
        "mean_ulp": float(err.mean()),
        "worst_mpmath_ulp": max(mp_err),
        "worst_y": float(y[order[0]]),
    }
