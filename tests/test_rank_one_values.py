"""TrackedMatrix's hyperpower correction, as equalities: X = (1 − δ)I for A = I has R = δI, and
one step of order p leaves X = (1 − δ^p)I exactly when δ is a power of two (issue 21, item 6)."""

from __future__ import annotations

import numpy as np
import pytest

from invlin.reference.rank_one import TrackedMatrix

DELTA = 2.0**-4


@pytest.mark.parametrize("order", [2, 3, 4])
def test_one_hyperpower_step_raises_the_residual_to_the_order(order):
    t = TrackedMatrix(np.eye(3))
    t._inv = (1 - DELTA) * np.eye(3)  # a drifted inverse: I − XA = δI
    assert t.correct(order=order) == DELTA  # ‖R‖₁ before the step
    assert np.array_equal(t.inverse, (1 - DELTA**order) * np.eye(3))


@pytest.mark.parametrize(
    ("a", "sign", "logabsdet"),
    [
        ([[0.0, 1.0], [1.0, 0.0]], -1, 0.0),  # one row swap, positive pivots
        ([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]], -1, np.log(6.0)),
        ([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 1, 0.0),  # a 3-cycle: two swaps
        ([[0.0, -1.0], [1.0, 0.0]], 1, 0.0),  # a swap and a negative pivot
    ],
)
def test_sign_and_log_det_from_a_pivoted_lu_count_the_row_swaps(a, sign, logabsdet):
    a = np.array(a)
    t = TrackedMatrix(a)
    assert (t.sign, t.logabsdet) == (sign, pytest.approx(logabsdet, abs=1e-15))
    t.refresh()
    assert t.sign == sign
