"""Hypothesis strategies for invlin: conditioned matrices, LU factors and rank-one update paths.

The strategies draw *structural* parameters (dimension, dtype, log κ, determinant sign, the
factors c = 1 + vᵀA⁻¹u of each update, how close a path comes to the singular set, a seed for
the random orthogonal factors) and build the case with :mod:`invlin.testing.cases`; nothing is
filtered with ``assume``. Shrinking therefore moves towards small n, small κ, short paths and
seed 0. Sizes come from the active settings profile (:mod:`invlin.testing.profiles`).

Every strategy accepts fixed values or strategies for ``n`` and ``dtype``. Every returned case
has a reproducible ``repr`` (exact float literals): :func:`invlin.testing.reproduce.reproducible`
puts it into the failure message as a script that rebuilds the case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from invlin._validation import positive_int
from invlin.reference.rank_one import Guard
from invlin.testing import cases
from invlin.testing.cases import KAPPA_LIMIT, LUCase, MatrixCase, PathCase
from invlin.testing.profiles import max_dimension, max_updates

__all__ = [
    "FACTOR_KINDS",
    "GUARD_LOG_C",
    "LARGE_INPUT",
    "PATH_KINDS",
    "WIDE_MIXES",
    "WIDE_REGIMES",
    "WIDE_ROWS",
    "batch_shapes",
    "conditioned_matrices",
    "crossing_paths",
    "dimensions",
    "dtypes",
    "edge_inputs",
    "factor_sequences",
    "huge_input",
    "layer_inputs",
    "lu_factors",
    "lu_nets",
    "matrices",
    "nearly_singular_matrices",
    "permutation_matrices",
    "seeds",
    "update_paths",
    "wide_batch",
    "wide_inputs",
]

#: log|c| threshold of the default guard (:class:`invlin.reference.Guard`): |c| ≤ e⁻⁶ is refused.
GUARD_LOG_C: float = float(Guard().min_log_abs_c)  # type: ignore[arg-type]

#: Ranges of log|c| and whether negative c (a determinant sign flip) is drawn, per regime.
FACTOR_KINDS: dict[str, tuple[float, float, bool]] = {
    "benign": (-0.7, 0.7, False),
    "sign_flip": (-1.6, 1.6, True),
    "near_guard": (GUARD_LOG_C - 0.5, GUARD_LOG_C + 0.5, True),
    "mixed": (GUARD_LOG_C - 0.5, 1.6, True),
}
#: Path regimes :func:`update_paths` draws from.
PATH_KINDS: tuple[str, ...] = (*FACTOR_KINDS, "crossing", "bounce")


def _pick(draw: Any, value: Any, default: SearchStrategy) -> Any:
    if isinstance(value, SearchStrategy):
        return draw(value)
    return draw(default) if value is None else value


def seeds() -> SearchStrategy[int]:
    """Seeds of the random orthogonal factors and directions (shrink towards 0)."""
    return st.integers(0, 2**32 - 1)


def dtypes() -> SearchStrategy[str]:
    """``"float64"`` or ``"float32"``."""
    return st.sampled_from(("float64", "float32"))


@st.composite
def dimensions(draw: Any, min_n: int = 1, max_n: int | None = None) -> int:
    """n in [``min_n``, ``max_n``]; ``max_n`` defaults to the profile's (or ``$INVLIN_MAX_N``)."""
    hi = max_dimension() if max_n is None else max_n
    return draw(st.integers(min_n, max(min_n, hi)))


def _log_kappa_limit(dt: str) -> float:
    return math.log10(KAPPA_LIMIT[dt])


@st.composite
def conditioned_matrices(
    draw: Any,
    n: Any = None,
    dtype: Any = None,
    *,
    min_log_kappa: float = 0.0,
    max_log_kappa: float | None = None,
    sign: int | None = None,
    shape: str | None = None,
) -> MatrixCase:
    """Q₁·diag(s)·Q₂ᵀ with a prescribed κ₂ = 10^x, x in [``min_log_kappa``, ``max_log_kappa``]
    (default: up to 1e12 in float64, 1e5 in float32), a prescribed det sign and a spectrum shape
    (log-spaced, one small or one large singular value); scaled by 2^e, |e| ≤ 4."""
    dt = _pick(draw, dtype, dtypes())
    size = _pick(draw, n, dimensions())
    hi = _log_kappa_limit(dt) if max_log_kappa is None else min(max_log_kappa, _log_kappa_limit(dt))
    lk = draw(st.floats(min(min_log_kappa, hi), hi))
    sg = draw(st.sampled_from((1, -1))) if sign is None else sign
    sh = shape or draw(st.sampled_from(("geometric", "one_small", "one_large")))
    scale = 2.0 ** draw(st.integers(-4, 4))
    rng = np.random.default_rng(draw(seeds()))
    return cases.conditioned_matrix(size, 10.0**lk, sg, rng, dtype=dt, shape=sh, scale=scale)


@st.composite
def permutation_matrices(draw: Any, n: Any = None, dtype: Any = None) -> MatrixCase:
    """Signed permutations scaled by powers of two 2^e, |e| ≤ 8 (exact; κ and sign known)."""
    dt = _pick(draw, dtype, dtypes())
    size = _pick(draw, n, dimensions())
    rng = np.random.default_rng(draw(seeds()))
    return cases.permutation_like(size, rng, dtype=dt, max_exponent=draw(st.integers(0, 8)))


@st.composite
def nearly_singular_matrices(draw: Any, n: Any = None, dtype: Any = None) -> MatrixCase:
    """One singular value 10⁻³..1 times the dtype's κ limit below the others (n ≥ 2 when the
    size limit allows; κ₂ in [limit/1000, limit])."""
    dt = _pick(draw, dtype, dtypes())
    size = _pick(draw, n, dimensions(min_n=min(2, max_dimension())))
    hi = _log_kappa_limit(dt)
    case = draw(
        conditioned_matrices(size, dt, min_log_kappa=hi - 3, max_log_kappa=hi, shape="one_small")
    )
    return MatrixCase(case.a, case.dtype, case.kappa, case.sign, "nearly_singular")


def matrices(n: Any = None, dtype: Any = None) -> SearchStrategy[MatrixCase]:
    """Any of :func:`conditioned_matrices`, :func:`permutation_matrices`,
    :func:`nearly_singular_matrices`."""
    return st.one_of(
        conditioned_matrices(n, dtype),
        permutation_matrices(n, dtype),
        nearly_singular_matrices(n, dtype),
    )


@st.composite
def lu_factors(
    draw: Any,
    n: Any = None,
    *,
    min_log_diag: float = -2.0,
    max_log_diag: float = 1.0,
    tiny: int = 0,
    tiny_log_range: tuple[float, float] = (-330.0, -3.0),
    zero: bool = False,
) -> LUCase:
    """L (unit lower) and U (upper) with diag(U) of both signs and magnitudes 10^x, x in
    [``min_log_diag``, ``max_log_diag``]; up to ``tiny`` entries of diag(U) replaced by ±10^x
    with x in ``tiny_log_range`` (default down to float64 subnormals and below, i.e. exact 0;
    weighted towards 10⁻³²⁴..10⁻³⁰⁵ and 10⁻⁴⁶..10⁻³⁷, where 1/u_ii overflows float64 or float32),
    and, when ``zero``, one entry set to exactly 0. Off-diagonal scale 0..1/√n·0.5."""
    size = _pick(draw, n, dimensions())
    mags = draw(st.lists(st.floats(min_log_diag, max_log_diag), min_size=size, max_size=size))
    signs = draw(st.lists(st.sampled_from((1.0, -1.0)), min_size=size, max_size=size))
    diag = np.array(signs) * 10.0 ** np.array(mags)
    lo, hi = tiny_log_range
    # Extra weight where 1/|u_ii| approaches the overflow threshold of float64 (10^308) and of
    # float32 (10^38): that is where a triangular solve turns into inf and then inf − inf.
    bands = [st.floats(lo, hi)] + [
        st.floats(max(lo, a), min(hi, b))
        for a, b in ((-324.0, -305.0), (-46.0, -37.0))
        if max(lo, a) < min(hi, b)
    ]
    for _ in range(draw(st.integers(0, min(tiny, size)))):
        i = draw(st.integers(0, size - 1))
        diag[i] = draw(st.sampled_from((1.0, -1.0))) * 10.0 ** draw(st.one_of(bands))
    if zero:
        diag[draw(st.integers(0, size - 1))] = 0.0
    rng = np.random.default_rng(draw(seeds()))
    return cases.lu_factors(diag, rng, offdiag=draw(st.floats(0.0, 0.5)))


@st.composite
def lu_nets(draw: Any, n: Any = None, *, max_blocks: int = 3, **diag: Any) -> list[LUCase]:
    """1..``max_blocks`` LU factor sets of one size n for an LU-Net (keywords as
    :func:`lu_factors`)."""
    size = _pick(draw, n, dimensions())
    return draw(st.lists(lu_factors(size, **diag), min_size=1, max_size=max_blocks))


@st.composite
def factor_sequences(draw: Any, kind: str, max_size: int | None = None) -> list[float]:
    """1..``max_size`` (default: the profile's path length) factors c of one regime of
    :data:`FACTOR_KINDS`; ``sign_flip`` sequences contain at least one negative c."""
    if kind not in FACTOR_KINDS:
        raise ValueError(f"kind must be one of {sorted(FACTOR_KINDS)}, got {kind!r}")
    lo, hi, negative = FACTOR_KINDS[kind]
    size = max_updates() if max_size is None else max_size
    logs = draw(st.lists(st.floats(lo, hi), min_size=1, max_size=size))
    if negative:
        flips = draw(st.lists(st.booleans(), min_size=len(logs), max_size=len(logs)))
        if kind == "sign_flip" and not any(flips):
            flips[0] = True
    else:
        flips = [False] * len(logs)
    return [(-1.0 if f else 1.0) * math.exp(x) for f, x in zip(flips, logs, strict=True)]


@st.composite
def crossing_paths(
    draw: Any,
    n: Any = None,
    dtype: Any = None,
    *,
    cross: bool | None = None,
    max_size: int | None = None,
) -> PathCase:
    """Paths along a line A(t) = A₀ + t·u vᵀ that approach det = 0, cross it (c < 0) or bounce
    off it, and move away again (see :func:`invlin.testing.cases.crossing_path`).

    The start has κ₂ ≤ 10^((log₁₀ limit − 2)/2); the closest approach ``gap`` is drawn so that
    κ stays below the dtype's limit (≤ 1e12 / 1e5); the crossing factor −e^{±y}, y ≤ 6.5,
    reaches the guard threshold |c| = e⁻⁶ from both sides. The number of updates stays within
    ``max_size`` (default: the profile's path length, at least 8).
    """
    dt = _pick(draw, dtype, dtypes())
    size = _pick(draw, n, dimensions())
    limit = max(8, max_updates() if max_size is None else max_size)
    lk_hi = (_log_kappa_limit(dt) - 2) / 2
    start = draw(conditioned_matrices(size, dt, max_log_kappa=lk_hi))
    spread = draw(st.floats(0.0, 1.0))
    y = draw(st.floats(0.0, 6.5))
    descending = draw(st.booleans())  # c = −e^{−y} (towards the guard) or −e^{+y}
    # κ along the line ≤ κ(a0)·(1 + 3·√(1+s²))²/|g| ≤ limit  ⇒  g ≥ 30·κ(a0)/limit (|t| ≤ 3).
    log_gap_lo = math.log10(30.0 * start.kappa * (1 + spread**2) / KAPPA_LIMIT[dt])
    # Approach and departure take about 2·log(1/gap)/log(1/ratio) updates; ratio ≥ 10^-2.5.
    log_gap_lo = max(log_gap_lo, -2.5 * (limit - 4) / 2, -12.0)
    log_gap = draw(st.floats(min(log_gap_lo, -1.0), -1.0))
    log_ratio_hi = max(0.3, 2.0 * -log_gap / (limit - 4))
    log_ratio = draw(st.floats(min(log_ratio_hi, 2.5), 2.5))
    closest = 10.0**log_gap
    far = closest * math.exp(y)
    before, after = (far, closest) if descending else (closest, far)
    if before >= 1.0:
        before, after = closest, far
    crossing = draw(st.booleans()) if cross is None else cross
    rng = np.random.default_rng(draw(seeds()))
    return cases.crossing_path(
        start.a,
        rng,
        gap=before,
        after=after,
        ratio=10.0**-log_ratio,
        end=draw(st.sampled_from((1.0, 2.0))),
        cross=crossing,
        dtype=dt,
        spread=spread,
    )


@st.composite
def update_paths(
    draw: Any,
    kind: Any = None,
    n: Any = None,
    dtype: Any = None,
    *,
    kinds: tuple[str, ...] = PATH_KINDS,
    matrix: SearchStrategy[MatrixCase] | None = None,
) -> PathCase:
    """A starting matrix and a sequence of rank-one updates of one regime.

    ``kind`` (default: drawn from ``kinds``) is a key of :data:`FACTOR_KINDS` — factors c drawn
    in that regime, directions random with spread s ∈ [0, 2], the path kept inside the dtype's κ
    limit — or ``"crossing"``/``"bounce"`` (:func:`crossing_paths`). ``matrix`` (default
    :func:`matrices`) draws the start of the factor regimes.
    """
    k = _pick(draw, kind, st.sampled_from(kinds))
    if k not in PATH_KINDS:
        raise ValueError(f"kind must be one of {PATH_KINDS}, got {k!r}")
    if matrix is not None:
        start = draw(matrix)
        dt, size = start.dtype, start.n
    else:
        dt = _pick(draw, dtype, dtypes())
        size = _pick(draw, n, dimensions())
    if k in ("crossing", "bounce"):
        return draw(crossing_paths(size, dt, cross=(k == "crossing")))
    if matrix is None:
        start = draw(matrices(size, dt))
    cs = draw(factor_sequences(k))
    spread = draw(st.floats(0.0, 2.0))
    rng = np.random.default_rng(draw(seeds()))
    return cases.rank_one_path(start.a, cs, rng, dtype=dt, spread=spread, kind=k)


# -- inputs of a layer (the validator's searches) --------------------------------------------------
_MANTISSA: dict[str, int] = {"float64": 52, "float32": 23}


def _input_dtype(dtype: Any) -> str:
    name = cases._check_dtype(dtype)
    return name


def _open_interval(domain: Any) -> tuple[float, float]:
    if domain is None:
        return -math.inf, math.inf
    lo, hi = (float(domain[0]), float(domain[1]))
    if not lo < hi:
        raise ValueError(f"domain must be an interval (lo, hi) with lo < hi, got {domain!r}")
    return lo, hi


@st.composite
def batch_shapes(
    draw: Any, min_dims: int = 1, max_dims: int = 3, max_side: int = 4
) -> tuple[int, ...]:
    """Batch shapes of ``min_dims``..``max_dims`` dimensions, sides 1..``max_side`` (shrink to
    ``(1,)*min_dims``)."""
    if not 0 <= min_dims <= max_dims or max_side < 1:
        raise ValueError(
            f"need 0 <= min_dims <= max_dims and max_side >= 1, got "
            f"{min_dims}, {max_dims}, {max_side}"
        )
    k = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.lists(st.integers(1, max_side), min_size=k, max_size=k)))


@st.composite
def layer_inputs(
    draw: Any,
    features: int,
    *,
    dtype: Any = "float64",
    batch: tuple[int, ...] | None = None,
    max_batch: int = 8,
    bound: float = 8.0,
    domain: Any = None,
    min_abs: float = 2.0**-8,
) -> np.ndarray:
    """Inputs x of shape ``(*batch, features)`` (default batch ``(b,)``, b in 1..``max_batch``):
    a float64 array whose entries are exact in ``dtype``.

    Without a ``domain``: entries 0 or ±[``min_abs``, ``bound``] — no tiny nonzero entries,
    whose products underflow into subnormals and lose relative accuracy in any layer. With a
    domain (lo, hi) (ends may be infinite): entries in the middle 7/8 of (lo, hi) ∩
    [−``bound``, ``bound``]; :func:`edge_inputs` draws the ends. Shrinks towards zeros and a
    batch of one.
    """
    dt = _input_dtype(dtype)
    features = positive_int(features, "features")
    if not 0 < min_abs < bound:
        raise ValueError(f"need 0 < min_abs < bound, got {min_abs!r}, {bound!r}")
    width = 32 if dt == "float32" else 64
    lo, hi = _open_interval(domain)
    if math.isinf(lo) and math.isinf(hi):
        mag = st.floats(min_abs, bound, width=width)
        entry = st.one_of(st.just(0.0), mag, mag.map(lambda v: -v))
    else:
        a, b = max(lo, -bound), min(hi, bound)
        if not a < b:
            raise ValueError(f"domain {domain!r} does not meet [-{bound}, {bound}]")
        margin = (b - a) / 16
        a, b = float(np.float32(a + margin)), float(np.float32(b - margin))
        entry = st.floats(min(a, b), max(a, b), width=width)
    row = st.lists(entry, min_size=features, max_size=features)
    if batch is None:  # a list of rows: Hypothesis shrinks it by deleting whole samples
        rows = draw(st.lists(row, min_size=1, max_size=max_batch))
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), features)
    shape = tuple(batch)
    rows = draw(st.lists(row, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.asarray(rows, dtype=np.float64).reshape(*shape, features)


def _near(end: float, toward: float, k: int, dt: str) -> float:
    """``end`` moved by max(|end|, 1)·2^-k towards ``toward``, rounded to ``dt``, strictly
    inside and not past the midpoint."""
    np_dt = np.dtype(dt).type
    step = max(abs(end), 1.0) * 2.0**-k
    mid = (end + toward) / 2 if math.isfinite(toward) else end + math.copysign(1.0, toward - end)
    value = end + math.copysign(min(step, abs(mid - end)), toward - end)
    out = np_dt(value)
    if out == np_dt(end) or (out - np_dt(end)) * (toward - end) < 0:
        out = np.nextafter(np_dt(end), np_dt(toward if math.isfinite(toward) else mid))
    return float(out)


@st.composite
def edge_inputs(
    draw: Any,
    features: int,
    *,
    dtype: Any = "float64",
    domain: Any = None,
    max_batch: int = 4,
    large: float = 1e4,
) -> np.ndarray:
    """Inputs of shape ``(b, features)`` near the ends of ``domain`` (lo, hi), exact in ``dtype``.

    Each entry is near a finite end (end ± max(|end|, 1)·2^-k, k = 1..mantissa bits, strictly
    inside), large (±[1, ``large``]) towards an infinite end, or the middle of the interval
    (0 for all of R). Shrinks towards the middle, k = 1 and magnitude 1.
    """
    dt = _input_dtype(dtype)
    lo, hi = _open_interval(domain)
    width = 32 if dt == "float32" else 64
    mid = (
        0.0
        if math.isinf(lo) and math.isinf(hi)
        else (
            (lo + hi) / 2
            if math.isfinite(lo) and math.isfinite(hi)
            else (lo + 1.0 if math.isfinite(lo) else hi - 1.0)
        )
    )
    fmid = float(np.dtype(dt).type(mid))

    @st.composite
    def entry(draw2: Any) -> float:
        kind = draw2(st.sampled_from(("mid", "lo", "hi")))
        if kind == "mid":
            return fmid
        end, toward = (lo, hi) if kind == "lo" else (hi, lo)
        if math.isinf(end):
            return math.copysign(draw2(st.floats(1.0, large, width=width)), end)
        return _near(end, toward, draw2(st.integers(1, _MANTISSA[dt])), dt)

    row = st.lists(entry(), min_size=features, max_size=features)
    values = draw(st.lists(row, min_size=1, max_size=max_batch))
    return np.asarray(values, dtype=np.float64).reshape(len(values), features)


# -- wide inputs: a few structural draws, NumPy builds a batch of many rows ------------------------
#: |x| up to which a layer's outputs must be finite and are always judged (the large regime draws
#: up to :func:`huge_input`; rows beyond this are judged only where the float64 copy is finite).
LARGE_INPUT: float = 1e4
#: Regimes of one row of a wide batch (see :func:`wide_batch`).
WIDE_REGIMES: tuple[str, ...] = ("ordinary", "large", "extreme", "domain_end", "codomain_end")
#: Mixes a wide batch is drawn from: row regime → weight; simplest (shrink target) first.
WIDE_MIXES: dict[str, dict[str, float]] = {
    "ordinary": {"ordinary": 1.0},
    "mixed": {
        "ordinary": 0.4,
        "large": 0.2,
        "extreme": 0.2,
        "domain_end": 0.1,
        "codomain_end": 0.1,
    },
    "large": {"large": 1.0},
    "extreme": {"extreme": 1.0},
    "ends": {"domain_end": 0.5, "codomain_end": 0.5},
}
#: Default largest number of rows of a wide batch.
WIDE_ROWS: int = 128
_ORDINARY = (2.0**-8, 8.0)  # magnitudes of the ordinary regime (as layer_inputs)


def huge_input(dtype: Any) -> float:
    """Largest |x| the large regime draws: 2^(e_max/2 − 4), i.e. 2⁶⁰ ≈ 1.2e18 (float32) and
    2⁵⁰⁸ ≈ 8e152 (float64) — 16 times below √(largest float), so a layer may square an input
    (a norm, √(x² + 1)) or multiply two, and scale the result by a few hundred, without
    overflowing: the safe range a layer can be asked to handle without rescaling tricks."""
    dt = _input_dtype(dtype)
    return 2.0 ** (np.finfo(dt).maxexp // 2 - 4)


def _ordinary(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """Entries 0 (1 in 16), multiples of ¼ in [−8, 8] (1 in 8) or ±[2⁻⁸, 8] (half uniform,
    half log-uniform) on R; on an interval, the middle 7/8 of (lo, hi) ∩ [−8, 8] (uniform, 1 in
    8 on its sixteenths)."""
    if math.isinf(lo) and math.isinf(hi):
        a, b = _ORDINARY
        mag = np.where(
            rng.random(shape) < 0.5,
            rng.uniform(a, b, shape),
            np.exp2(rng.uniform(math.log2(a), math.log2(b), shape)),
        )
        x = np.where(rng.random(shape) < 0.5, -mag, mag)
        # Round values (multiples of ¼) as Hypothesis favours them: spline bounds and knots sit
        # there (a layer that treats x = 3 differently from 3 ± ε).
        x = np.where(rng.random(shape) < 1 / 8, rng.integers(-32, 33, shape) / 4, x)
        return np.where(rng.random(shape) < 1 / 16, 0.0, x)
    a, b = max(lo, -_ORDINARY[1]), min(hi, _ORDINARY[1])
    if not a < b:
        raise ValueError(f"domain ({lo}, {hi}) does not meet [-8, 8]")
    m = (b - a) / 16
    x = rng.uniform(a + m, b - m, shape)
    return np.where(rng.random(shape) < 1 / 8, a + m * rng.integers(1, 16, shape), x)


def _large(
    rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float, huge: float
) -> np.ndarray:
    """Towards an infinite end: |x − base| log-uniform in [8, 1e4] (3 in 4) or [1e4, huge]
    (base 0 on R, the finite end of a half-line)."""
    signs = [s for s, end in ((-1.0, lo), (1.0, hi)) if math.isinf(end)]
    sign = rng.choice(signs, shape)
    beyond = (rng.random(shape) < 0.25) & (huge > LARGE_INPUT)
    log_lo, log_mid, log_hi = (
        math.log(_ORDINARY[1]),
        math.log(LARGE_INPUT),
        math.log(max(huge, LARGE_INPUT)),
    )
    mag = np.exp(
        np.where(beyond, rng.uniform(log_mid, log_hi, shape), rng.uniform(log_lo, log_mid, shape))
    )
    base = 0.0 if len(signs) == 2 else (lo if math.isfinite(lo) else hi)
    return base + sign * mag


def _near_ends(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    lo: float,
    hi: float,
    bits: int,
    mid: np.ndarray,
) -> np.ndarray:
    """end ± max(|end|, 1)·2⁻ᵏ (k uniform in 1..``bits``, never past the midpoint) towards the
    inside, for a finite end drawn per entry; one entry in four keeps ``mid``."""
    ends = [e for e in (lo, hi) if math.isfinite(e)]
    end = rng.choice(ends, shape)
    toward = np.where(end == lo, hi, lo)
    k = rng.integers(1, bits + 1, shape)
    step = np.maximum(np.abs(end), 1.0) * np.exp2(-k.astype(np.float64))
    with np.errstate(invalid="ignore"):
        half = np.where(np.isfinite(toward), np.abs(toward - end) / 2, 1.0)
    x = end + np.sign(toward - end) * np.minimum(step, half)
    return np.where(rng.random(shape) < 0.25, mid, x)


def _round_inside(x: np.ndarray, lo: float, hi: float, dt: str) -> np.ndarray:
    """``x`` rounded to ``dt`` and moved to the nearest value of ``dt`` strictly inside
    (lo, hi) where rounding put it on or past an end (returned as float64)."""
    t = np.dtype(dt).type
    r = x.astype(dt)
    if math.isfinite(lo):
        r = np.where(r.astype(np.float64) > lo, r, np.nextafter(t(lo), t(np.inf)))
    if math.isfinite(hi):
        r = np.where(r.astype(np.float64) < hi, r, np.nextafter(t(hi), t(-np.inf)))
    return r.astype(np.float64)


def _substitute(regime: str, lo: float, hi: float, codomain_ok: bool) -> str:
    """The regime a row really gets: ``large`` needs an infinite end of the domain,
    ``domain_end`` a finite one, ``codomain_end`` a finite codomain end and a preimage."""
    has_inf = math.isinf(lo) or math.isinf(hi)
    has_fin = math.isfinite(lo) or math.isfinite(hi)
    if regime == "codomain_end" and not codomain_ok:
        regime = "domain_end" if has_fin else "large"
    if regime == "large" and not has_inf:
        regime = "domain_end"
    if regime == "domain_end" and not has_fin:
        regime = "large"
    return regime


def wide_batch(
    features: int,
    *,
    seed: int = 0,
    mix: str = "mixed",
    rows: int = WIDE_ROWS,
    dtype: Any = "float64",
    domain: Any = None,
    codomain: Any = None,
    preimage: Callable[[np.ndarray], np.ndarray] | None = None,
    huge: float | None = None,
) -> np.ndarray:
    """A batch x of shape ``(rows, features)`` (float64, entries exact in ``dtype``, strictly
    inside ``domain``) built by NumPy from ``seed``; each row's regime is drawn from
    :data:`WIDE_MIXES` [``mix``]:

    * ``ordinary``: entries 0, multiples of ¼ or ±[2⁻⁸, 8] (the middle 7/8 of the domain ∩
      [−8, 8] on an interval);
    * ``large``: every entry towards an infinite end of the domain, |x| log-uniform in
      [8, :data:`LARGE_INPUT`] (3 in 4) or [:data:`LARGE_INPUT`, ``huge``] (default
      :func:`huge_input`);
    * ``extreme``: ordinary entries but one, which is large or near a finite domain end;
    * ``domain_end``: entries end ± max(|end|, 1)·2⁻ᵏ, k ≤ the mantissa length (1 in 4 ordinary);
    * ``codomain_end``: ``preimage`` (a float64 map y → x of (r, n) arrays, e.g. the float64
      layer's inverse) of targets y whose entries are near a finite end of ``codomain`` (1 in
      2) or ordinary values inside it: inputs whose image approaches the codomain's end.

    A regime the domain does not allow is replaced (large ↔ domain_end; codomain_end without
    a bounded codomain or a preimage → domain_end or large); preimage rows that are not finite
    or not inside the domain become ordinary rows. Every regime's candidates are drawn for
    max(``rows``, :data:`WIDE_ROWS`) rows at once and each row keeps its regime's, so a batch
    of fewer rows (up to :data:`WIDE_ROWS`) is a prefix of a longer one.
    """
    dt = _input_dtype(dtype)
    features = positive_int(features, "features")
    rows = positive_int(rows, "rows")
    if mix not in WIDE_MIXES:
        raise ValueError(f"mix must be one of {tuple(WIDE_MIXES)}, got {mix!r}")
    lo, hi = _open_interval(domain)
    clo, chi = _open_interval(codomain)
    top = huge_input(dt) if huge is None else float(huge)
    codomain_ok = preimage is not None and (math.isfinite(clo) or math.isfinite(chi))
    rng = np.random.default_rng([int(seed), list(WIDE_MIXES).index(mix)])
    total = max(int(rows), WIDE_ROWS)
    shape = (total, features)
    names = list(WIDE_MIXES[mix])
    weights = np.array([WIDE_MIXES[mix][r] for r in names])
    picks = rng.choice(len(names), size=total, p=weights / weights.sum())
    regime = np.array([_substitute(r, lo, hi, codomain_ok) for r in names])[picks]
    bits = _MANTISSA[dt]
    mid = _ordinary(rng, shape, lo, hi)
    # The extreme regime's one entry: large towards an infinite end or at a finite end.
    one_kind = np.array([_substitute(k, lo, hi, False) for k in ("large", "domain_end")])[
        rng.integers(0, 2, total)
    ]
    end_mid = np.full(shape, lo if math.isfinite(lo) else hi)
    large = _large(rng, shape, lo, hi, top) if (math.isinf(lo) or math.isinf(hi)) else mid
    ends = (
        _near_ends(rng, shape, lo, hi, bits, mid)
        if (math.isfinite(lo) or math.isfinite(hi))
        else mid
    )
    sharp = (
        _near_ends(rng, shape, lo, hi, bits, end_mid)
        if (math.isfinite(lo) or math.isfinite(hi))
        else mid
    )
    one = np.where((one_kind == "large")[:, None], large, sharp)
    col = rng.integers(0, features, total)
    extreme = mid.copy()
    extreme[np.arange(total), col] = one[np.arange(total), col]
    out = np.select(
        [(regime == r)[:, None] for r in ("large", "domain_end", "extreme")],
        [large, ends, extreme],
        default=mid,
    )
    if codomain_ok:
        cmid = _ordinary(rng, shape, clo, chi)
        y = np.where(rng.random(shape) < 0.5, cmid, _near_ends(rng, shape, clo, chi, bits, cmid))
        idx = np.flatnonzero(regime[:rows] == "codomain_end")
        if idx.size:
            with np.errstate(all="ignore"):
                xs = np.asarray(preimage(y[idx]), dtype=np.float64)  # type: ignore[misc]
            if xs.shape == (idx.size, features):
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(xs).all(axis=1) & ((xs > lo) & (xs < hi)).all(axis=1)
                out[idx[ok]] = xs[ok]
    return _round_inside(out[:rows], lo, hi, dt)


@st.composite
def wide_inputs(
    draw: Any,
    features: int,
    *,
    dtype: Any = "float64",
    domain: Any = None,
    codomain: Any = None,
    preimage: Callable[[np.ndarray], np.ndarray] | None = None,
    max_rows: int = WIDE_ROWS,
    huge: float | None = None,
    mixes: tuple[str, ...] | None = None,
) -> np.ndarray:
    """A :func:`wide_batch` of 1..``max_rows`` rows: Hypothesis draws only a seed, a mix (of
    ``mixes``, default all of :data:`WIDE_MIXES`) and the row count; NumPy builds the rows.
    Shrinks towards seed 0, the first mix (``ordinary``) and one row. Cheap to draw: the cost
    of a search is the layer's, not Hypothesis's."""
    names = tuple(WIDE_MIXES) if mixes is None else tuple(mixes)
    if not names or any(m not in WIDE_MIXES for m in names):
        raise ValueError(f"mixes must be a non-empty subset of {tuple(WIDE_MIXES)}, got {mixes!r}")
    max_rows = positive_int(max_rows, "max_rows")
    seed = draw(seeds())
    mix = draw(st.sampled_from(names))
    rows = draw(st.integers(1, max_rows))
    return wide_batch(
        features,
        seed=seed,
        mix=mix,
        rows=rows,
        dtype=dtype,
        domain=domain,
        codomain=codomain,
        preimage=preimage,
        huge=huge,
    )
