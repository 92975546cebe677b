"""Hypothesis settings profiles (dev, ci, thorough) and the sizes each lets the strategies draw.

The profiles themselves (example counts, sizes) are defined in :mod:`invlin.search_profiles`;
this module registers them with Hypothesis and answers which one is in force. A profile fixes
the example count *and* the problem sizes (largest dimension n, longest update path), so tests
never hard-code either. Choose one with pytest's ``--hypothesis-profile NAME``, the environment
variable ``INVLIN_PROFILE`` or, in code, :func:`load_profile`; without either, ``ci`` is used
when the ``CI`` environment variable is set and ``dev`` otherwise
(:func:`~invlin.search_profiles.suite_default`). The variables ``INVLIN_MAX_N`` and
``INVLIN_MAX_UPDATES`` override the sizes of whichever profile is active.

``ci`` is built on top of Hypothesis's own ``ci`` profile (derandomised, no deadline, no example
database), which Hypothesis loads by itself when ``CI`` is set.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

from invlin._validation import positive_int
from invlin.search_profiles import PROFILES, Profile, choose_profile, suite_default

__all__ = [
    "PROFILES",
    "Profile",
    "active_profile",
    "load_profile",
    "max_dimension",
    "max_updates",
    "register_profiles",
]

ENV_MAX_N = "INVLIN_MAX_N"
ENV_MAX_UPDATES = "INVLIN_MAX_UPDATES"

_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink, Phase.explain)
_active: str | None = None


def _parent(name: str) -> settings:
    try:
        return settings.get_profile(name)
    except Exception:  # older Hypothesis without a built-in profile of that name
        return settings.get_profile("default")


def register_profiles() -> None:
    """Register ``dev``, ``ci`` and ``thorough`` with Hypothesis (idempotent)."""
    for p in PROFILES.values():
        phases = (*_PHASES[:3], Phase.target, *_PHASES[3:]) if p.targeting else _PHASES
        parent = _parent("ci") if p.name == "ci" else _parent("default")
        extra = {"database": None, "print_blob": True} if p.derandomize else {}
        settings.register_profile(
            p.name,
            parent,
            max_examples=p.max_examples,
            derandomize=p.derandomize,
            deadline=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow],
            **extra,
        )


def load_profile(name: str | None = None) -> Profile:
    """Register the profiles and load ``name`` (default: ``$INVLIN_PROFILE``, else ci/dev).

    Raises ValueError for an unknown ``name`` or ``$INVLIN_PROFILE``, naming the valid names.
    """
    name = choose_profile(name, default=suite_default())
    global _active
    register_profiles()
    settings.load_profile(name)
    _active = name
    return PROFILES[name]


def active_profile() -> Profile:
    """The invlin profile in force: Hypothesis's current one if it is ours, else the last
    loaded by :func:`load_profile`, else the default choice (``$INVLIN_PROFILE``, ci, dev; an
    unknown ``$INVLIN_PROFILE`` is a ValueError)."""
    current = getattr(settings, "get_current_profile_name", lambda: None)()
    if current in PROFILES:
        return PROFILES[current]
    if _active is not None:
        return PROFILES[_active]
    return PROFILES[choose_profile(default=suite_default())]


def _env_int(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return default
    try:
        value: object = int(raw)
    except ValueError:
        value = raw  # positive_int then names the text it could not read
    return positive_int(value, f"${var}")


def max_dimension() -> int:
    """Largest n the strategies draw: ``$INVLIN_MAX_N`` or the active profile's ``max_n``."""
    return _env_int(ENV_MAX_N, active_profile().max_n)


def max_updates() -> int:
    """Longest update path: ``$INVLIN_MAX_UPDATES`` or the active profile's ``max_updates``."""
    return _env_int(ENV_MAX_UPDATES, active_profile().max_updates)
