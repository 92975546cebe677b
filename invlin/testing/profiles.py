"""Hypothesis settings profiles (dev, ci, thorough) and the sizes each lets the strategies draw.

A profile fixes the example count *and* the problem sizes (largest dimension n, longest update
path), so tests never hard-code either. Choose one with pytest's ``--hypothesis-profile NAME``,
the environment variable ``INVLIN_PROFILE`` or, in code, :func:`load_profile`; without either,
``ci`` is used when the ``CI`` environment variable is set and ``dev`` otherwise. The variables
``INVLIN_MAX_N`` and ``INVLIN_MAX_UPDATES`` override the sizes of whichever profile is active.

``ci`` is built on top of Hypothesis's own ``ci`` profile (derandomised, no deadline, no example
database), which Hypothesis loads by itself when ``CI`` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings

__all__ = [
    "PROFILES",
    "Profile",
    "active_profile",
    "load_profile",
    "max_dimension",
    "max_updates",
    "register_profiles",
]

ENV_PROFILE = "INVLIN_PROFILE"
ENV_MAX_N = "INVLIN_MAX_N"
ENV_MAX_UPDATES = "INVLIN_MAX_UPDATES"


@dataclass(frozen=True)
class Profile:
    """Example count and problem sizes of one settings profile.

    ``targeting``: whether Hypothesis's target phase runs, so that ``target()`` calls in the
    properties steer the search toward high condition numbers and large error ratios.
    """

    name: str
    max_examples: int
    max_n: int
    max_updates: int
    derandomize: bool
    targeting: bool


#: The profiles; ``thorough`` runs 10× the examples of ``ci`` on larger sizes.
PROFILES: dict[str, Profile] = {
    "dev": Profile(
        "dev", max_examples=20, max_n=6, max_updates=12, derandomize=False, targeting=False
    ),
    "ci": Profile(
        "ci", max_examples=150, max_n=12, max_updates=24, derandomize=True, targeting=False
    ),
    "thorough": Profile(
        "thorough", max_examples=1500, max_n=24, max_updates=48, derandomize=False, targeting=True
    ),
}

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
    """Register the profiles and load ``name`` (default: ``$INVLIN_PROFILE``, else ci/dev)."""
    if name is None:
        name = os.environ.get(ENV_PROFILE) or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    global _active
    register_profiles()
    settings.load_profile(name)
    _active = name
    return PROFILES[name]


def active_profile() -> Profile:
    """The invlin profile in force: Hypothesis's current one if it is ours, else the last
    loaded by :func:`load_profile`, else the default choice (``$INVLIN_PROFILE``, ci, dev)."""
    current = getattr(settings, "get_current_profile_name", lambda: None)()
    if current in PROFILES:
        return PROFILES[current]
    if _active is not None:
        return PROFILES[_active]
    name = os.environ.get(ENV_PROFILE) or ("ci" if os.environ.get("CI") else "dev")
    return PROFILES.get(name, PROFILES["dev"])


def _env_int(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{var} must be a positive integer, got {raw!r}")
    return value


def max_dimension() -> int:
    """Largest n the strategies draw: ``$INVLIN_MAX_N`` or the active profile's ``max_n``."""
    return _env_int(ENV_MAX_N, active_profile().max_n)


def max_updates() -> int:
    """Longest update path: ``$INVLIN_MAX_UPDATES`` or the active profile's ``max_updates``."""
    return _env_int(ENV_MAX_UPDATES, active_profile().max_updates)
