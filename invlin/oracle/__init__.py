"""Arbitrary-precision oracle: exact update paths and certified inverses, signs and log|det|.

Work is bounded by a budget (:mod:`invlin.oracle.budget`; raise it per call with
``evaluate(..., budget=...)`` or for a program through ``invlin.oracle.budget.DEFAULT_BUDGET``).
"""

from .budget import OracleBudgetError
from .evaluate import OracleResult, OracleSingularError, available_backends, evaluate
from .exact import ExactMatrix, exact_path

__all__ = [
    "ExactMatrix",
    "OracleBudgetError",
    "OracleResult",
    "OracleSingularError",
    "available_backends",
    "evaluate",
    "exact_path",
]
