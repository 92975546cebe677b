"""Hard test cases built by construction: conditioned matrices, LU factors, rank-one paths.

Every builder takes a NumPy ``Generator`` and explicit structural parameters and returns a frozen
case whose ``repr`` is Python source that rebuilds it exactly (float reprs round-trip), so a
failing example printed by Hypothesis can be pasted into a script. The Hypothesis strategies in
:mod:`invlin.testing.strategies` only draw the parameters; the structure is built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from invlin._dtypes import dtype_name
from invlin._validation import positive_int

__all__ = [
    "KAPPA_LIMIT",
    "LUCase",
    "MatrixCase",
    "PathCase",
    "array_literal",
    "conditioned_matrix",
    "crossing_path",
    "lu_factors",
    "orthogonal",
    "permutation_like",
    "rank_one_path",
    "update_vectors",
]

#: Largest condition number a generated matrix may have in each dtype (κ·ε stays ≤ ~1e-4..6e-3).
KAPPA_LIMIT: dict[str, float] = {"float64": 1e12, "float32": 1e5}


def array_literal(a: np.ndarray) -> str:
    """``a`` as Python source (``np.array([...])``, shortest round-tripping digits) for a
    reproduction snippet."""
    arr = np.asarray(a, dtype=np.float64)
    with np.printoptions(threshold=arr.size + 1, floatmode="unique", linewidth=100):
        return "np.array(" + np.array2string(arr, separator=", ") + ")"


def _check_dtype(dtype: Any) -> str:
    name = dtype_name(dtype)
    if name not in KAPPA_LIMIT:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def _check_n(n: Any) -> int:
    return positive_int(n, "n")


@dataclass(frozen=True, repr=False, eq=False)
class MatrixCase:
    """An (n, n) matrix ``a`` (held in ``dtype``) built with a prescribed structure.

    ``kappa``: the 2-norm condition number it was built with (of the float64 construction; the
    rounding to ``dtype`` moves it by a relative κ·ε at most). ``sign``: sign of det. ``kind``:
    ``"conditioned"``, ``"permutation"`` or ``"nearly_singular"``.
    """

    a: np.ndarray
    dtype: str
    kappa: float
    sign: int
    kind: str

    @property
    def n(self) -> int:
        """The dimension n."""
        return int(self.a.shape[0])

    def __repr__(self) -> str:
        return (
            f"MatrixCase(a=np.{self.dtype}({array_literal(self.a)}), dtype={self.dtype!r}, "
            f"kappa={self.kappa!r}, sign={self.sign}, kind={self.kind!r})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class PathCase:
    """A starting matrix ``a0`` and rank-one updates ``us[k]``, ``vs[k]`` (all in ``dtype``).

    ``cs[k]`` is the factor c = 1 + vₖᵀAₖ⁻¹uₖ the k-th update was built to have (exact
    arithmetic; rounding u, v to ``dtype`` moves it by about κ(Aₖ)·ε·|c − 1|). ``kind`` names the
    regime (``"benign"``, ``"near_guard"``, ``"sign_flip"``, ``"crossing"``, ``"bounce"``);
    ``gap`` is the closest approach to the singular set of a crossing/bounce (the relative
    distance |1 − t| along the line, so κ there is about κ(start)/gap), else None. ``leave`` is
    the index of the first update after which the path has left the ill-conditioned region
    (``k`` when it never enters one).
    """

    a0: np.ndarray
    us: np.ndarray
    vs: np.ndarray
    cs: np.ndarray
    dtype: str
    kind: str
    gap: float | None = None
    leave: int = field(default=-1)

    @property
    def n(self) -> int:
        """The dimension n."""
        return int(self.a0.shape[0])

    @property
    def k(self) -> int:
        """The number of updates."""
        return int(self.us.shape[0])

    def updates(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The updates as a list of ``(u, v)`` pairs of shape ``(n,)``."""
        return list(zip(self.us, self.vs, strict=True))

    def __repr__(self) -> str:
        dt = self.dtype
        return (
            f"PathCase(a0=np.{dt}({array_literal(self.a0)}), us=np.{dt}({array_literal(self.us)}), "
            f"vs=np.{dt}({array_literal(self.vs)}), cs={array_literal(self.cs)}, dtype={dt!r}, "
            f"kind={self.kind!r}, gap={self.gap!r}, leave={self.leave})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class LUCase:
    """Factors of an LU layer: unit lower ``lower``, upper ``upper`` and ``bias`` (float64).

    ``diag`` is diag(U) as drawn (both signs; entries may be tiny, subnormal or exactly zero).
    """

    lower: np.ndarray
    upper: np.ndarray
    bias: np.ndarray

    @property
    def n(self) -> int:
        """The dimension n."""
        return int(self.lower.shape[0])

    @property
    def diag(self) -> np.ndarray:
        """diag(U), shape (n,)."""
        return np.diagonal(self.upper).copy()

    def __repr__(self) -> str:
        return (
            f"LUCase(lower={array_literal(self.lower)}, upper={array_literal(self.upper)}, "
            f"bias={array_literal(self.bias)})"
        )


# -- matrices ------------------------------------------------------------------------------------
def orthogonal(n: int, rng: np.random.Generator, det: int = 1) -> np.ndarray:
    """A Haar-random orthogonal (n, n) float64 matrix with determinant ``det`` (±1)."""
    n = _check_n(n)
    if det not in (1, -1):
        raise ValueError(f"det must be 1 or -1, got {det!r}")
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diagonal(r))
    if np.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


def _spectrum(n: int, kappa: float, shape: str) -> np.ndarray:
    if n == 1:
        return np.ones(1)
    if shape == "geometric":
        return kappa ** (-np.arange(n) / (n - 1))
    if shape == "one_small":
        s = np.ones(n)
        s[-1] = 1.0 / kappa
        return s
    if shape == "one_large":
        s = np.full(n, 1.0 / kappa)
        s[0] = 1.0
        return s
    raise ValueError(f"shape must be 'geometric', 'one_small' or 'one_large', got {shape!r}")


def conditioned_matrix(
    n: int,
    kappa: float,
    sign: int,
    rng: np.random.Generator,
    *,
    dtype: Any = "float64",
    shape: str = "geometric",
    scale: float = 1.0,
    kind: str = "conditioned",
) -> MatrixCase:
    """Q₁·diag(s)·Q₂ᵀ with singular values ``scale``·s, s from 1 down to 1/``kappa``.

    ``shape``: ``"geometric"`` (log-spaced), ``"one_small"`` (one tiny singular value: nearly
    singular in one direction) or ``"one_large"``. det has sign ``sign``: Q₁, Q₂ are Haar
    orthogonal with det +1 and one singular value carries the sign. n = 1 gives κ = 1.
    """
    n, dt = _check_n(n), _check_dtype(dtype)
    if not (1.0 <= kappa <= KAPPA_LIMIT[dt]):
        raise ValueError(f"kappa must lie in [1, {KAPPA_LIMIT[dt]:g}] for {dt}, got {kappa!r}")
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    kappa = 1.0 if n == 1 else float(kappa)
    s = scale * _spectrum(n, kappa, shape)
    d = s.copy()
    d[int(rng.integers(n))] *= sign
    a = (orthogonal(n, rng) * d) @ orthogonal(n, rng).T
    return MatrixCase(a.astype(dt), dt, kappa, sign, kind)


def permutation_like(
    n: int, rng: np.random.Generator, *, dtype: Any = "float64", max_exponent: int = 0
) -> MatrixCase:
    """D·P: a random permutation P scaled by signs and powers of two 2^e, |e| ≤ ``max_exponent``.

    Entries are exact in every dtype; κ₂ = 2^(max e − min e) and the sign is
    sign(P)·Π sign(dᵢ), both known exactly.
    """
    n, dt = _check_n(n), _check_dtype(dtype)
    perm = rng.permutation(n)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n)
    exps = rng.integers(-max_exponent, max_exponent + 1, size=n) if max_exponent else np.zeros(n)
    d = signs * np.exp2(exps)
    a = np.zeros((n, n))
    a[np.arange(n), perm] = d
    # sign of a permutation: (−1)^(n − number of cycles)
    seen, cycles = np.zeros(n, dtype=bool), 0
    for i in range(n):
        if not seen[i]:
            cycles += 1
            j = i
            while not seen[j]:
                seen[j] = True
                j = int(perm[j])
    sign = (-1) ** (n - cycles) * int(np.prod(signs))
    kappa = float(np.exp2(exps.max() - exps.min()))
    return MatrixCase(a.astype(dt), dt, kappa, int(sign), "permutation")


# -- LU factors ----------------------------------------------------------------------------------
def lu_factors(
    diag: Any, rng: np.random.Generator, *, offdiag: float = 0.3, bias: float = 0.5
) -> LUCase:
    """Unit lower L and upper U with diagonal ``diag`` (shape (n,), any signs, zeros allowed).

    Off-diagonal entries are N(0, (``offdiag``/√n)²); the bias is N(0, ``bias``²). All float64.
    """
    d = np.asarray(diag, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"diag must be a finite non-empty vector, got shape {d.shape}")
    n = d.size
    sd = offdiag / math.sqrt(n)
    lower = np.tril(sd * rng.standard_normal((n, n)), -1) + np.eye(n)
    upper = np.triu(sd * rng.standard_normal((n, n)), 1) + np.diag(d)
    return LUCase(lower, upper, bias * rng.standard_normal(n))


# -- rank-one updates ----------------------------------------------------------------------------
def update_vectors(
    a: np.ndarray, c: float, rng: np.random.Generator, *, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """u, v (float64, shape (n,)) with 1 + vᵀA⁻¹u = ``c`` in exact arithmetic (no inverse used).

    u = A w with w = (c − 1)(v̂ + s q̂), v̂ ⊥ q̂ unit vectors and s = ``spread``: vᵀw = c − 1,
    ‖v‖ = 1 and ‖w‖ = |c − 1|·√(1 + s²), so s bounds how far A + u vᵀ is from a scaling along
    one direction (κ of I + w vᵀ is about (1 + s²)/|c| for small c).
    """
    n = a.shape[0]
    v = rng.standard_normal(n)
    v /= np.linalg.norm(v)
    if n == 1:
        w = np.array([(c - 1.0) / v[0]])
    else:
        q = rng.standard_normal(n)
        q -= (q @ v) * v
        q /= np.linalg.norm(q)
        w = (c - 1.0) * (v + spread * q)
    return a @ w, v


def _finish(a0, us, vs, cs, dt, kind, gap=None, leave=None) -> PathCase:
    us = np.asarray(us, dtype=np.float64).reshape(-1, a0.shape[0]).astype(dt)
    vs = np.asarray(vs, dtype=np.float64).reshape(-1, a0.shape[0]).astype(dt)
    cs = np.asarray(cs, dtype=np.float64).reshape(-1)
    return PathCase(
        a0.astype(dt), us, vs, cs, dt, kind, gap, int(us.shape[0] if leave is None else leave)
    )


def rank_one_path(
    a0: np.ndarray,
    cs: Any,
    rng: np.random.Generator,
    *,
    dtype: Any = "float64",
    spread: float = 1.0,
    kind: str = "benign",
    kappa_limit: float | None = None,
    logdet_limit: float = 30.0,
) -> PathCase:
    """Updates u_k, v_k of ``a0`` whose factors c_k are the given ``cs`` (see update_vectors).

    Each u_k is built from the running matrix A_k = a0 + Σ_{j<k} u_j v_jᵀ (accumulated in
    float64 from the vectors as rounded to ``dtype``), so c_k is met up to κ(A_k)·ε·|c_k − 1|.
    The path stays inside the family: a factor c that would take κ₂ above ``kappa_limit``
    (default :data:`KAPPA_LIMIT` of the dtype) or |log|det|| above ``logdet_limit`` (relative
    to a0) is replaced by sign(c)/|c|, which moves det the other way; the factors used are in
    the returned ``cs``.
    """
    dt = _check_dtype(dtype)
    limit = KAPPA_LIMIT[dt] if kappa_limit is None else float(kappa_limit)
    a = np.asarray(a0, dtype=dt).astype(np.float64)
    us, vs, used = [], [], []
    logdet = 0.0
    for c in np.asarray(cs, dtype=np.float64).reshape(-1):
        c = float(c)
        if not (c != 0 and math.isfinite(c)):
            raise ValueError(f"cs must be finite and nonzero, got {c!r}")
        for attempt in (c, math.copysign(1.0 / abs(c), c)):
            u, v = update_vectors(a, attempt, rng, spread=spread)
            u, v = u.astype(dt).astype(np.float64), v.astype(dt).astype(np.float64)
            new = a + np.outer(u, v)
            ok = abs(logdet + math.log(abs(attempt))) <= logdet_limit
            if ok and np.linalg.cond(new) <= limit:
                break
        else:  # neither direction fits: a benign step (c = 2 or 1/2 towards log|det| = 0)
            attempt = 0.5 if logdet > 0 else 2.0
            u, v = update_vectors(a, attempt, rng, spread=0.0)
            u, v = u.astype(dt).astype(np.float64), v.astype(dt).astype(np.float64)
            new = a + np.outer(u, v)
        a = new
        logdet += math.log(abs(attempt))
        us.append(u)
        vs.append(v)
        used.append(attempt)
    return _finish(np.asarray(a0, dtype=dt), us, vs, used, dt, kind)


def crossing_path(
    a0: np.ndarray,
    rng: np.random.Generator,
    *,
    gap: float,
    ratio: float = 0.1,
    after: float | None = None,
    end: float = 1.0,
    cross: bool = True,
    dtype: Any = "float64",
    spread: float = 0.5,
) -> PathCase:
    """Walk along A(t) = a0 + t·u vᵀ with det A(t) = (1 − t)·det a0 towards the singular set.

    The distance g = 1 − t shrinks by ``ratio`` per update (c = ratio) from 1 down to ``gap``,
    then jumps to −``after`` (default ``gap``; c = −after/gap < 0 when ``cross``) or to
    +``after`` (a bounce, c > 0), and grows by 1/``ratio`` per update until |g| reaches ``end``
    (c = 1/ratio). With s = ``spread`` and n ≥ 2, κ₂(A(t)) lies between 1/(κ₂(a0)·|g|) and
    κ₂(a0)·(1 + |t|·√(1 + s²))²/|g|, so the path comes within about min(gap, after) of the
    singular set (recorded as the case's ``gap``). ``leave`` counts the updates after which
    |g| ≥ ``end``·ratio again (κ back within a factor of about 1/ratio of the end).
    """
    dt = _check_dtype(dtype)
    if not (0.0 < gap < 1.0 and 0.0 < ratio < 1.0 and end > 0):
        raise ValueError(f"need 0 < gap < 1, 0 < ratio < 1, end > 0; got {gap}, {ratio}, {end}")
    after = gap if after is None else float(after)
    if not after > 0:
        raise ValueError(f"after must be positive, got {after!r}")
    a = np.asarray(a0, dtype=dt).astype(np.float64)
    u, v = update_vectors(a, 0.0, rng, spread=spread)  # vᵀa0⁻¹u = −1
    gs = [1.0]
    while gs[-1] * ratio > gap:
        gs.append(gs[-1] * ratio)
    gs.append(gap)
    gs.append(-after if cross else after)
    while abs(gs[-1]) < end:
        gs.append(min(abs(gs[-1]) / ratio, end) * np.sign(gs[-1]))
    gs_arr = np.asarray(gs)
    steps = gs_arr[:-1] - gs_arr[1:]  # Δt = g_k − g_{k+1}
    cs = gs_arr[1:] / gs_arr[:-1]
    us = [(dtau * u).astype(dt) for dtau in steps]
    vs = [v.astype(dt)] * len(us)
    closest = int(np.argmin(np.abs(gs_arr[1:])))  # update that lands closest to det = 0
    leave = next(i + 1 for i in range(closest, len(cs)) if abs(gs_arr[i + 1]) >= end * ratio)
    return _finish(
        np.asarray(a0, dtype=dt),
        us,
        vs,
        cs,
        dt,
        "crossing" if cross else "bounce",
        float(min(gap, after)),
        leave,
    )
