"""Shared fixtures for the unit tests."""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator

import pytest
import torch

from invlin.nn import p4_ops

SEED_ENV = "INVLIN_TEST_SEED"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--invlin-seed",
        type=int,
        default=int(os.environ.get(SEED_ENV, "0")),
        help=f"base seed of torch's global generator in each test (default ${SEED_ENV} or 0)",
    )
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the tests marked slow (minutes each; `nox -s slow` runs only them)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips the tests marked ``slow`` unless ``--run-slow`` is given, with the reason shown, so
    the default run stays within minutes; CI runs them in ``nox -s slow``."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (or nox -s slow)")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("--invlin-seed")
    return f"invlin: torch's global generator seeded in each test from --invlin-seed={seed}"


@pytest.fixture(autouse=True)
def _seed_torch(request: pytest.FixtureRequest) -> None:
    """Seeds torch's global generator from the base seed and the test's id, so every test draws
    the same numbers on every run (torch otherwise seeds itself differently in each process) and a
    failure reproduces with the seed printed in the header; running with other seeds
    (``--invlin-seed N``) searches for draws a test cannot handle."""
    base = request.config.getoption("--invlin-seed")
    torch.manual_seed(zlib.crc32(f"{base}:{request.node.nodeid}".encode()))


@pytest.fixture(params=["host", "device"])
def scalar_form(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a P4InvLinear test twice: with the CPU's host-float scalars and product cache
    (``"host"``), and with the form used off the CPU — 0-dim tensor scalars, no cache, one
    gathered transfer per merge — forced on the CPU (``"device"``, through the public
    :func:`~invlin.nn.p4_ops.device_form`), so that code path is exercised without a GPU."""
    forced = p4_ops.device_form() if request.param == "device" else contextlib.nullcontext()
    with forced:
        yield request.param
