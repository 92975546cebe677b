"""The statistics behind the distribution checks: bounds with a stated false-alarm probability,
trapezoid quadrature with its error estimate, and a Student-t importance sampler.

All inputs and outputs are float64 NumPy arrays; nothing here calls a flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Proposal",
    "Weighted",
    "axis_nodes",
    "box",
    "cumulative",
    "dkwm_epsilon",
    "ecdf_distance",
    "normal_quantile",
    "trapezoid_weights",
    "truncation_bound",
    "weighted",
]


def dkwm_epsilon(count: float, delta: float) -> float:
    """ε with P(sup_t |F_n(t) − F(t)| > ε) ≤ δ for the empirical CDF of ``count`` independent
    draws (Dvoretzky–Kiefer–Wolfowitz–Massart: ≤ 2 exp(−2 n ε²)), so ε = √(ln(2/δ) / 2n)."""
    return math.sqrt(math.log(2.0 / delta) / (2.0 * count))


def truncation_bound(count: int, delta: float) -> float:
    """q such that, if ``count`` independent draws all fall in a box, the box misses a mass
    above q with probability ≤ δ: (1 − q)ⁿ ≤ e^{−qn} = δ, so q = ln(1/δ) / n."""
    return math.log(1.0 / delta) / count


def normal_quantile(delta: float) -> float:
    """z with P(|N(0, 1)| > z) = δ (4.89 for δ = 10⁻⁶)."""
    return NormalDist().inv_cdf(1.0 - delta / 2.0)


def box(points: np.ndarray, pad: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(lo, hi)`` of ``points`` (count, d), widened by ``pad`` times the range on
    each side (and by at least 1e-3 times the scale, for a column of equal values)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    width = np.maximum(hi - lo, 1e-3 * np.maximum(1.0, np.abs(lo) + np.abs(hi)))
    return lo - pad * width, hi + pad * width


def axis_nodes(
    samples: np.ndarray, lo: float, hi: float, count: int, *, mixed: bool = False
) -> np.ndarray:
    """About ``count`` sorted nodes on [lo, hi] (4k + 1 of them, ends included, so that every
    second and every fourth node are nested coarser rules): uniform (the trapezoid rule is then very
    accurate for smooth, decaying densities), or ``mixed``: half uniform, half at the quantiles
    of ``samples`` (the midpoints of equal-mass bins), so a sharp density gets nodes where its
    mass is."""
    if not mixed:
        return np.linspace(lo, hi, 4 * (count // 4) + 1)
    half = count // 2
    uniform = np.linspace(lo, hi, half + 1)
    quantiles = np.quantile(samples, (np.arange(half) + 0.5) / half)
    t = np.unique(np.concatenate([uniform, np.clip(quantiles, lo, hi)]))
    while (t.shape[0] - 1) % 4:  # drop the interior node closest to its neighbours
        gaps = np.diff(t)
        t = np.delete(t, int(np.argmin(gaps[1:] + gaps[:-1])) + 1)
    return t


def trapezoid_weights(t: np.ndarray) -> np.ndarray:
    """Composite trapezoid weights of the sorted nodes ``t``."""
    w = np.zeros_like(t)
    gaps = np.diff(t)
    w[:-1] += 0.5 * gaps
    w[1:] += 0.5 * gaps
    return w


def cumulative(t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """∫ from t[0] to each node of the function sampled at the sorted nodes ``t`` (trapezoid),
    shape as ``values``; starts at 0."""
    out = np.zeros_like(values)
    out[1:] = np.cumsum(0.5 * np.diff(t) * (values[1:] + values[:-1]))
    return out


def ecdf_distance(samples: np.ndarray, cdf: np.ndarray) -> float:
    """sup_t |F_n(t) − F(t)| for sorted ``samples`` (count,) and ``cdf`` = F at them: the
    supremum is reached at a sample, from the left (i/n) or the right ((i+1)/n)."""
    n = samples.shape[0]
    i = np.arange(n)
    return float(max(np.max(np.abs((i + 1) / n - cdf)), np.max(np.abs(cdf - i / n))))


@dataclass(frozen=True)
class Proposal:
    """A defensive mixture q = s·t + (1 − s)·k fitted to points of the flow: t a multivariate
    Student-t (``dof``, location ``mean``, Cholesky factor ``chol`` of its scale, chosen so its
    covariance is ``inflation²`` times the points' covariance Σ) — heavier tails than the flow,
    so the weights stay bounded out there — and k an equal-weight Gaussian kernel density on
    ``centres`` with covariance h²Σ (Scott's h = m^(−1/(d+4)); Cholesky factor ``kchol``) —
    close to the flow's shape in the bulk (several modes, curved ridges). ``share`` is s."""

    mean: np.ndarray
    chol: np.ndarray
    dof: float
    centres: np.ndarray
    kchol: np.ndarray
    share: float

    @classmethod
    def fit(
        cls,
        points: np.ndarray,
        *,
        inflation: float = 1.5,
        dof: float = 5.0,
        kernels: int = 500,
        share: float = 0.5,
    ) -> Proposal:
        """Fit to ``points`` (count, d); a ridge of 1e-9·trace keeps Σ nonsingular; the first
        ``kernels`` points are the kernel centres."""
        d = points.shape[1]
        cov = np.atleast_2d(np.cov(points, rowvar=False))
        cov = cov + 1e-9 * max(np.trace(cov), 1e-12) * np.eye(d)
        centres = points[:kernels]
        h = centres.shape[0] ** (-1.0 / (d + 4))
        chol = np.linalg.cholesky(inflation**2 * cov * (dof - 2.0) / dof)
        return cls(points.mean(axis=0), chol, dof, centres, h * np.linalg.cholesky(cov), share)

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` draws, shape (count, d)."""
        d = self.mean.shape[0]
        z = rng.standard_normal((count, d))
        g = rng.chisquare(self.dof, size=(count, 1)) / self.dof
        heavy = self.mean + (z / np.sqrt(g)) @ self.chol.T
        pick = rng.integers(0, self.centres.shape[0], size=count)
        kernel = self.centres[pick] + rng.standard_normal((count, d)) @ self.kchol.T
        return np.where(rng.random((count, 1)) < self.share, heavy, kernel)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log q(x) for x (count, d)."""
        d, nu = self.mean.shape[0], self.dof
        u = np.linalg.solve(self.chol, (x - self.mean).T).T
        maha = np.sum(u * u, axis=1)
        log_t = (
            math.lgamma((nu + d) / 2)
            - math.lgamma(nu / 2)
            - 0.5 * d * math.log(nu * math.pi)
            - np.sum(np.log(np.diag(self.chol)))
            - 0.5 * (nu + d) * np.log1p(maha / nu)
        )
        xw = np.linalg.solve(self.kchol, x.T).T
        cw = np.linalg.solve(self.kchol, self.centres.T).T
        m = cw.shape[0]
        norm = -0.5 * d * math.log(2 * math.pi) - np.sum(np.log(np.diag(self.kchol)))
        log_k = np.empty(x.shape[0])
        for start in range(0, x.shape[0], 2048):  # (rows × centres) distances, in chunks
            rows = xw[start : start + 2048]
            sq = (rows * rows).sum(1)[:, None] + (cw * cw).sum(1)[None, :] - 2 * rows @ cw.T
            e = -0.5 * np.maximum(sq, 0.0)
            top = e.max(axis=1)
            log_k[start : start + 2048] = top + np.log(np.exp(e - top[:, None]).sum(1))
        log_k += norm - math.log(m)
        return np.logaddexp(math.log(self.share) + log_t, math.log1p(-self.share) + log_k)


@dataclass(frozen=True)
class Weighted:
    """Importance weights w = p(y)/q(y) of proposal draws ``y``: ``estimate`` of ∫p (the mean
    weight), its ``standard_error``, and the effective sample size (Σw)²/Σw²."""

    points: np.ndarray
    weights: np.ndarray
    estimate: float
    standard_error: float
    effective: float


def weighted(points: np.ndarray, log_p: np.ndarray, log_q: np.ndarray) -> Weighted:
    """The importance-sampling summary of ``points`` with densities ``log_p`` (the flow's,
    −inf allowed) and ``log_q`` (the proposal's)."""
    w = np.exp(log_p - log_q)
    count = w.shape[0]
    total = float(w.sum())
    est = total / count
    se = float(w.std(ddof=1)) / math.sqrt(count)
    ess = total**2 / float(np.sum(w * w)) if total > 0 else 0.0
    return Weighted(points, w, est, se, ess)
