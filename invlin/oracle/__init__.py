"""Arbitrary-precision oracle: exact update paths and certified inverses, signs and log|det|."""

from .evaluate import OracleResult, OracleSingularError, available_backends, evaluate
from .exact import ExactMatrix, exact_path

__all__ = [
    "ExactMatrix",
    "OracleResult",
    "OracleSingularError",
    "available_backends",
    "evaluate",
    "exact_path",
]
