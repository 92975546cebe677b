"""``check``: run the validator on one layer factory and fail like an ``assert`` would."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from invlin.search_profiles import VALIDATOR_DEFAULT, choose_profile
from invlin.validate.render import render_text
from invlin.validate.results import Conformance, LayerReport
from invlin.validate.worker import DEFAULT_TIMEOUT, LAYER_TIMEOUT_FACTOR

__all__ = ["check"]


def _require_hypothesis() -> None:
    # The validator's modules import Hypothesis at their top (missing after a --no-deps install
    # or in an old environment): say what to install instead of a bare ModuleNotFoundError.
    try:
        import hypothesis  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "invlin.validate.check and the invlin_validate fixture need Hypothesis, which "
            "searches the cases; it is a dependency of invlin that this environment lacks "
            '(installed with --no-deps?): pip install "hypothesis>=6.100"'
        ) from exc


def check(
    layer_factory: Callable[..., object] | str,
    *,
    features: int = 4,
    profile: str | None = None,
    dtypes: Sequence[str] = ("float64", "float32"),
    devices: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    name: str | None = None,
    allow_insufficient: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    memory_limit: int | None = None,
    context_features: int = 0,
) -> LayerReport:
    """Validate the layer ``layer_factory(features=features)`` builds; raise on any failure.

    For other projects' test suites::

        def test_my_layer_conforms():
            invlin.validate.check(MyCoupling, features=6)

    ``layer_factory`` is a callable (or a TARGET string ``"pkg.mod:factory"`` /
    ``"file.py:factory"``); the layer it returns may follow any supported library's
    convention. ``profile`` (``dev``, ``ci``, ``thorough``; default ``$INVLIN_PROFILE`` or
    ``ci``; an unknown name, here or there, is a ValueError) sets how hard Hypothesis
    searches. Returns the :class:`LayerReport` when every check passes or is skipped (or is
    ``insufficient``, with ``allow_insufficient=True``); otherwise raises ``AssertionError``
    whose message is the conformance table followed by each failure's message, minimal failing
    example, reproduction snippet and exception.

    Where it runs: a callable (a class, a function, a closure) is validated in this process,
    which the validator leaves as it found it — torch's, NumPy's and Python's random
    generators, the default dtype, grad mode, thread count and the other globals of
    :mod:`~invlin.validate.isolation` are restored after every check, and a layer that changed
    one fails ``global_state``. A TARGET string is validated in a worker process as
    ``invlin validate`` does it, where ``timeout`` (seconds per check, ``None``: none; the
    layer gets five times that in all) and ``memory_limit`` (MiB) apply and a layer that
    crashes or hangs is an ``error``; neither limit can be enforced in this process.

    ``context_features`` M > 0 checks a conditional layer: the factory is called as
    ``layer_factory(features=N, context_features=M)`` and the checks run with contexts (see
    :mod:`invlin.validate.conditioning`; a factory without that argument is a ValueError).
    """
    _require_hypothesis()
    from invlin.validate.runner import validate

    if not isinstance(layer_factory, str) and not callable(layer_factory):
        raise ValueError(
            f"layer_factory must be callable or a TARGET string, got {type(layer_factory).__name__}"
        )
    kw: dict[str, Any] = {
        "features": features,
        "dtypes": tuple(dtypes),
        "profile": choose_profile(profile, default=VALIDATOR_DEFAULT),
        "checks": checks,
    }
    if context_features:
        kw["context_features"] = context_features
    if isinstance(layer_factory, str):
        from invlin.validate.worker import Limits, run_isolated

        per_check = timeout or None
        limits = Limits(
            timeout=per_check,
            memory_mb=memory_limit,
            layer_timeout=None if per_check is None else per_check * LAYER_TIMEOUT_FACTOR,
        )
        kw["checks"] = list(checks) if checks else None
        kw["devices"] = list(devices) if devices is not None else None
        kw["dtypes"] = list(dtypes)
        report = run_isolated(
            targets=[layer_factory], options=kw, limits=limits, name=name
        ).reports[0]
    else:
        if devices is not None:
            kw["devices"] = tuple(devices)
        report = validate(layer_factory, name=name, **kw)
    if not report.ok(allow_insufficient=allow_insufficient):
        text = render_text(
            Conformance(layers=[report], meta={"allow_insufficient": allow_insufficient}),
            title="invlin.validate.check",
        )
        raise AssertionError(f"layer {report.name!r} does not conform\n{text}")
    return report
