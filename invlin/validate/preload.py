"""Imported once by the fork server of :mod:`invlin.validate.worker`, so that every worker it
forks starts warm: torch, NumPy, Hypothesis and the validator imported (``invlin.nn`` too,
which the adapters import and which pulls in ``torch._dynamo``: seconds on a busy machine),
Hypothesis's one-time registration of its global random generator done, and every object
frozen out of the garbage collector's reach (``gc.freeze``), so that a worker's collections
neither walk nor copy the server's heap.

It never raises: an import that fails here fails again in the worker, which reports it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib

__all__ = ["MODULES"]

#: Modules imported into the fork server (in this order).
MODULES: tuple[str, ...] = (
    "numpy",
    "torch",
    "hypothesis",
    "invlin.nn",
    "invlin.validate.runner",
    "invlin.validate.catalog",
    "invlin.validate.recorder",
)

for _name in MODULES:
    with contextlib.suppress(BaseException):  # the fork server must live on regardless
        importlib.import_module(_name)

with contextlib.suppress(BaseException):  # its first use runs gc.collect(): once, here
    from hypothesis.internal.entropy import deterministic_PRNG

    with deterministic_PRNG():
        pass

gc.freeze()
