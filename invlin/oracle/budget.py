"""The oracle's work budget: a cost estimate per evaluation, and the refusal of work beyond it.

One evaluation of an n×n matrix at ``bits`` of precision is a Gauss–Jordan sweep (mpmath) or an
arb LU (flint): about n³ multiply-adds, each costing more as the precision grows. The estimate
is counted in *units* of one multiply-add at up to :data:`UNIT_BITS` bits:

    cost(n, bits) = n³ · max(1, bits / UNIT_BITS)

(below about 256 bits a multiply-add costs about the same whatever the precision — interpreter
overhead for mpmath, one or a few limbs for flint; above, its cost grows about linearly in
``bits`` over the precisions the oracle uses, up to 8192 bits). One unit takes roughly 1 µs with
flint and 20 µs with mpmath on a current CPU core.

:func:`~invlin.oracle.evaluate` adds the cost of every evaluation it is about to run (two per
precision: the working one and the check) to what it has spent and refuses, before running it,
any step that would take the total beyond its ``budget`` (default :data:`DEFAULT_BUDGET`,
read at call time): :class:`OracleBudgetError` names the size, the precision, the estimate and
how to raise the limit.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_BUDGET",
    "UNIT_BITS",
    "OracleBudgetError",
    "evaluation_cost",
    "require_within",
    "resolve_budget",
]

#: Precision up to which one multiply-add counts as one unit.
UNIT_BITS = 256
#: The work ``evaluate`` accepts when no ``budget`` is given, in units: 10⁷, e.g. n = 128 at the
#: default target precision (about 2·128³·1 units, tens of seconds with mpmath, a few with
#: flint) but not n = 300 (at least 2·300³ = 5.4·10⁷ units). Programs may assign a new value.
DEFAULT_BUDGET = 10_000_000


class OracleBudgetError(RuntimeError):
    """An oracle evaluation was refused before it ran because its estimated work exceeds the
    budget; ``estimate`` and ``budget`` are in units of :func:`evaluation_cost`."""

    def __init__(self, message: str, estimate: float, budget: float) -> None:
        super().__init__(message)
        self.estimate = estimate
        self.budget = budget


def evaluation_cost(n: int, bits: int) -> float:
    """Estimated work of one evaluation of an n×n matrix at ``bits`` bits, in units:
    n³ · max(1, bits / :data:`UNIT_BITS`)."""
    return float(n) ** 3 * max(1.0, bits / UNIT_BITS)


def resolve_budget(budget: float | None) -> float:
    """The budget in units: ``budget`` itself (a positive number, ``math.inf`` for no limit),
    or :data:`DEFAULT_BUDGET` as it is now when ``budget`` is None. Raises ValueError naming
    ``budget`` otherwise."""
    if budget is None:
        budget = DEFAULT_BUDGET
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise ValueError(f"budget must be a positive number (math.inf: no limit), got {budget!r}")
    return float(budget)


def require_within(spent: float, n: int, steps: tuple[int, ...], budget: float) -> float:
    """``spent`` plus the cost of evaluating an n×n matrix at each precision in ``steps``;
    raises :class:`OracleBudgetError` when that exceeds ``budget`` (nothing has run yet)."""
    total = spent + sum(evaluation_cost(n, b) for b in steps)
    if total > budget:
        step = 10.0 ** (math.floor(math.log10(total)) - 1)
        need = math.ceil(total / step) * step  # rounded up to two significant digits
        raise OracleBudgetError(
            f"oracle evaluation of an n = {n} matrix at {'/'.join(map(str, steps))} bits refused: "
            f"estimated work {total:.3g} units (n³·max(1, bits/{UNIT_BITS}) per evaluation"
            + (f", {spent:.3g} already spent" if spent else "")
            + f") exceeds budget={budget:.3g}; pass budget={need:.3g} (or budget=math.inf) to "
            f"evaluate(), or raise invlin.oracle.budget.DEFAULT_BUDGET, to run it anyway",
            estimate=total,
            budget=budget,
        )
    return total
