"""pytest setup of the property suites: the invlin Hypothesis profile and CUDA availability."""

from __future__ import annotations

import pytest
import torch

from invlin.testing.profiles import PROFILES, active_profile, load_profile, register_profiles

register_profiles()


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("hypothesis_profile", default=None)
    if name is None or name in PROFILES:
        try:
            load_profile(name)  # None: $INVLIN_PROFILE, else ci under CI=..., else dev
        except ValueError as exc:  # a bad $INVLIN_PROFILE: a usage error, not INTERNALERROR
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    from invlin.testing.profiles import max_dimension, max_updates

    p = active_profile()
    return (
        f"invlin profile: {p.name} (max_examples={p.max_examples}, max_n={max_dimension()}, "
        f"max_updates={max_updates()}, targeting={p.targeting}); "
        f"cuda: {torch.cuda.is_available()}"
    )
