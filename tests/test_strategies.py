"""Meta tests: the Hypothesis strategies and case builders produce what they claim."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invlin.oracle import ExactMatrix, evaluate
from invlin.testing import eps
from invlin.testing.cases import (
    KAPPA_LIMIT,
    LUCase,
    MatrixCase,
    PathCase,
    conditioned_matrix,
    crossing_path,
    rank_one_path,
)
from invlin.testing.profiles import PROFILES
from invlin.testing.strategies import (
    FACTOR_KINDS,
    conditioned_matrices,
    crossing_paths,
    dimensions,
    factor_sequences,
    lu_factors,
    nearly_singular_matrices,
    permutation_matrices,
    update_paths,
)

META = settings(
    max_examples=PROFILES["ci"].max_examples // 2,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _kappa_tol(case: MatrixCase) -> float:
    """Rounding the construction (Q₁ΣQ₂ᵀ in float64, then to the dtype) moves every singular
    value by ≤ (nε₆₄ + √n·ε)·σ_max, so κ₂ moves by a factor ≤ 1 + 2(nε₆₄ + √n·ε)·κ."""
    n = case.n
    return 2 * (n * eps("float64") * 4 + math.sqrt(n) * eps(case.dtype)) * case.kappa


@META
@given(conditioned_matrices())
def test_conditioned_matrices_have_the_requested_kappa_and_sign(case):
    a = case.a.astype(np.float64)
    assert case.a.dtype == np.dtype(case.dtype) and a.shape == (case.n, case.n)
    assert 1.0 <= case.kappa <= KAPPA_LIMIT[case.dtype]
    kappa = np.linalg.cond(a, 2)
    tol = _kappa_tol(case)
    assert case.kappa / (1 + tol) <= kappa <= case.kappa * (1 + tol)
    assert np.linalg.slogdet(a)[0] == case.sign


@META
@given(nearly_singular_matrices())
def test_nearly_singular_matrices_sit_at_the_dtype_limit(case):
    limit = KAPPA_LIMIT[case.dtype]
    assert case.kind == "nearly_singular"
    if case.n > 1:
        assert limit / 1e3 <= case.kappa <= limit
        s = np.linalg.svd(case.a.astype(np.float64), compute_uv=False)
        # one small singular value, the others equal (the "one_small" spectrum)
        assert s[-1] / s[0] <= 1e3 / limit * (1 + _kappa_tol(case))
        assert np.allclose(s[:-1], s[0], rtol=1e-5)


@META
@given(permutation_matrices())
def test_permutation_matrices_are_exact_with_known_kappa_and_sign(case):
    a = case.a.astype(np.float64)
    assert np.all(np.count_nonzero(a, axis=0) == 1) and np.all(np.count_nonzero(a, axis=1) == 1)
    nz = np.abs(a[a != 0])
    assert np.all(np.exp2(np.round(np.log2(nz))) == nz)  # powers of two: exact in any dtype
    assert np.linalg.cond(a, 2) == pytest.approx(case.kappa, rel=1e-12)
    assert evaluate(a).sign == case.sign  # exact sign from the oracle


@META
@given(lu_factors(tiny=2, zero=True))
def test_lu_factors_are_triangular_with_the_drawn_diagonal(case):
    assert isinstance(case, LUCase)
    assert np.all(np.diagonal(case.lower) == 1.0) and np.all(np.triu(case.lower, 1) == 0)
    assert np.all(np.tril(case.upper, -1) == 0)
    d = np.abs(case.diag)
    assert np.any(d == 0)  # zero=True plants an exact zero
    normal = d[(d >= 1e-2) & (d <= 10)]
    tiny = d[(d > 0) & (d < 1e-2)]
    assert normal.size + tiny.size + np.count_nonzero(d == 0) == case.n
    assert tiny.size <= 2 and np.all(tiny <= 10.0**-3 * (1 + 1e-12))


@META
@given(
    st.sampled_from(sorted(FACTOR_KINDS)).flatmap(
        lambda k: st.tuples(st.just(k), factor_sequences(k))
    )
)
def test_factor_sequences_stay_in_their_regime(kind_and_cs):
    kind, cs = kind_and_cs
    lo, hi, negative = FACTOR_KINDS[kind]
    logs = np.log(np.abs(cs))
    assert np.all((logs >= lo - 1e-12) & (logs <= hi + 1e-12))
    assert negative or all(c > 0 for c in cs)
    if kind == "sign_flip":
        assert any(c < 0 for c in cs)


def _achieved_factors(case: PathCase) -> tuple[list[float], list[float]]:
    """Exact c_k = det A_{k+1}/det A_k from the oracle, and κ₁ of A_k."""
    exact = ExactMatrix.from_float(case.a0)
    before = evaluate(exact)
    cs, kappas = [], []
    for u, v in case.updates():
        exact.apply(u, v)
        after = evaluate(exact)
        cs.append(after.sign * before.sign * math.exp(after.logabsdet - before.logabsdet))
        kappas.append(max(1.0, before.kappa))
        before = after
    return cs, kappas


@META
@given(update_paths(kinds=tuple(FACTOR_KINDS)))
def test_update_paths_meet_their_factors(case):
    """c_k is met up to 10·(ε + k·ε₆₄)·n·κ₁(A_k)·|c_k − 1|: rounding u = A_k w and v to the dtype
    perturbs vᵀA_k⁻¹u by ≤ 2ε·κ₂·‖v‖‖w‖ with ‖v‖‖w‖ ≤ √5·|c − 1| (spread ≤ 2), and the float64
    running A_k the builder uses is off by ≤ k·ε₆₄‖A‖ (κ₂ ≤ n·κ₁)."""
    achieved, kappas = _achieved_factors(case)
    assert case.k == len(case.cs) >= 1
    for k, (got, want, kappa) in enumerate(zip(achieved, case.cs, kappas, strict=True)):
        tol = 10 * (eps(case.dtype) + (k + 1) * eps("float64")) * case.n * kappa * abs(want - 1)
        assert abs(got - want) <= tol + 1e-9 * abs(want), (k, got, want, tol)


@META
@given(crossing_paths())
def test_crossing_paths_approach_cross_and_leave(case):
    cs, _ = _achieved_factors(case)
    exact = ExactMatrix.from_float(case.a0)
    signs, k2 = [evaluate(exact).sign], [np.linalg.cond(exact.to_float(), 2)]
    for u, v in case.updates():
        exact.apply(u, v)
        signs.append(evaluate(exact).sign)
        k2.append(np.linalg.cond(exact.to_float(), 2))
    flips = sum(a != b for a, b in itertools.pairwise(signs))
    assert flips == (1 if case.kind == "crossing" else 0)
    assert all(np.sign(c) == np.sign(w) for c, w in zip(cs, case.cs, strict=True))
    # κ along the line (module text of cases.crossing_path), n ≥ 2: the closest point is at least
    # 1/(κ₂(a0)·gap) and every point at most κ₂(a0)·(1 + 3√2)²/|g| ≤ the dtype limit.
    assert max(k2) <= KAPPA_LIMIT[case.dtype] * 1.01
    if case.n >= 2:
        assert max(k2) >= 0.99 / (k2[0] * case.gap)
    assert 1 <= case.leave <= case.k
    assert k2[-1] <= 1.01 * k2[0] * (1 + 3 * math.sqrt(2)) ** 2


def test_rank_one_path_keeps_kappa_and_logdet_inside_the_family():
    rng = np.random.default_rng(0)
    start = conditioned_matrix(4, 1e4, 1, rng, dtype="float32")
    case = rank_one_path(start.a, [math.exp(-6.0)] * 12, rng, dtype="float32", spread=1.0)
    exact = ExactMatrix.from_float(case.a0)
    logdet0 = evaluate(exact).logabsdet
    for u, v in case.updates():
        exact.apply(u, v)
        assert np.linalg.cond(exact.to_float(), 2) <= KAPPA_LIMIT["float32"] * 1.01
        assert abs(evaluate(exact).logabsdet - logdet0) <= 30.5
    assert any(c > 1 for c in case.cs)  # some factors were turned around (c → 1/c)


def test_builders_validate_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kappa"):
        conditioned_matrix(3, 1e13, 1, rng)
    with pytest.raises(ValueError, match="sign"):
        conditioned_matrix(3, 10.0, 0, rng)
    with pytest.raises(ValueError, match="dtype"):
        conditioned_matrix(3, 10.0, 1, rng, dtype="float16")
    with pytest.raises(ValueError, match="gap"):
        crossing_path(np.eye(2), rng, gap=2.0)
    with pytest.raises(ValueError, match="cs"):
        rank_one_path(np.eye(2), [0.0], rng)


def test_case_reprs_rebuild_the_case_exactly():
    rng = np.random.default_rng(1)
    start = conditioned_matrix(3, 1e3, -1, rng, dtype="float32")
    path = crossing_path(start.a, rng, gap=1e-2, dtype="float32")
    for case in (start, path):
        again = eval(repr(case), {"np": np, "MatrixCase": MatrixCase, "PathCase": PathCase})
        for name in ("a", "a0", "us", "vs", "cs"):
            if hasattr(case, name):
                got, want = getattr(again, name), getattr(case, name)
                assert got.dtype == want.dtype and np.array_equal(got, want)


def test_dimensions_follow_the_profile_and_the_environment(monkeypatch):
    monkeypatch.setenv("INVLIN_MAX_N", "3")
    seen = set()

    @settings(max_examples=50, database=None, derandomize=True)
    @given(dimensions())
    def draw(n):
        seen.add(n)

    draw()
    assert seen <= {1, 2, 3} and 3 in seen
    monkeypatch.setenv("INVLIN_MAX_N", "zero")
    with pytest.raises(ValueError, match="INVLIN_MAX_N"):
        draw()
