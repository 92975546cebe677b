"""Tests of the per-test seeding of torch's global generator (tests/conftest.py)."""

from __future__ import annotations

import zlib

import pytest
import torch


def test_each_test_starts_from_its_own_seed(request: pytest.FixtureRequest) -> None:
    base = request.config.getoption("--invlin-seed")
    drawn = torch.randn(4)
    torch.manual_seed(zlib.crc32(f"{base}:{request.node.nodeid}".encode()))
    assert torch.equal(drawn, torch.randn(4))
