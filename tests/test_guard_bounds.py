"""The merge guard's bounds, at their edges and on the post-merge log|det| (issue 21, item 6).

Every property suite runs with ``Guard.off()``, so the guard's log|det| bounds were never
exercised: a guard judging the *pre*-merge log|det| survived a mutation run. Here each bound is
met exactly (a value on the bound is refused: the bounds are strict) and every update crosses a
bound in one direction only, so the pre- and post-merge values get different verdicts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invlin.nn import P4InvLinear
from invlin.reference.rank_one import Guard, TrackedMatrix, UpdateRefused

N = 3


def test_p4_guard_is_the_reference_codes_bounds():
    assert Guard.p4() == Guard(min_log_abs_c=-6.0, min_logabsdet=-2.5, max_logabsdet=15.5)
    assert Guard.p4(-1.0, 3.0) == Guard(-5.0, -1.5, 3.5)
    with pytest.raises(ValueError, match="min_logdet must be < max_logdet"):
        Guard.p4(1.0, 1.0)


@pytest.mark.parametrize(
    ("guard", "log_c", "new_ld", "refused"),
    [
        (Guard(-6.0, None, None), -6.0, 0.0, True),  # on the bound: refused
        (Guard(-6.0, None, None), math.nextafter(-6.0, 0.0), 0.0, False),
        (Guard(None, -1.0, None), 0.0, -1.0, True),
        (Guard(None, -1.0, None), 0.0, math.nextafter(-1.0, 0.0), False),
        (Guard(None, None, 1.0), 0.0, 1.0, True),
        (Guard(None, None, 1.0), 0.0, math.nextafter(1.0, 0.0), False),
        (Guard.off(), -700.0, -700.0, False),  # no bounds
        (Guard.off(), -math.inf, 0.0, True),  # c = 0 is always refused
        (Guard.off(), 0.0, math.inf, True),  # a non-finite log|det| too
    ],
)
def test_each_bound_is_strict(guard, log_c, new_ld, refused):
    assert (guard.reason(log_c, new_ld) is not None) is refused


def _along_e1(c: float) -> tuple[np.ndarray, np.ndarray]:
    """u, v with vᵀA⁻¹u = c − 1 for A⁻¹ = I: u = (c − 1)e₁, v = e₁."""
    e1 = np.eye(N)[0]
    return (c - 1.0) * e1, e1


# Bounds (−1, 1) on log|det|; A = I (log|det| 0) or diag(e², 1, 1) (log|det| 2, above).
BOUNDS = Guard(None, -1.0, 1.0)


@pytest.mark.parametrize(
    ("start", "log_c", "applied"),
    [
        (0.0, 1.5, False),  # inside before, above after: refused
        (0.0, -1.5, False),  # inside before, below after: refused
        (2.0, -1.5, True),  # above before, inside after: applied
        (0.0, 0.5, True),
    ],
)
def test_reference_guard_judges_the_log_det_after_the_update(start, log_c, applied):
    t = TrackedMatrix(np.diag([math.exp(start), 1.0, 1.0]), guard=BOUNDS)
    # A⁻¹ = diag(e^−start, 1, 1): scale u so that c = 1 + vᵀA⁻¹u = ±e^{log_c}
    u, v = _along_e1(math.exp(log_c))
    u = u * math.exp(start)
    before = t.state()
    result = t.update(u, v, on_refuse="skip")
    assert result.applied is applied
    if applied:
        assert t.logabsdet == pytest.approx(start + log_c, abs=1e-14)
    else:
        a, x, sign, ld = t.state()
        assert np.array_equal(a, before[0]) and np.array_equal(x, before[1])
        assert (sign, ld) == (before[2], before[3])
        with pytest.raises(UpdateRefused, match="log\\|det\\|"):
            t.update(u, v)


def test_reference_sign_flips_exactly_when_c_is_negative():
    t = TrackedMatrix(np.eye(N), guard=Guard.off())
    t.update(*_along_e1(-2.0))  # c = −2
    assert (t.sign, t.logabsdet) == (-1, pytest.approx(math.log(2.0), abs=1e-15))
    # now A⁻¹ = diag(−½, 1, 1): u = −½e₁, v = e₁ gives c = 1 + (−½)(−½) = 1.25 > 0
    assert t.update(*_along_e1(0.5)).c == 1.25
    assert t.sign == -1  # c > 0 keeps the sign


def _p4(start: float, guard: Guard) -> P4InvLinear:
    a = torch.diag(torch.tensor([math.exp(start), 1.0, 1.0], dtype=torch.float64))
    return P4InvLinear(N, init=a, guard=guard, monitor=None, dtype=torch.float64)


def _set_perturbation(layer: P4InvLinear, start: float, c: float) -> None:
    u, v = _along_e1(c)
    with torch.no_grad():
        layer.u.copy_(torch.as_tensor(u * math.exp(start)))
        layer.v.copy_(torch.as_tensor(v))


@pytest.mark.parametrize(
    ("start", "log_c", "applied"),
    [(0.0, 1.5, False), (0.0, -1.5, False), (2.0, -1.5, True), (0.0, 0.5, True)],
)
def test_p4_merge_guard_judges_the_log_det_after_the_merge(start, log_c, applied):
    layer = _p4(start, BOUNDS)
    _set_perturbation(layer, start, math.exp(log_c))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    assert layer.merge() is applied
    if applied:
        assert float(layer.logabsdet) == pytest.approx(start + log_c, abs=1e-14)
        assert layer.counters["merges"] == 1
    else:
        assert layer.counters["refusals"] == 1
        for k, v in layer.state_dict().items():
            assert torch.equal(v, state[k]), k  # state and perturbation kept


def test_p4_merge_sign_flips_exactly_when_c_is_negative():
    layer = _p4(0.0, Guard.off())
    _set_perturbation(layer, 0.0, -2.0)
    assert layer.merge()
    assert int(layer.sign) == -1
    assert float(layer.logabsdet) == pytest.approx(math.log(2.0), abs=1e-15)
    _set_perturbation(layer, 0.0, 0.5)  # X = diag(−½, 1, 1): c = 1 + (−½)(−½) = 1.25 > 0
    assert layer.merge()
    assert float(layer.logabsdet) == pytest.approx(math.log(2.5), abs=1e-15)
    assert int(layer.sign) == -1
