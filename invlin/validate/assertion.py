"""``check``: run the validator on one layer factory and fail like an ``assert`` would."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from invlin.validate.render import render_text
from invlin.validate.results import Conformance, LayerReport

__all__ = ["check"]

_PROFILES = ("dev", "ci", "thorough")


def _profile(profile: str | None) -> str:
    if profile is None:
        env = os.environ.get("INVLIN_PROFILE", "")
        return env if env in _PROFILES else "ci"
    if profile not in _PROFILES:
        raise ValueError(f"profile must be one of {_PROFILES}, got {profile!r}")
    return profile


def check(layer_factory: Callable[..., object] | str, *, features: int = 4,
          profile: str | None = None, dtypes: Sequence[str] = ("float64", "float32"),
          devices: Sequence[str] | None = None, checks: Sequence[str] | None = None,
          name: str | None = None) -> LayerReport:
    """Validate the layer ``layer_factory(features=features)`` builds; raise on any failure.

    For other projects' test suites::

        def test_my_layer_conforms():
            invlin.validate.check(MyCoupling, features=6)

    ``layer_factory`` is a callable (or a TARGET string ``"pkg.mod:factory"`` /
    ``"file.py:factory"``); the layer it returns may follow any supported library's
    convention. ``profile`` (``dev``, ``ci``, ``thorough``; default ``$INVLIN_PROFILE`` or
    ``ci``) sets how hard Hypothesis searches. Returns the :class:`LayerReport` when every
    check passes or is skipped; otherwise raises ``AssertionError`` whose message is the
    conformance table followed by each failure's message, minimal failing example,
    reproduction snippet and exception.
    """
    from invlin.validate.runner import validate

    target = ""
    if isinstance(layer_factory, str):
        from invlin.validate.target import load_target

        target, layer_factory = layer_factory, load_target(layer_factory)
    if not callable(layer_factory):
        raise ValueError(f"layer_factory must be callable or a TARGET string, got "
                         f"{type(layer_factory).__name__}")
    kw: dict[str, Any] = {"features": features, "dtypes": tuple(dtypes),
                          "profile": _profile(profile), "checks": checks, "name": name,
                          "target": target}
    if devices is not None:
        kw["devices"] = tuple(devices)
    report = validate(layer_factory, **kw)
    if not report.passed:
        text = render_text(Conformance(layers=[report]), title="invlin.validate.check")
        raise AssertionError(f"layer {report.name!r} does not conform\n{text}")
    return report
