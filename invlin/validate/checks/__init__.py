"""The conformance checks, by stable name: each is ``check(make, ctx) -> CheckResult``."""

from __future__ import annotations

from invlin.validate.checks.backprop import gradients
from invlin.validate.checks.base import CheckContext, CheckFn, Make
from invlin.validate.checks.finiteness import edges
from invlin.validate.checks.illcond import conditioning
from invlin.validate.checks.invertibility import invertibility
from invlin.validate.checks.logdet import logdet_autograd, logdet_consistency, logdet_oracle
from invlin.validate.checks.roundtrip import round_trip
from invlin.validate.checks.run import run_check
from invlin.validate.checks.shapes import batch_shape, dtype_device
from invlin.validate.checks.state import cache, modes

__all__ = ["CHECKS", "CheckContext", "CheckFn", "Make", "run_check"]

#: Every check by its stable name, in the order the conformance table lists them.
CHECKS: dict[str, CheckFn] = {
    "invertibility": invertibility,
    "round_trip": round_trip,
    "logdet_autograd": logdet_autograd,
    "logdet_oracle": logdet_oracle,
    "logdet_consistency": logdet_consistency,
    "batch_shape": batch_shape,
    "dtype_device": dtype_device,
    "modes": modes,
    "cache": cache,
    "edges": edges,
    "conditioning": conditioning,
    "gradients": gradients,
}
