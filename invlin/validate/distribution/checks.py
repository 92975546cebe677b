"""The distribution checks: ``check(make, ctx) -> CheckResult`` where ``make()`` builds a
:class:`~invlin.validate.distribution.adapter.DistributionAdapter`.

Every statistical decision has a stated false-alarm probability: a correct flow fails a run
of one check with probability at most :data:`DELTA` (10⁻⁶), split (Bonferroni) over the
contexts and projections it judges. A conditional flow (``context_features`` M > 0, from the
check context or declared by the flow) is judged at :data:`CONTEXTS` contexts drawn from
N(0, I_M) with the check's seed (:func:`~invlin.validate.conditioning.draw_contexts`); each
is a distribution of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch

from invlin.testing import allowed_ratio, eps
from invlin.validate.checks.base import CheckContext, numpy64
from invlin.validate.conditioning import draw_contexts
from invlin.validate.distribution.adapter import DistributionAdapter
from invlin.validate.distribution.statistics import (
    Proposal,
    Weighted,
    axis_nodes,
    box,
    cumulative,
    dkwm_epsilon,
    ecdf_distance,
    normal_quantile,
    trapezoid_weights,
    truncation_bound,
    weighted,
)
from invlin.validate.protocol import Unsupported
from invlin.validate.results import CheckResult

__all__ = [
    "CONTEXTS",
    "DELTA",
    "DIST_CHECKS",
    "applicable",
    "dist_consistency",
    "dist_normalisation",
    "dist_samples",
]

#: False-alarm probability of one run of a statistical check on a correct flow.
DELTA: float = 1e-6
#: Contexts drawn for a conditional flow.
CONTEXTS: int = 2
_CONSISTENCY_COUNT = 512  # rows compared in dist_consistency (a rounding check: no statistics)
_BOX_COUNT = 4000  # samples that fix the quadrature box and the importance proposal
_SAMPLE_COUNT = 20000  # samples whose empirical CDF dist_samples compares
_IS_COUNT = 20000  # proposal draws of the importance-sampling estimates (dimension > 2)
_PROJECTIONS = 3  # random directions of dist_samples (one in dimension 1)
#: trapezoid nodes per axis (about; see axis_nodes), refined in turn while the error estimate
#: is too large: for ∫p, and for the projected CDF (along w, across w)
#: (a uniform grid first; then nodes half at the samples' quantiles, see axis_nodes)
_NODES = {1: ((4097,), (16385,)), 2: ((129, 129), (257, 257), (513, 513))}
_CDF_NODES = {1: ((4097,), (16385,)), 2: ((257, 97), (513, 193))}
_CDF_REFINE = 0.005  # a CDF error estimate above this (a quarter of ε) asks for a finer grid
_QUAD_LIMIT = 0.02  # quadrature error estimate beyond which ∫p = 1 cannot be judged
_IS_LIMIT = 0.25  # z·standard error beyond which the importance estimate judges nothing useful
_MIN_EFFECTIVE = 1000  # effective sample size below which the importance weights cannot judge
_CHUNK = 16384  # rows per log_prob call on a grid
_STREAM = 19  # the contexts' own stream of the seed (apart from the layer checks' contexts)

Make = Callable[[], DistributionAdapter]


# -- shared plumbing ----------------------------------------------------------------------------
def _fresh(make: Make, ctx: CheckContext) -> DistributionAdapter:
    adapter = make()
    if not isinstance(adapter, DistributionAdapter):
        raise Unsupported(
            f"{adapter.name} is a layer: the distribution checks apply to whole flows (a "
            "factory returning a distribution with log_prob and sample)"
        )
    try:
        adapter.to(dtype=ctx.torch_dtype, device=ctx.device)
    except Unsupported:
        if adapter.parameters():
            raise
    return adapter


def _contexts(adapter: DistributionAdapter, ctx: CheckContext) -> list[torch.Tensor | None]:
    """[None] for an unconditional flow, else :data:`CONTEXTS` draws from N(0, I_M)."""
    m = max(ctx.context_features, adapter.context_features)
    if m == 0:
        return [None]
    draws = torch.as_tensor(draw_contexts(m, CONTEXTS, seed=ctx.seed, stream=_STREAM))
    return [c.to(ctx.device, ctx.torch_dtype) for c in draws]


def _where(c: torch.Tensor | None) -> str:
    if c is None:
        return ""
    vals = ", ".join(f"{v:.3g}" for v in numpy64(c))
    return f" at context [{vals}]"


def _depth(adapter: DistributionAdapter) -> int:
    """Number of inner transforms (at least one): the flow's depth for the rounding bound."""
    try:
        return max(1, len(adapter.transforms()))
    except Exception:
        return 1


def _out(name: str, ctx: CheckContext, status: str, message: str, **kw) -> CheckResult:
    return CheckResult(
        check=name, dtype=ctx.dtype, device=ctx.device, status=status, message=message, **kw
    )


def _samples(adapter: DistributionAdapter, count: int, c: torch.Tensor | None, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        x = adapter.sample(count, c)
    n = adapter.event_size
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (count, n):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _Bad(f"sample({count}) gave {shape}, expected ({count}, {n})")
    xs = numpy64(x)
    if not np.isfinite(xs).all():
        raise _Bad(f"sample({count}) gave {int((~np.isfinite(xs)).sum())} non-finite values")
    return xs


class _Bad(Exception):
    """The flow returned something malformed (a failed check, with this message)."""


def _log_prob(
    adapter: DistributionAdapter, points: np.ndarray, c: torch.Tensor | None, ctx: CheckContext
) -> np.ndarray:
    """log p at ``points`` (count, n), in chunks, as float64; NaN or +inf is a failure."""
    out = []
    with torch.no_grad():
        for start in range(0, points.shape[0], _CHUNK):
            rows = torch.as_tensor(points[start : start + _CHUNK]).to(ctx.device, ctx.torch_dtype)
            lp = adapter.log_prob(rows, c)
            if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (rows.shape[0],):
                shape = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
                raise _Bad(f"log_prob of {rows.shape[0]} rows gave {shape}, expected the batch")
            out.append(numpy64(lp))
    lp = np.concatenate(out)
    bad = np.isnan(lp) | (lp == np.inf)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise _Bad(f"log_prob is {lp[j]} at x = {points[j].tolist()}")
    return lp


def _rounding(lp: np.ndarray, n: int, depth: int, ctx: CheckContext) -> float:
    """Relative error of p = exp(log p) that rounding may cause: the engine's allowance for a
    computation ``depth`` transforms deep, times ε·(n + max |log p|) (log p's scale)."""
    finite = lp[np.isfinite(lp)]
    top = float(np.max(np.abs(finite))) if finite.size else 0.0
    return allowed_ratio(depth) * eps(ctx.dtype) * (n + top)


def _guarded(name: str, ctx: CheckContext, body: Callable[[], CheckResult]) -> CheckResult:
    try:
        return body()
    except _Bad as exc:
        return _out(name, ctx, "fail", str(exc))


# -- 1. consistency of the two densities -----------------------------------------------------
def _reference(adapter: DistributionAdapter, make: Make) -> DistributionAdapter | None:
    try:
        ref = copy.deepcopy(adapter)
    except Exception:
        ref = make()
    try:
        return ref.to(dtype=torch.float64, device="cpu")
    except Unsupported:
        return None


def _kappa(
    ref: DistributionAdapter | None, x: np.ndarray, c: torch.Tensor | None, lp: np.ndarray
) -> np.ndarray:
    """κ_eff per row = 1 + (|ℓ| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n from a float64 copy (autograd); without
    one (or without gradients) the sensitivity term is left out."""
    n = x.shape[1]
    sens = np.zeros(x.shape[0])
    if ref is not None:
        try:
            xr = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
            c64 = None if c is None else c.detach().to("cpu", torch.float64)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(ref.log_prob(xr, c64).sum(), xr)
            sens = np.abs(numpy64(g) * x).sum(axis=1)
            sens = np.where(np.isfinite(sens), sens, 0.0)
        except Exception:
            pass
    return 1.0 + (np.abs(lp) + sens) / n


def dist_consistency(make: Make, ctx: CheckContext) -> CheckResult:
    """``log_prob(x)`` at 512 samples equals the density the library returned along the
    sampling path (``sample_and_log_prob`` / ``rsample_and_log_prob`` / normflows' ``sample``),
    at every context.

    Both are the same function evaluated by two routes (data → latent and latent → data), so
    they differ by rounding only. Per row, ratio = |ℓ_path − ℓ| / (n κ_eff ε) (the log|det|
    ratio of the tolerance engine) with κ_eff = 1 + (|ℓ| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n — the sensitivity
    of ℓ to a relative error of size ε in the sample, from a float64 copy — judged against
    the engine's allowance for ``depth`` successive computations, ``allowed_ratio(depth)`` =
    30·(1 + number of inner transforms). Skipped when the library returns no density along
    its sampling path.
    """
    name = "dist_consistency"
    adapter = _fresh(make, ctx)
    ref = _reference(adapter, make)
    depth = _depth(adapter)
    allowed = allowed_ratio(depth)
    n = adapter.event_size

    def body() -> CheckResult:
        worst, where = 0.0, ""
        for k, c in enumerate(_contexts(adapter, ctx)):
            torch.manual_seed(ctx.seed + k)
            with torch.no_grad():
                x, lp_path = adapter.sample_and_log_prob(_CONSISTENCY_COUNT, c)
                lp_eval = adapter.log_prob(x, c)
            count = _CONSISTENCY_COUNT
            for what, t in (("its log-density", lp_path), ("log_prob", lp_eval)):
                if tuple(t.shape) != (count,):
                    raise _Bad(f"{what} of {count} samples has shape {tuple(t.shape)}")
            xs, a, b = numpy64(x), numpy64(lp_path), numpy64(lp_eval)
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                j = int(np.flatnonzero(~(np.isfinite(a) & np.isfinite(b)))[0])
                raise _Bad(
                    f"non-finite density at a sample{_where(c)}: along the sampling path "
                    f"{a[j]}, log_prob {b[j]} (x = {xs[j].tolist()})"
                )
            kappa = _kappa(ref, xs, c, b)
            ratios = np.abs(a - b) / (n * kappa * eps(ctx.dtype))
            j = int(np.argmax(ratios))
            if ratios[j] >= worst:
                worst = float(ratios[j])
                where = (
                    f"row {j}{_where(c)}: along the sampling path {a[j]:.10g}, log_prob "
                    f"{b[j]:.10g} (difference {a[j] - b[j]:.3g}, κ_eff {kappa[j]:.3g})"
                )
        status = "pass" if worst <= allowed else "fail"
        verdict = "agree" if status == "pass" else "disagree"
        msg = (
            f"log_prob and the sampling path's density {verdict}: worst ratio {worst:.3g} "
            f"(allowed {allowed:g} for depth {depth}); {where}"
        )
        return _out(name, ctx, status, msg, ratio=worst, allowed=allowed, cases=count)

    return _guarded(name, ctx, body)


# -- 2. normalisation ----------------------------------------------------------------------
def _grid_density(adapter, c, xs, basis, counts, ctx, mixed: bool):
    """The density on a tensor grid in the coordinates ``basis`` (rows: orthonormal directions):
    per-axis nodes (:func:`axis_nodes` over the samples' box ±50% in those coordinates, about
    ``counts``; ``mixed``: half at the samples' quantiles) and p = exp(log p) at every node,
    of the grid's shape; also log p (flat)."""
    coords = xs @ basis.T
    lo, hi = box(coords)
    axes = [axis_nodes(coords[:, i], lo[i], hi[i], k, mixed=mixed) for i, k in enumerate(counts)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    lp = _log_prob(adapter, mesh @ basis, c, ctx)
    return axes, np.exp(lp).reshape([a.shape[0] for a in axes]), lp


def _integral(axes: list[np.ndarray], p: np.ndarray, stride: int) -> float:
    """Tensor trapezoid rule on every ``stride``-th node of each axis."""
    sub = p[tuple(slice(None, None, stride) for _ in axes)]
    for t in reversed(axes):
        sub = sub @ trapezoid_weights(t[::stride])
    return float(sub)


def _quadrature(adapter, c, xs, ctx, depth, delta) -> tuple[str, str]:
    n = adapter.event_size
    for level, counts in enumerate(_NODES[n]):  # refined while the error estimate is too large
        axes, p, lp = _grid_density(adapter, c, xs, np.eye(n), counts, ctx, level > 0)
        z, z2, z4 = (_integral(axes, p, k) for k in (1, 2, 4))
        err = max(abs(z - z2), abs(z2 - z4))  # two differences: one may vanish by chance
        if err <= _QUAD_LIMIT:
            break
    q = truncation_bound(xs.shape[0], delta)
    r = _rounding(lp, n, depth, ctx) * z
    grid = "×".join(str(a.shape[0]) for a in axes)
    evidence = (
        f"∫p = {z:.6f}{_where(c)} (trapezoid on a {grid} grid over the samples' box ±50%: "
        f"error estimate {err:.2g}; mass outside the box ≤ {q:.2g} with probability "
        f"1 − {delta:.2g}; rounding ≤ {r:.2g})"
    )
    if err > _QUAD_LIMIT:
        return "insufficient", evidence + f": the error estimate exceeds {_QUAD_LIMIT}"
    ok = 1.0 - q - err - r <= z <= 1.0 + err + r
    return ("pass" if ok else "fail"), evidence


def _importance(adapter, c, xs, ctx, depth, seed) -> tuple[Weighted, float]:
    """Importance draws from the :class:`Proposal` fitted to ``xs``; returns the weights and the
    rounding allowance (relative)."""
    prop = Proposal.fit(xs)
    y = prop.draw(_IS_COUNT, np.random.default_rng(seed))
    lp = _log_prob(adapter, y, c, ctx)
    return weighted(y, lp, prop.log_density(y)), _rounding(lp, adapter.event_size, depth, ctx)


def _is_normalisation(adapter, c, xs, ctx, depth, delta, seed) -> tuple[str, str]:
    iw, r = _importance(adapter, c, xs, ctx, depth, seed)
    z = normal_quantile(delta)
    bound = z * iw.standard_error + r * max(iw.estimate, 1.0)
    evidence = (
        f"∫p ≈ {iw.estimate:.5f} ± {iw.standard_error:.2g}{_where(c)} (importance sampling, "
        f"{_IS_COUNT} draws from ½ Student-t(5) (covariance ×1.5²) + ½ Gaussian kernels on "
        f"500 of {xs.shape[0]} samples; effective sample size {iw.effective:.0f}; bound "
        f"z·SE + rounding = {bound:.2g}, z = {z:.3g} for a false alarm ≤ {delta:.2g})"
    )
    if iw.effective < _MIN_EFFECTIVE or z * iw.standard_error > _IS_LIMIT:
        return "insufficient", evidence + ": the weights vary too much to judge"
    return ("pass" if abs(iw.estimate - 1.0) <= bound else "fail"), evidence


def _combine(name: str, ctx: CheckContext, parts: list[tuple[str, str]], what: str) -> CheckResult:
    statuses = [s for s, _ in parts]
    status = next((s for s in ("fail", "insufficient") if s in statuses), "pass")
    text = "; ".join(e for _, e in parts)
    head = {"pass": what, "fail": f"NOT {what}", "insufficient": f"cannot judge: {what}?"}
    return _out(name, ctx, status, f"{head[status]}: {text}", cases=len(parts))


def dist_normalisation(make: Make, ctx: CheckContext) -> CheckResult:
    """∫p = 1 at every context.

    Dimension 1–2: composite trapezoid rule on a grid (4097 nodes; 129×129, refined to 257²
    and 513² with half the nodes at the samples' quantiles while the error estimate exceeds
    0.02) over the box of 4000 samples widened by half its range on each side. The box misses
    a mass q ≤ ln(1/δ)/m (m = 4000 draws all inside, δ = DELTA/(2·contexts)); the quadrature
    error is estimated by the nested coarser rules, e = max(|Z_h − Z_2h|, |Z_2h − Z_4h|) (≥ 3×
    the Richardson estimate of an O(h²) rule; two differences, as one may vanish by chance),
    the rounding of p by :func:`_rounding`. Pass when 1 − q − e − r ≤ Z ≤ 1 + e + r;
    ``insufficient`` when e > 0.02.

    Dimension > 2: importance sampling, Ẑ = mean of p/q over 20000 draws from a
    :class:`~invlin.validate.distribution.statistics.Proposal` fitted to 4000 samples (½
    Student-t(5) with covariance 1.5²Σ, ½ Gaussian kernels on 500 samples). Ẑ is unbiased for
    any q, so wrong samples cost precision, not correctness. Fail when |Ẑ − 1| > z·SE + r with
    z = Φ⁻¹(1 − δ/2) (5.0 for δ = 5·10⁻⁷): the false-alarm probability is δ under the normal
    approximation of a mean of 20000 weights, which needs finite-variance weights (the t part
    has heavier tails than a flow with Gaussian-like tails); ``insufficient`` when the effective
    sample size is below 1000 or z·SE > 0.25 (only errors beyond a quarter could be seen).
    """
    name = "dist_normalisation"
    adapter = _fresh(make, ctx)
    depth = _depth(adapter)

    def body() -> CheckResult:
        contexts = _contexts(adapter, ctx)
        delta = DELTA / (2 * len(contexts))
        parts = []
        for k, c in enumerate(contexts):
            xs = _samples(adapter, _BOX_COUNT, c, ctx.seed + k)
            if adapter.event_size <= 2:
                parts.append(_quadrature(adapter, c, xs, ctx, depth, delta))
            else:
                parts.append(_is_normalisation(adapter, c, xs, ctx, depth, delta, ctx.seed + k))
        return _combine(name, ctx, parts, "normalised")

    return _guarded(name, ctx, body)


# -- 3. samples against the density --------------------------------------------------------
def _directions(n: int, seed: int) -> np.ndarray:
    """(K, n) unit rows: the axis in dimension 1, else K random directions."""
    if n == 1:
        return np.ones((1, 1))
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((_PROJECTIONS, n))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _projected_cdf(adapter, c, xs, w, ctx) -> tuple[np.ndarray, float]:
    """F_w at the sorted projections of ``xs`` from the density by quadrature (n ≤ 2): the
    marginal g(s) = ∫ p(s w + r w⊥) dr on a rotated grid, F = ∫^s g / ∫ g; and the error
    estimate max(|F_h − F_2h|, |F_2h − F_4h|) at the samples (integration, interpolation).
    The grid is refined while that estimate exceeds :data:`_CDF_REFINE`."""
    basis = np.array([w]) if w.shape[0] == 1 else np.array([w, [-w[1], w[0]]])
    proj = np.sort(xs @ w)
    for level, counts in enumerate(_CDF_NODES[w.shape[0]]):
        axes, p, _ = _grid_density(adapter, c, xs, basis, counts, ctx, level > 0)
        cdfs = []
        for stride in (1, 2, 4):
            sub = p[tuple(slice(None, None, stride) for _ in axes)]
            g = sub @ trapezoid_weights(axes[1][::stride]) if len(axes) == 2 else sub
            s = axes[0][::stride]
            cum = cumulative(s, g)
            total = cum[-1] if cum[-1] > 0 else 1.0
            cdfs.append(np.interp(proj, s, cum / total))
        err = float(max(np.max(np.abs(cdfs[0] - cdfs[1])), np.max(np.abs(cdfs[1] - cdfs[2]))))
        if err <= _CDF_REFINE:
            break
    return cdfs[0], err


def _weighted_cdf(iw: Weighted, w: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """F_w at ``proj`` (sorted) from self-normalised importance weights."""
    s = iw.points @ w
    order = np.argsort(s)
    cum = np.cumsum(iw.weights[order])
    cum = cum / cum[-1]
    idx = np.searchsorted(s[order], proj, side="right")
    return np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)


def dist_samples(make: Make, ctx: CheckContext) -> CheckResult:
    """Samples follow the density: on K random unit directions w (K = 3; the axis in
    dimension 1) the empirical CDF of wᵀx over m = 20000 samples is compared with the CDF F_w
    the density implies, at every context.

    Sizing: by the DKWM inequality P(sup|F_m − F_w| > ε) ≤ 2 exp(−2 m ε²); with δ_k = 10⁻⁶ /
    (K · contexts) per comparison (Bonferroni), ε = √(ln(2/δ_k)/2m) ≈ 0.020 for K = 3, one
    context, so a correct flow fails less than once in 10⁶ runs.

    F_w in dimension 1–2 by quadrature of the density on a grid rotated to (w, w⊥) (257 × 97
    nodes; 4097 in dimension 1) over the samples' box ±50%, normalised by its own total (so
    an unnormalised density is left to dist_normalisation); allowance ε + e + q with e the
    estimate max(|F_h − F_2h|, |F_2h − F_4h|) at the samples and q the mass the box may miss
    (as in dist_normalisation). In dimension > 2 F_w is the self-normalised
    importance-weighted CDF of 20000 proposal draws (see dist_normalisation); its error is
    taken as that of an empirical CDF of the effective sample size m_eff (an approximation),
    so the allowance is ε(m, δ_k/2) + ε(m_eff, δ_k/2);
    ``insufficient`` when m_eff < 1000.
    """
    name = "dist_samples"
    adapter = _fresh(make, ctx)
    n = adapter.event_size

    def body() -> CheckResult:
        contexts = _contexts(adapter, ctx)
        dirs = _directions(n, ctx.seed)
        delta = DELTA / (len(dirs) * len(contexts))
        parts: list[tuple[str, str]] = []
        worst = 0.0
        for k, c in enumerate(contexts):
            xs = _samples(adapter, _SAMPLE_COUNT, c, ctx.seed + 100 + k)
            iw = None
            if n > 2:
                box_xs = _samples(adapter, _BOX_COUNT, c, ctx.seed + 200 + k)
                iw, _ = _importance(adapter, c, box_xs, ctx, 1, ctx.seed + k)
                if iw.effective < _MIN_EFFECTIVE:
                    parts.append(
                        (
                            "insufficient",
                            f"effective sample size {iw.effective:.0f} of the importance "
                            f"weights{_where(c)} is below {_MIN_EFFECTIVE}",
                        )
                    )
                    continue
            for w in dirs:
                proj = np.sort(xs @ w)
                if iw is None:
                    cdf, err = _projected_cdf(adapter, c, xs, w, ctx)
                    allow = (
                        dkwm_epsilon(_SAMPLE_COUNT, delta)
                        + err
                        + truncation_bound(_SAMPLE_COUNT, delta)
                    )
                    how = f"quadrature error estimate {err:.2g}"
                else:
                    cdf = _weighted_cdf(iw, w, proj)
                    allow = dkwm_epsilon(_SAMPLE_COUNT, delta / 2) + dkwm_epsilon(
                        iw.effective, delta / 2
                    )
                    how = f"importance weights, effective size {iw.effective:.0f}"
                dist = ecdf_distance(proj, cdf)
                status = "pass" if dist <= allow else "fail"
                worst = max(worst, dist / allow)
                dir_text = ", ".join(f"{v:.3f}" for v in w)
                parts.append(
                    (
                        status,
                        f"sup|F_m − F| = {dist:.4f} (allowed {allow:.4f}; {how}) on "
                        f"w = [{dir_text}]{_where(c)}",
                    )
                )
        res = _combine(name, ctx, parts, f"{_SAMPLE_COUNT} samples follow the density")
        res.ratio = worst if parts else None
        res.allowed = 1.0 if parts else None
        return res

    return _guarded(name, ctx, body)


#: The distribution checks by stable name, in table order.
DIST_CHECKS: dict[str, Callable[[Make, CheckContext], CheckResult]] = {
    "dist_consistency": dist_consistency,
    "dist_normalisation": dist_normalisation,
    "dist_samples": dist_samples,
}


def applicable(names: Sequence[str], *, flow: bool) -> list[str]:
    """The checks of the selection ``names`` that run. A flow gets the distribution checks
    named there, or every one of :data:`DIST_CHECKS` when none is named (the layer checks of
    the selection go to its inner transforms); a layer gets the selection as it is (a
    distribution check named for a layer skips, saying why)."""
    if not flow:
        return list(names)
    named = [c for c in names if c in DIST_CHECKS]
    return named or list(DIST_CHECKS)
