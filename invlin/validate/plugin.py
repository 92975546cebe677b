"""pytest plugin: the ``invlin_validate`` fixture and the ``--invlin-profile`` option.

Installed with invlin (entry point ``pytest11``), so any project can write::

    def test_my_layer(invlin_validate):
        invlin_validate(make_my_layer, features=6)   # raises AssertionError on a failure

and choose the search effort with ``pytest --invlin-profile thorough`` (default
``$INVLIN_PROFILE`` or ``ci``; an unknown name in ``$INVLIN_PROFILE`` fails the test using
the fixture with a message naming the variable). Loading the plugin imports neither torch,
NumPy nor Hypothesis (:mod:`invlin.search_profiles` is free of all three): they are imported
when the fixture is first called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from invlin.search_profiles import PROFILE_NAMES, VALIDATOR_DEFAULT, choose_profile

__all__ = ["invlin_validate", "pytest_addoption"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("invlin", "invlin layer validation")
    group.addoption(
        "--invlin-profile",
        dest="invlin_profile",
        choices=PROFILE_NAMES,
        default=None,
        help="search effort of the invlin_validate fixture: dev, ci or thorough "
        "(default $INVLIN_PROFILE or ci)",
    )


def _profile(config: pytest.Config) -> str:
    chosen = config.getoption("invlin_profile", default=None)
    try:
        return choose_profile(chosen, default=VALIDATOR_DEFAULT, what="--invlin-profile")
    except ValueError as exc:  # a bad $INVLIN_PROFILE: say so, without a traceback
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def invlin_validate(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Validate a flow layer: ``invlin_validate(factory, features=4)`` in a test.

    ``factory(features=4)`` must build the layer (nflows, zuko, normflows, FrEIA, pyro or
    invlin). Returns its LayerReport; raises AssertionError listing each failure with its
    minimal case. Search effort: ``pytest --invlin-profile dev|ci|thorough`` (default ci).
    All arguments: ``pytest --fixtures -v``.

    It is :func:`invlin.validate.check` bound to the chosen profile. Call form::

        report = invlin_validate(
            factory,                      # a callable (class, function, closure) or a TARGET
                                          # string "pkg.mod:factory" / "file.py:factory"
            features=4,                   # factory(features=4) builds the layer
            dtypes=("float64", "float32"),
            devices=None,                 # default: cpu, plus cuda when available
            checks=None,                  # default: every check
            name=None,                    # the layer's name in the report
            allow_insufficient=False,     # True: a check that judged no case does not fail
            timeout=120.0,                # s per check (TARGET strings: run in a worker)
            memory_limit=None,            # MiB per worker (TARGET strings only)
        )

    It returns the layer's :class:`~invlin.validate.results.LayerReport` or raises
    ``AssertionError`` with the rendered failures. A callable runs in the test's own process,
    whose random generators and torch globals the validator restores after every check.
    """
    from invlin.validate.assertion import check

    profile = _profile(request.config)
    bound = functools.partial(check, profile=profile)
    bound.profile = profile  # type: ignore[attr-defined]
    return bound
