"""Run one check so that nothing it meets escapes: skips, layer exceptions, wrong types."""

from __future__ import annotations

from invlin._errors import error_summary
from invlin.validate.checks.base import CheckContext, CheckFn, Make, skipped
from invlin.validate.protocol import Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import internal

__all__ = ["run_check"]


def run_check(name: str, fn: CheckFn, make: Make, ctx: CheckContext) -> CheckResult:
    """``fn(make, ctx)``; :class:`Unsupported` → ``skip`` with its reason, any other exception
    (building, moving or calling the layer outside a search) → ``error`` with ``"Type: message"``
    — labelled a validator bug when the validator's own code raised it (see
    :func:`~invlin.validate.search.internal`).
    """
    try:
        return fn(make, ctx)
    except Unsupported as exc:
        return skipped(name, ctx, str(exc) or "unsupported")
    except Exception as exc:
        if internal(exc):
            return CheckResult(
                check=name,
                dtype=ctx.dtype,
                device=ctx.device,
                status="error",
                message=f"validator bug (not the layer's fault): {error_summary(exc)}",
                exception=error_summary(exc),
            )
        return CheckResult(
            check=name,
            dtype=ctx.dtype,
            device=ctx.device,
            status="error",
            message=f"the layer raised {error_summary(exc)} outside the search",
            exception=error_summary(exc),
        )
