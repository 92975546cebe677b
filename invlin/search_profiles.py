"""The search profiles (dev, ci, thorough) and the one reader of ``$INVLIN_PROFILE``.

A profile fixes how hard Hypothesis searches (example count, derandomisation, targeting) and
the problem sizes the strategies draw (largest n, longest update path). This module is their
one definition. It imports neither NumPy, torch nor Hypothesis, so that the pytest plugin
(:mod:`invlin.validate.plugin`) can load it at pytest's start-up; registering the profiles
with Hypothesis is :mod:`invlin.testing.profiles`.

Which profile runs: the one named explicitly (a command-line option or an argument), else
``$INVLIN_PROFILE``, else a default that depends on who asks — :data:`VALIDATOR_DEFAULT`
(``ci``) for the validator (``invlin validate``, ``invlin.validate.check``, the
``invlin_validate`` fixture), :func:`suite_default` (``dev``, or ``ci`` when ``$CI`` is set)
for invlin's own test and property suites. An unknown name is a ValueError naming where it
came from (the argument or the variable) and the valid names, never a silent fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "ENV_PROFILE",
    "PROFILES",
    "PROFILE_NAMES",
    "VALIDATOR_DEFAULT",
    "Profile",
    "choose_profile",
    "env_profile",
    "profile_named",
    "suite_default",
]

ENV_PROFILE = "INVLIN_PROFILE"


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


#: The profiles, cheapest first; ``thorough`` runs 10× the examples of ``ci`` on larger sizes.
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

#: The profile names in the order above (argparse ``choices``, help texts).
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)

#: The validator's profile when neither an option nor ``$INVLIN_PROFILE`` names one.
VALIDATOR_DEFAULT = "ci"


def _unknown(name: object, where: str) -> ValueError:
    return ValueError(f"{where} must be one of {', '.join(PROFILE_NAMES)}, got {name!r}")


def profile_named(name: str, what: str = "profile") -> Profile:
    """The :class:`Profile` called ``name``; ValueError naming ``what`` and the valid names."""
    if not isinstance(name, str) or name not in PROFILES:
        raise _unknown(name, what)
    return PROFILES[name]


def env_profile() -> str | None:
    """The profile name in ``$INVLIN_PROFILE``, ``None`` when it is unset or empty.

    Raises ValueError naming the variable and the valid names when it names no profile.
    """
    name = os.environ.get(ENV_PROFILE, "")
    if not name:
        return None
    return profile_named(name, f"${ENV_PROFILE}").name


def suite_default() -> str:
    """Default of invlin's own test and property suites: ``ci`` when ``$CI`` is set (as CI
    services do), else the quick ``dev``."""
    return "ci" if os.environ.get("CI") else "dev"


def choose_profile(name: str | None = None, *, default: str, what: str = "profile") -> str:
    """The profile to run: ``name`` when given, else ``$INVLIN_PROFILE``, else ``default``.

    ``what`` names ``name``'s origin in the error (an option such as ``--profile``).
    Raises ValueError for an unknown name, naming its origin and the valid names.
    """
    if name is not None:
        return profile_named(name, what).name
    return env_profile() or profile_named(default, "default").name
