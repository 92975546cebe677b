"""Tolerance engine and assertion helpers shared by tests, reports and the validator."""

from invlin.testing.assertions import (
    ToleranceError,
    assert_forward,
    assert_inverse,
    assert_logabsdet,
    assert_sign,
    repro_snippet,
)
from invlin.testing.tolerance import (
    EPS,
    THRESHOLD,
    Ratio,
    allowed_ratio,
    dtype_name,
    eps,
    forward_ratio,
    inverse_ratio,
    kappa1,
    logdet_ratio,
    residual_ratio,
)

__all__ = [
    "EPS",
    "THRESHOLD",
    "Ratio",
    "ToleranceError",
    "allowed_ratio",
    "assert_forward",
    "assert_inverse",
    "assert_logabsdet",
    "assert_sign",
    "dtype_name",
    "eps",
    "forward_ratio",
    "inverse_ratio",
    "kappa1",
    "logdet_ratio",
    "repro_snippet",
    "residual_ratio",
]
