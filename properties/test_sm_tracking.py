"""Theme 1 — Sherman–Morrison tracking: the tracked inverse matches the oracle along any path.

Every generated path (benign factors, sign flips, factors at the guard threshold, mixtures,
crossings of det = 0 and bounces off it) runs through the NumPy reference and the torch layer
with the guard off, and after *every* update the tracked inverse X_j is compared with the exact
matrix A_j of the path (A_0 plus the exact sum of the applied outer products) and the oracle's
inverse of it:

* LAPACK inverse ratio ‖I − X_jA_j‖₁/(n‖A_j‖₁‖X_j‖₁ε) ≤ the path allowance of
  :mod:`invlin.testing.paths` (30·(1 + j) when κ is constant, more when the path was worse
  conditioned earlier — the engine's plain 30·(1 + j) is provably too small there, see that
  module);
* column-wise forward error of X_j against the oracle's inverse: each column satisfies
  ‖x − x*‖₁/‖x*‖₁ ≤ ‖I − XA‖₁ (X − A⁻¹ = −(I − XA)A⁻¹), i.e. ratio ≤ the same allowance against
  the scale n·κ₁·ε.
"""

from __future__ import annotations

import numpy as np
from _tracking import IMPLEMENTATIONS, oracle_path, run_path, steer
from hypothesis import example, given
from hypothesis import strategies as st

from invlin.testing import assert_forward, assert_inverse
from invlin.testing.cases import PathCase
from invlin.testing.reproduce import reproducible
from invlin.testing.strategies import update_paths

REPRO = """
from invlin.reference import Guard, TrackedMatrix
from invlin.oracle import exact_path
from invlin.testing import inverse_ratio
t = TrackedMatrix(case.a0, dtype=case.dtype, guard=Guard.off())
for u, v in case.updates():
    t.update(u, v)
print(inverse_ratio(exact_path(case.a0, case.updates()).to_float(), t.inverse))
"""

# n = 1, c = 0.6 thirty times: each update multiplies the relative error of the tracked scalar
# inverse by 1/0.6 (κ stays 1), ending ~2·10³ times over 30·(1 + k); found while building the
# suite, it is what the path allowance accounts for (amplification ‖A_e⁻¹A_j‖ = 0.6^(j−e)).
_SCALAR_SHRINK = PathCase(
    a0=np.array([[1.0]]),
    us=np.array([[-0.4 * 0.6**j] for j in range(30)]),
    vs=np.ones((30, 1)),
    cs=np.full(30, 0.6),
    dtype="float64",
    kind="benign",
    leave=30,
)


# n = 1, c = 0.1 then c = −190.6: the second update's subtraction X − (Xu)(vᵀX)/c cancels
# (10 − 10.05 = −0.05), an error of ε·‖X_1‖ = 190 units of X_2 (ratio 115); found by this
# property, it is what the allowance's max(1, ‖X_{j−1}‖/‖X_j‖) factor accounts for.
_CANCELLING = PathCase(
    a0=np.array([[1.0]]),
    us=np.array([[-0.9], [-19.156626845863002]]),
    vs=np.ones((2, 1)),
    cs=np.array([0.1, -190.56626845863]),
    dtype="float64",
    kind="crossing",
    gap=0.1,
    leave=1,
)


@given(case=update_paths(), impl=st.sampled_from(IMPLEMENTATIONS))
@example(case=_SCALAR_SHRINK, impl="numpy")
@example(case=_CANCELLING, impl="numpy")
def test_tracked_inverse_matches_oracle_after_every_update(case, impl):
    track = run_path(case, impl)
    truth = oracle_path(case.a0, track.applied)
    allow = truth.allowance()
    worst = 0.0
    with reproducible(REPRO, case=case):
        for j, (a, x) in enumerate(zip(truth.matrices, track.inverses, strict=True)):
            r = assert_inverse(a, out=x, dtype=track.dtype, threshold=allow.inverse[j])
            n, kappa = a.shape[0], truth.kappas[j]
            assert_forward(
                out=x.T,
                expected=truth.inverses[j].T,
                kappa=n * kappa,
                dtype=track.dtype,
                threshold=allow.inverse[j],
            )
            worst = max(worst, r.value / allow.inverse[j])
    steer("inverse ratio / allowance", worst)
    steer("max kappa", max(truth.kappas))
