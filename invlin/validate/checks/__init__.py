"""The conformance checks, by stable name: each is ``check(make, ctx) -> CheckResult``."""

from __future__ import annotations

from invlin.validate.checks.backprop import gradients
from invlin.validate.checks.base import CheckContext, CheckFn, Make
from invlin.validate.checks.compile import compiled
from invlin.validate.checks.composition import composed
from invlin.validate.checks.context import context
from invlin.validate.checks.finiteness import edges
from invlin.validate.checks.illcond import conditioning
from invlin.validate.checks.invertibility import invertibility
from invlin.validate.checks.logdet import logdet_autograd, logdet_consistency, logdet_oracle
from invlin.validate.checks.persistence import copies
from invlin.validate.checks.roundtrip import round_trip
from invlin.validate.checks.run import run_check
from invlin.validate.checks.shapes import batch_shape, dtype_device
from invlin.validate.checks.state import cache, modes

__all__ = [
    "CHECKS",
    "CONDITIONAL",
    "KNOWN",
    "OPT_IN",
    "CheckContext",
    "CheckFn",
    "Make",
    "run_check",
]

#: The default run's checks by their stable names, in the order the conformance table lists
#: them.
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
    "composition": composed,
    "persistence": copies,
}

#: Checks of conditional layers, in the default run only when ``context_features`` > 0 (and
#: ``skip`` on an unconditional layer when named).
CONDITIONAL: dict[str, CheckFn] = {
    "context": context,
}

#: Checks run only when named (``--check NAME``), never in the default run: ``compile``
#: compiles the layer (seconds per layer) and judges torch.compile rather than the layer alone.
OPT_IN: dict[str, CheckFn] = {
    "compile": compiled,
}

#: Every check that can be named: the default ones, the conditional ones, the opt-in ones.
KNOWN: dict[str, CheckFn] = {**CHECKS, **CONDITIONAL, **OPT_IN}
