"""Which drift-report failures are expected: the demonstrations, declared once as a table.

A report FAIL is *expected* when a rule below says the failure is the method's limit that the
report exists to show, not a defect of the code: plain Sherman–Morrison (and the policies that are
plain Sherman–Morrison there) near the singular set, and a sign of det that no computation in the
tracked dtype can know. Every other FAIL is *unexpected*. A rule matches a failing track when its
policy, regime and failed checks are among those listed (an empty tuple: any) and its named
condition holds; the first matching rule names the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from invlin._dtypes import eps
from invlin.drift.failures import TrackFailure

__all__ = ["CONDITIONS", "EXPECTATIONS", "Expectation", "expected_by"]

_NEAR_SINGULAR = ("approach", "crossing")


def _sign_undetermined(failure: TrackFailure, dtype: str) -> bool:
    """κ₁·ε ≥ 1 at or before the first failure: A was within one rounding of the singular set."""
    return failure.kappa_peak * eps(dtype) >= 1.0


def _cleared_by_refresh(failure: TrackFailure, dtype: str) -> bool:
    """A refresh after the last failing checkpoint brought the track back (last one passes)."""
    return failure.cleared_by_refresh


#: Named extra conditions a rule may require, each a predicate of (failure, dtype).
CONDITIONS: dict[str, Callable[[TrackFailure, str], bool]] = {
    "": lambda failure, dtype: True,
    "sign undetermined": _sign_undetermined,
    "cleared by refresh": _cleared_by_refresh,
}


@dataclass(frozen=True)
class Expectation:
    """One declared demonstration.

    ``policies``, ``regimes``: where it applies (empty: any); ``checks``: the failed checks
    (of ``invlin.drift.results.CHECKS``) it covers — every check that failed at any checkpoint
    must be among them (empty: any); ``condition``: a key of :data:`CONDITIONS`; ``title``: the
    reason in a few words, ``reason``: why such a failure is the expected outcome.
    """

    name: str
    title: str
    reason: str
    policies: tuple[str, ...] = ()
    regimes: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    condition: str = ""

    def matches(self, policy: str, regime: str, dtype: str, failure: TrackFailure) -> bool:
        """Whether a track of ``policy`` in ``regime`` and ``dtype`` that failed as
        ``failure`` is this demonstration."""
        return (
            (not self.policies or policy in self.policies)
            and (not self.regimes or regime in self.regimes)
            and (not self.checks or set(failure.kinds) <= set(self.checks))
            and CONDITIONS[self.condition](failure, dtype)
        )


#: The demonstrations, in the order they are tried.
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation(
        "plain near the singular set",
        "plain Sherman–Morrison near the singular set: the demonstration",
        "Plain Sherman–Morrison has no guard and no correction. The rounding errors of the "
        "merges made while κ₁ is near its peak (about 1/depth) are amplified by κ₁ and stay in "
        "the tracked inverse, log|det| and sign after κ₁ has come back down. Showing this is "
        "the point of the approach and crossing regimes; the other policies exist to prevent it.",
        policies=("plain",),
        regimes=_NEAR_SINGULAR,
    ),
    Expectation(
        "det guard on the approach",
        "the det guard cannot see an approach at constant det",
        "The P4 merge guard watches the merge factor c and log|det|. The approach regime "
        "shrinks the smallest singular value while it grows the largest, so det stays put and "
        "the guard accepts every step while κ₁ grows by about 1/depth: the guarded track "
        "drifts like plain Sherman–Morrison. The drift monitor and the refresh are what catch "
        "it.",
        policies=("guarded",),
        regimes=("approach",),
    ),
    Expectation(
        "refresh clears it",
        "plain Sherman–Morrison until the next refresh, which clears it",
        "The refresh policy is plain Sherman–Morrison between LU refreshes, so near the "
        "singular set it drifts like plain until the next refresh recomputes X, sign and "
        "log|det|. Expected when a refresh after the last failing checkpoint brings the track "
        "back within the allowance (the last checkpoint passes).",
        policies=("refresh",),
        regimes=_NEAR_SINGULAR,
        condition="cleared by refresh",
    ),
    Expectation(
        "sign beyond the dtype",
        "sign of det not determined in this dtype (κ₁ ≥ 1/ε)",
        "Only the sign of det failed, and before it failed κ₁ reached 1/ε or more (ε: unit "
        "roundoff of the tracked dtype). A matrix lies at relative distance 1/κ from the "
        "nearest singular one (Gastinel–Kahan, in the 1-norm too), and one rounding of it "
        "changes it by up to ε relative: there the sign of det is not determined by any value "
        "the dtype can hold. A sign tracked through that point by the determinant lemma, or "
        "recomputed from the held matrix by LU, can stay wrong after κ₁ comes back down.",
        checks=("sign",),
        condition="sign undetermined",
    ),
)


def expected_by(policy: str, regime: str, dtype: str, failure: TrackFailure) -> Expectation | None:
    """The first rule of :data:`EXPECTATIONS` that declares this failure expected, or None
    (an unexpected failure)."""
    for rule in EXPECTATIONS:
        if rule.matches(policy, regime, dtype, failure):
            return rule
    return None
