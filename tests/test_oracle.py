"""Tests of the arbitrary-precision oracle against closed forms and exact rational arithmetic."""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import threading
import time
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from invlin.oracle import (
    ExactMatrix,
    OracleResult,
    OracleSingularError,
    available_backends,
    evaluate,
    exact_path,
)
from invlin.oracle import _flint as flint_backend
from invlin.oracle import _mpmath as mpmath_backend
from invlin.oracle._singular import _PRIMES, _det_is_zero_multimodular, is_exactly_singular

BACKENDS = available_backends()
needs_both = pytest.mark.skipif(len(BACKENDS) < 2, reason="python-flint not installed")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


# ---------------------------------------------------------------- independent exact arithmetic


def frac_matrix(a) -> list[list[Fraction]]:
    """Exact rational copy of a float or int array."""
    return [[Fraction(x) for x in row] for row in np.asarray(a).tolist()]


def frac_det_inv(rows: list[list[Fraction]]) -> tuple[Fraction, list[list[Fraction]]]:
    """Determinant and inverse by Gauss–Jordan elimination in exact rationals."""
    n = len(rows)
    a = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(rows)]
    det = Fraction(1)
    for k in range(n):
        p = next(i for i in range(k, n) if a[i][k] != 0)
        if p != k:
            a[k], a[p] = a[p], a[k]
            det = -det
        piv = a[k][k]
        det *= piv
        a[k] = [x / piv for x in a[k]]
        for i in range(n):
            if i != k and a[i][k] != 0:
                f = a[i][k]
                a[i] = [x - f * y for x, y in zip(a[i], a[k], strict=True)]
    return det, [row[n:] for row in a]


def mp_log_abs(q: Fraction, prec: int = 400) -> mpmath.mpf:
    with mpmath.mp.workprec(prec):
        return mpmath.log(abs(q.numerator)) - mpmath.log(q.denominator)


def to_float_matrix(rows: list[list[Fraction]]) -> np.ndarray:
    return np.array([[float(x) for x in row] for row in rows])


def assert_matches_exact(r: OracleResult, det: Fraction, inv: list[list[Fraction]]) -> None:
    """The oracle agrees with an exact determinant and inverse."""
    assert r.sign == (1 if det > 0 else -1)
    exact_lad = mp_log_abs(det)
    tol = mpmath.mpf(2) ** -60 * max(1, abs(exact_lad))
    assert abs(r.logabsdet_mp - exact_lad) <= tol
    assert r.logabsdet == float(exact_lad)
    want = to_float_matrix(inv)
    # accurate to 2^-64 in the 1-norm, so the rounded entries match up to one ulp of the norm
    gap = np.abs(r.inverse - want).sum(axis=0).max()
    assert gap <= 2.0**-52 * np.abs(want).sum(axis=0).max()


def hilbert_exact(n: int) -> list[list[Fraction]]:
    return [[Fraction(1, i + j + 1) for j in range(n)] for i in range(n)]


def hilbert_det_closed_form(n: int) -> Fraction:
    """det H_n = c_n^4 / c_2n with c_n = 1! 2! ... (n-1)!."""

    def c(m: int) -> int:
        return math.prod(math.factorial(i) for i in range(1, m))

    return Fraction(c(n) ** 4, c(2 * n))


def hilbert_inverse_closed_form(n: int) -> list[list[int]]:
    """The integer inverse of H_n (1-based formula)."""
    return [
        [
            (-1) ** (i + j)
            * (i + j - 1)
            * math.comb(n + i - 1, n - j)
            * math.comb(n + j - 1, n - i)
            * math.comb(i + j - 2, i - 1) ** 2
            for j in range(1, n + 1)
        ]
        for i in range(1, n + 1)
    ]


def spd_with_condition(n: int, kappa: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0.0, -math.log10(kappa), n)
    return (q * s) @ q.T


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n", [2, 5, 8])
def test_fraction_helper_reproduces_hilbert_closed_forms(n):
    det, inv = frac_det_inv(hilbert_exact(n))
    assert det == hilbert_det_closed_form(n)
    assert inv == [[Fraction(x) for x in row] for row in hilbert_inverse_closed_form(n)]


@pytest.mark.parametrize("n", [2, 4, 7, 10])
def test_scaled_hilbert_closed_form(backend, n):
    # L·H_n with L = lcm(1, ..., 2n-1) has integer entries, exact in float64.
    lcm = math.lcm(*range(1, 2 * n))
    a = np.array([[lcm // (i + j + 1) for j in range(n)] for i in range(n)], dtype=np.float64)
    det = lcm**n * hilbert_det_closed_form(n)
    inv = [[Fraction(x, lcm) for x in row] for row in hilbert_inverse_closed_form(n)]
    r = evaluate(a, backend=backend)
    assert_matches_exact(r, det, inv)
    assert r.kappa == pytest.approx(
        np.abs(a).sum(0).max() * np.abs(to_float_matrix(inv)).sum(0).max()
    )


@pytest.mark.parametrize("n", [3, 6, 8])
def test_rounded_hilbert_against_fractions(backend, n):
    a = np.array([[1.0 / (i + j + 1) for j in range(n)] for i in range(n)])
    det, inv = frac_det_inv(frac_matrix(a))
    r = evaluate(a, backend=backend)
    assert_matches_exact(r, det, inv)
    # the rounding of the entries moves det only slightly away from the exact Hilbert value
    assert float(det / hilbert_det_closed_form(n)) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("n", [1, 2, 5, 9, 12])
def test_permutation_matrices(backend, n):
    rng = np.random.default_rng(n)
    perm = rng.permutation(n)
    p = np.eye(n)[perm]
    inversions = sum(perm[i] > perm[j] for i, j in itertools.combinations(range(n), 2))
    r = evaluate(p, backend=backend)
    assert r.sign == (-1) ** inversions
    assert r.logabsdet == 0.0
    np.testing.assert_array_equal(r.inverse, p.T)
    assert r.kappa == pytest.approx(1.0)


@pytest.mark.parametrize(
    "nodes",
    [[1, 2, 3, 4, 5, 6, 7, 8], [-3.0, -1.5, 0.25, 2.0, 3.5, 5.0], [0.5, -0.125, 3.0, -7.0]],
)
def test_vandermonde_determinant(backend, nodes):
    x = [Fraction(t) for t in nodes]
    n = len(x)
    exact = [[xi**j for j in range(n)] for xi in x]
    a = np.array([[float(v) for v in row] for row in exact])
    assert frac_matrix(a) == exact  # every power is exact in float64
    det = math.prod(
        (x[j] - x[i] for i, j in itertools.combinations(range(n), 2)), start=Fraction(1)
    )
    r = evaluate(a, backend=backend)
    assert r.sign == (1 if det > 0 else -1)
    assert abs(r.logabsdet_mp - mp_log_abs(det)) <= mpmath.mpf(2) ** -60 * max(1, abs(r.logabsdet))


def test_integer_input_is_exact(backend):
    r = evaluate(np.array([[2, 1], [1, 1]]), backend=backend)
    np.testing.assert_array_equal(r.inverse, [[1.0, -1.0], [-1.0, 2.0]])
    assert (r.sign, r.logabsdet) == (1, 0.0)


@pytest.mark.parametrize("scale", [-600, 600])
def test_extreme_scales(backend, scale):
    b = np.array([[4, 1, 0, 2], [1, -5, 1, 0], [0, 2, 6, 1], [3, 0, 1, -7]])
    a = np.ldexp(b.astype(np.float64), scale)
    det, inv = frac_det_inv(frac_matrix(b))
    factor = Fraction(2) ** scale
    r = evaluate(a, backend=backend)
    assert_matches_exact(r, det * factor**4, [[x / factor for x in row] for row in inv])


# ---------------------------------------------------------------- backends and precision


@needs_both
@pytest.mark.parametrize(("n", "kappa"), [(12, None), (16, 1e12), (10, 1e15)])
def test_backends_agree(n, kappa):
    if kappa is None:
        a = np.random.default_rng(3).standard_normal((n, n))
    else:
        a = spd_with_condition(n, kappa, seed=n)
    rf = evaluate(a, backend="flint")
    rm = evaluate(a, backend="mpmath")
    assert (rf.backend, rm.backend) == ("flint", "mpmath")
    assert rf.sign == rm.sign
    assert rf.bits == rm.bits
    norm = np.abs(rf.inverse).sum(0).max()
    assert np.abs(rf.inverse - rm.inverse).sum(0).max() <= 2.0**-52 * norm
    assert abs(rf.logabsdet_mp - rm.logabsdet_mp) <= mpmath.mpf(2) ** -60 * max(
        1, abs(rf.logabsdet)
    )
    assert rf.kappa == pytest.approx(rm.kappa, rel=1e-12)
    assert rf.rel_radius <= 2.0**-64
    assert rm.rel_radius <= 2.0**-64
    sign, lad = np.linalg.slogdet(a)
    assert rf.sign == sign
    assert abs(rf.logabsdet - lad) <= n * rf.kappa * 2.0**-52 * max(1.0, abs(lad))


def test_precision_rises_with_condition(backend):
    results = [
        evaluate(spd_with_condition(8, k, seed=1), backend=backend) for k in (1e2, 1e8, 1e14)
    ]
    bits = [r.bits for r in results]
    assert bits == sorted(bits)
    assert bits[0] < bits[1] < bits[2]
    for r, k in zip(results, (1e2, 1e8, 1e14), strict=True):
        assert r.kappa == pytest.approx(k, rel=5.0)  # 1-norm vs the 2-norm of the construction
        assert r.bits >= math.log2(r.kappa) + 64 + 20 - 8
        assert r.check_bits > r.bits
    deeper = evaluate(spd_with_condition(8, 1e2, seed=1), backend=backend, target_bits=150)
    assert deeper.bits >= 150 + bits[0] - 64


def test_second_evaluation_is_really_at_higher_precision(backend):
    # mpmath caches an LU on its matrix objects across precision changes; nothing may leak here.
    a = np.array([[1.0 / (i + j + 1) + (i == j) for j in range(6)] for i in range(6)])
    det, _ = frac_det_inv(frac_matrix(a))
    exact = mp_log_abs(det, prec=600)
    low = evaluate(a, backend=backend, target_bits=20)
    high = evaluate(a, backend=backend, target_bits=200)
    assert high.bits > low.bits >= 20
    assert abs(low.logabsdet_mp - exact) <= mpmath.mpf(2) ** -20 * max(1, abs(exact))
    assert abs(high.logabsdet_mp - exact) <= mpmath.mpf(2) ** -195 * max(1, abs(exact))
    assert mpmath.mp.prec == 53
    if flint_backend.flint_module() is not None:
        assert flint_backend.flint_module().ctx.prec == 53


def test_mpmath_backend_precisions_are_independent():
    a = ExactMatrix.from_float(np.array([[1.0 / (i + j + 1) for j in range(5)] for i in range(5)]))
    rows = a.mantissas.tolist()
    det, _ = frac_det_inv([[Fraction(x) for x in row] for row in rows])
    exact = mp_log_abs(det, prec=800)
    first = mpmath_backend.evaluate_at(rows, 60)
    second = mpmath_backend.evaluate_at(rows, 400)
    for ev, good in ((first, 40), (second, 360)):
        got = mpmath.mp.make_mpf(ev.log_abs_det)
        assert abs(got - exact) <= mpmath.mpf(2) ** -good * abs(exact)


_BACKEND_AT = {"flint": flint_backend.evaluate_at, "mpmath": mpmath_backend.evaluate_at}


def test_concurrent_evaluations_keep_their_own_precision(backend):
    """Threads evaluating at different precisions neither see nor leave each other's precision.

    python-flint's working precision is one process-global value: without a lock, a thread that
    restores its saved precision can undo another's setting mid-evaluation (that thread's result
    is then only as accurate as the lower precision) or leave the other's precision behind. A tiny
    switch interval makes the interpreter change threads every few bytecodes, so an unguarded
    save/set/restore is caught in practically every round.
    """
    run = _BACKEND_AT[backend]
    a = ExactMatrix.from_float(
        np.array([[1.0 / (i + j + 1) + (i == j) for j in range(6)] for i in range(6)])
    )
    rows = a.mantissas.tolist()
    det, _ = frac_det_inv([[Fraction(x) for x in row] for row in rows])
    exact = mp_log_abs(det, prec=800)
    fl = flint_backend.flint_module()
    flint_before = fl.ctx.prec if fl is not None else None
    mp_before = mpmath.mp.prec
    precisions = (60, 148, 300, 520)
    failures: list[str] = []
    results: list = []

    def work(bits: int, barrier: threading.Barrier) -> None:
        # Nothing here may touch mpmath's global context: the checks run in the main thread.
        barrier.wait()
        results.extend(run(rows, bits) for _ in range(12))

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(15):
            barrier = threading.Barrier(len(precisions))
            threads = [threading.Thread(target=work, args=(b, barrier)) for b in precisions]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if fl is not None and fl.ctx.prec != flint_before:
                failures.append(f"flint precision left at {fl.ctx.prec} bits")
                fl.ctx.prec = flint_before
            if mpmath.mp.prec != mp_before:
                failures.append(f"mpmath precision left at {mpmath.mp.prec} bits")
                mpmath.mp.prec = mp_before
    finally:
        sys.setswitchinterval(old_interval)
    assert len(results) == 15 * 12 * len(precisions)
    with mpmath.mp.workprec(900):
        for ev in results:
            err = abs(mpmath.mp.make_mpf(ev.log_abs_det) - exact) / abs(exact)
            if err > mpmath.mpf(2) ** -(ev.bits - 12):
                failures.append(f"log|det| at {ev.bits} bits is off by {float(err):.1e}")
            rad = ev.log_abs_det_radius
            if rad is not None and mpmath.mp.make_mpf(rad) > mpmath.mpf(2) ** -(ev.bits - 16):
                radius = float(mpmath.mp.make_mpf(rad))
                failures.append(f"log|det| radius at {ev.bits} bits is {radius:.1e}")
    assert not failures, f"{len(failures)} problems, first: {failures[:3]}"


def test_result_is_frozen_and_typed(backend):
    r = evaluate(np.eye(3) * 2.0, backend=backend)
    assert isinstance(r.logabsdet_mp, mpmath.mpf)
    assert r.inverse.dtype == np.float64
    assert r.inverse.shape == (3, 3)
    assert r.logabsdet == pytest.approx(3 * math.log(2.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.sign = -1


# ---------------------------------------------------------------- singular matrices


@pytest.mark.parametrize(
    "a",
    [
        np.array([[1.0, 2.0], [2.0, 4.0]]),
        np.zeros((3, 3)),
        np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0], [0.5, -1.0, -0.5]]),  # col 3 = col 1 + col 2
    ],
)
def test_exactly_singular_raises_quickly(backend, a):
    start = time.perf_counter()
    with pytest.raises(OracleSingularError, match="singular") as info:
        evaluate(a, backend=backend)
    assert time.perf_counter() - start < 2.0
    assert isinstance(info.value, ArithmeticError)
    assert info.value.bits == 0


def test_large_rank_deficient_raises_quickly(backend):
    rng = np.random.default_rng(5)
    a = rng.integers(-50, 50, size=(40, 40)).astype(np.float64)
    a[:, 7] = a[:, 3] - 2 * a[:, 11]
    start = time.perf_counter()
    with pytest.raises(OracleSingularError):
        evaluate(a, backend=backend)
    assert time.perf_counter() - start < 5.0


def test_path_to_singular_matrix_raises(backend):
    e0 = np.eye(4)[0]
    m = exact_path(np.eye(4), [(-e0, e0)])
    with pytest.raises(OracleSingularError, match="exact determinant is 0"):
        evaluate(m, backend=backend)


def test_too_ill_conditioned_for_max_bits(backend):
    a = spd_with_condition(6, 1e15, seed=2)  # at 64 bits only ~14 bits are right
    with pytest.raises(OracleSingularError, match="too ill-conditioned") as info:
        evaluate(a, backend=backend, max_bits=64)
    assert info.value.bits >= 64
    assert str(info.value.bits) in str(info.value)
    assert evaluate(a, backend=backend).bits > 64  # fine with the default cap


def test_determinant_divisible_by_all_screening_primes():
    big = math.prod(_PRIMES)
    ints = np.array([[big, 0], [0, 1]], dtype=object)
    assert not is_exactly_singular(ints)
    assert not _det_is_zero_multimodular(ints)
    r = evaluate(ExactMatrix(ints, 0))
    assert r.logabsdet_mp == pytest.approx(mpmath.log(big), rel=1e-30)


def test_multimodular_fallback_without_flint():
    def zero(rows):
        return _det_is_zero_multimodular(np.array(rows, dtype=object))

    assert zero([[1, 2], [2, 4]])
    assert zero([[0, 0], [0, 0]])
    assert not zero([[0, 1], [1, 0]])
    assert zero([[1, 2, 3], [4, 5, 9], [7, 8, 15]])
    assert not zero([[1, 2, 3], [4, 5, 6], [7, 8, 10]])
    rng = np.random.default_rng(4)
    b = rng.integers(-(2**40), 2**40, size=(12, 12)).astype(object)
    b[:, -1] = 3 * b[:, 0] - b[:, 5] + 7 * b[:, 9]  # dependency found only at the last column
    assert zero(b.tolist())
    b[0, -1] += 1
    assert not zero(b.tolist())


# ---------------------------------------------------------------- exact update paths


def test_exact_path_matches_fraction_sum():
    rng = np.random.default_rng(11)
    n = 5
    a0 = rng.standard_normal((n, n))
    updates = [
        (rng.standard_normal(n), rng.standard_normal(n)),
        (rng.standard_normal(n).astype(np.float32), rng.standard_normal(n)),
        (np.ldexp(rng.standard_normal(n), -300), np.ldexp(rng.standard_normal(n), 250)),
        (np.full(n, 5e-324), rng.standard_normal(n)),  # subnormals
        (np.zeros(n), rng.standard_normal(n)),
        (np.array([-0.0, 1.0, 0.0, -3.0, 2.0**-1074]), np.ldexp(np.ones(n), 1000)),
    ]
    updates += [(rng.standard_normal(n) * 10.0**k, rng.standard_normal(n)) for k in range(-8, 9)]
    want = frac_matrix(a0)
    for u, v in updates:
        for i in range(n):
            for j in range(n):
                want[i][j] += Fraction(float(u[i])) * Fraction(float(v[j]))
    m = exact_path(a0, updates)
    assert m.to_fractions() == want
    np.testing.assert_array_equal(m.to_float(), to_float_matrix(want))
    stepwise = ExactMatrix.from_float(a0)
    for u, v in updates:
        stepwise.apply(u, v)
    assert stepwise == m


def test_exact_matrix_copy_and_float32():
    a = np.random.default_rng(2).standard_normal((4, 4)).astype(np.float32)
    m = ExactMatrix.from_float(a)
    assert m.n == 4
    assert m.to_fractions() == frac_matrix(a.astype(np.float64))
    np.testing.assert_array_equal(m.to_float(), a.astype(np.float64))
    c = m.copy()
    c.apply(np.ones(4), np.ones(4))
    assert c != m
    np.testing.assert_array_equal(m.to_float(), a.astype(np.float64))
    big = ExactMatrix.from_float(np.array([[2**62 + 1, 0], [0, 1]], dtype=np.int64))
    assert big.to_fractions()[0][0] == 2**62 + 1


def test_exact_path_float_rounding_at_the_end():
    m = exact_path(np.zeros((1, 1)), [(np.array([1.0]), np.array([1.0]))] * 3)
    m.apply(np.array([2.0**-60]), np.array([1.0]))
    assert m.to_fractions() == [[3 + Fraction(1, 2**60)]]
    assert m.to_float()[0, 0] == 3.0
    huge = exact_path(np.full((1, 1), 1e308), [(np.array([1e308]), np.array([10.0]))])
    assert huge.to_float()[0, 0] == math.inf


def test_long_path_is_fast():
    rng = np.random.default_rng(0)
    n = 64
    a0 = rng.standard_normal((n, n))
    updates = [(rng.standard_normal(n) * 0.05 / 8, rng.standard_normal(n)) for _ in range(1000)]
    start = time.perf_counter()
    m = exact_path(a0, updates)
    assert time.perf_counter() - start < 10.0
    want = Fraction(float(a0[3, 5])) + sum(
        Fraction(float(u[3])) * Fraction(float(v[5])) for u, v in updates
    )
    assert m.to_fractions()[3][5] == want


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("a", "message"),
    [
        (np.ones((2, 3)), "square"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.ones(3), "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "finite"),
        (np.array([[1.0, 0.0], [np.inf, 1.0]]), "finite"),
        (np.ones((2, 2), dtype=complex), "real"),
    ],
)
def test_bad_matrix(a, message):
    with pytest.raises(ValueError, match=message) as info:
        evaluate(a)
    assert "matrix" in str(info.value)
    with pytest.raises(ValueError, match=message):
        ExactMatrix.from_float(a)


def test_bad_vectors():
    m = ExactMatrix.from_float(np.eye(3))
    with pytest.raises(ValueError, match=r"u must have shape \(3,\)"):
        m.apply(np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="v must be finite"):
        m.apply(np.ones(3), np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"updates\[1\]\[0\] must be finite"):
        exact_path(np.eye(3), [(np.ones(3), np.ones(3)), (np.array([np.inf, 0, 0]), np.ones(3))])
    with pytest.raises(ValueError, match=r"updates\[0\] must be a \(u, v\) pair"):
        exact_path(np.eye(3), [np.ones(3)])
    with pytest.raises(ValueError, match="a0 must be square"):
        exact_path(np.ones((3, 2)), [])
    assert m == ExactMatrix.from_float(np.eye(3))  # failed updates changed nothing


def test_bad_options():
    a = np.eye(2)
    with pytest.raises(ValueError, match="backend"):
        evaluate(a, backend="sympy")
    with pytest.raises(ValueError, match="target_bits"):
        evaluate(a, target_bits=0)
    with pytest.raises(ValueError, match="guard_bits"):
        evaluate(a, guard_bits=-1)
    with pytest.raises(ValueError, match="max_bits"):
        evaluate(a, max_bits="many")


def test_backend_choice_without_flint(monkeypatch):
    monkeypatch.setattr(flint_backend, "_flint_module", None)
    assert available_backends() == ("mpmath",)
    assert evaluate(np.eye(2)).backend == "mpmath"
    with pytest.raises(ImportError, match="pip install python-flint"):
        evaluate(np.eye(2), backend="flint")


@needs_both
def test_auto_prefers_flint():
    assert available_backends() == ("flint", "mpmath")
    assert evaluate(np.eye(2)).backend == "flint"


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("value", [3.0, 0.36159505490948474, -0.7434992493538084, 7e-300])
def test_kappa_of_a_scalar_is_exactly_one(backend, value):
    # For n = 1, ‖a‖·‖1/a‖ = 1; the rounded product used to come out as 0.9999999999999999.
    assert evaluate(np.array([[value]]), backend=backend).kappa == 1.0
