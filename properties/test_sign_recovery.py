"""Theme 4 — recovery after determinant sign changes (the P4Inv paper's claim, checked).

Paths that change the sign of det (factors c < 0 — single sign flips and crossings of the
singular set along a line, down to a distance ``gap`` where κ reaches the dtype's limit, with
crossing factors at the default guard threshold |c| = e⁻⁶ from both sides), under the default
:class:`Guard` (|c| ≤ e⁻⁶ is refused):

* the tracked sign equals the oracle's after every applied update (NumPy reference and torch
  layer) whose sign the held inverse determines (its drift plus rounding in c below |c|, see
  theme 2; the statistics show how many paths reach an undetermined update);
* once the path has left the ill-conditioned region (it ends at |1 − t| ≥ 1, κ back near the
  start's), at most K = ⌈log₂ log₂(1/ε)⌉ actions (6 in float64, 5 in float32) of the policy
  "Newton–Schulz step on the left residual when ‖I − XA‖₁ < ½, refresh otherwise" bring the
  tracked inverse within the plain engine allowance 30·(1 + k) of the oracle — ½^(2^K) < ε — and
  leave the sign right and log|det| within the path allowance (a hyperpower correction does not
  touch log|det|: an error committed in log|c| near the singular set is permanent until a
  refresh, which the path allowance accounts for). The same holds for the torch layer driven by
  its own ``check_drift`` (monitor threshold 30/(10√n), see theme 3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from _tracking import oracle_path, run_path, sign_determined, steer
from hypothesis import event, given
from hypothesis import strategies as st

from invlin.nn.monitor import DriftMonitor
from invlin.reference.rank_one import Guard
from invlin.testing import (
    THRESHOLD,
    ToleranceError,
    allowed_ratio,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    eps,
    inverse_ratio,
)
from invlin.testing.reproduce import reproducible
from invlin.testing.strategies import crossing_paths, update_paths

SIGN_CHANGING = update_paths(kinds=("sign_flip", "crossing"))

REPRO = """
from invlin.reference import Guard, TrackedMatrix
from invlin.oracle import exact_path, evaluate
t = TrackedMatrix(case.a0, dtype=case.dtype)  # default guard
applied = [(u, v) for u, v in case.updates() if t.update(u, v, on_refuse="skip").applied]
truth = evaluate(exact_path(case.a0, applied))
print(t.sign, truth.sign)
"""


def budget(dtype: str) -> int:
    """K = ⌈log₂ log₂(1/ε)⌉ Newton–Schulz steps take a residual below ½ under ε."""
    return math.ceil(math.log2(-math.log2(eps(dtype))))


@given(case=SIGN_CHANGING, impl=st.sampled_from(("numpy", "torch", "torch64")))
def test_sign_always_right_on_sign_changing_paths(case, impl):
    track = run_path(case, impl, guard=Guard())
    truth = oracle_path(case.a0, track.applied)
    determined = sign_determined(track, truth)
    event(
        "sign determined along the whole path"
        if determined > len(track.applied)
        else "sign undetermined from some update on (drift ≥ |c|)"
    )
    with reproducible(REPRO, case=case):
        for got, want in zip(track.signs[:determined], truth.signs[:determined], strict=True):
            assert_sign(out=got, expected=want)
    steer("max kappa", max(truth.kappas))


def _recover(t, k_max: int) -> list[str]:
    actions = []
    for _ in range(k_max):
        r = float(np.linalg.norm(np.eye(t.n) - t.inverse.astype(np.float64) @ t.a, 1))
        if r < 0.5:
            t.correct(order=2, side="left")
            actions.append("correct")
        else:
            t.refresh()
            actions.append("refresh")
    return actions


def _check_recovered(track, truth, case, actions: list[str]) -> None:
    """Inverse within 30·(1 + k) of the oracle, sign exact, log|det| within the path allowance;
    failures name the recovery ``actions`` taken."""
    try:
        _compare_recovered(track, truth, case)
    except AssertionError as exc:
        raise ToleranceError(f"after recovery actions {actions}: {exc}") from exc


def _compare_recovered(track, truth, case) -> None:
    k = len(track.applied)
    allow = truth.allowance()
    owner = track.owner
    if isinstance(owner, torch.nn.Module):
        x, sign, logdet = owner.weight_inverse.numpy(), int(owner.sign), float(owner.logabsdet)
    else:
        x, sign, logdet = owner.inverse, owner.sign, owner.logabsdet
    a = truth.matrices[-1]
    assert_inverse(a, out=x, dtype=track.dtype, updates=k)
    assert_sign(out=sign, expected=truth.signs[-1])
    assert_logabsdet(
        out=logdet,
        expected=truth.logdets[-1],
        n=case.n,
        kappa=truth.kappas[-1],
        dtype=track.dtype,
        threshold=allow.logabsdet[-1],
    )


@given(case=crossing_paths(cross=True))
def test_inverse_recovers_within_k_corrections_after_crossing(case):
    track = run_path(case, "numpy", guard=Guard())
    truth = oracle_path(case.a0, track.applied)
    before = inverse_ratio(truth.matrices[-1], track.inverses[-1], dtype=track.dtype).value
    actions = _recover(track.owner, budget(case.dtype))
    with reproducible(
        REPRO + "# then: _recover(t, K) of properties/test_sign_recovery.py", case=case
    ):
        _check_recovered(track, truth, case, actions)
    steer("ratio before recovery / allowed", before / allowed_ratio(len(track.applied)))


@given(case=crossing_paths(cross=True), torch64=st.booleans())
def test_layer_recovers_with_check_drift_after_crossing(case, torch64):
    n = case.n
    track = run_path(case, "torch64" if torch64 else "torch", guard=Guard())
    truth = oracle_path(case.a0, track.applied)
    layer = track.owner
    layer.monitor = DriftMonitor(max_ratio=THRESHOLD / (10 * math.sqrt(n)), probes=8)
    layer.generator = torch.Generator().manual_seed(0)
    actions = []
    for _ in range(budget(track.dtype)):
        actions.append(layer.check_drift())
        if actions[-1] == "none":
            break
    with reproducible(
        "# torch P4InvLinear (guard Guard()) over case.updates(), then check_drift() until 'none'",
        case=case,
    ):
        _check_recovered(track, truth, case, actions)
