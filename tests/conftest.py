"""Shared fixtures for the unit tests."""

from __future__ import annotations

import pytest

from invlin.nn import p4_ops


@pytest.fixture(params=["host", "device"])
def scalar_form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a P4InvLinear test twice: with the CPU's host-float scalars and product cache
    (``"host"``), and with the form used off the CPU — 0-dim tensor scalars, no cache, one
    gathered transfer per merge — forced on the CPU (``"device"``), so that code path is
    exercised without a GPU."""
    if request.param == "device":
        monkeypatch.setattr(p4_ops, "_host", lambda t: False)
    return request.param
