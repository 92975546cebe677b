"""Process-wide state a layer could change behind the validator's back: snapshot, restore, diff.

A layer under test runs inside the validator's process (the worker of ``invlin validate``, or the
caller's own process for :func:`invlin.validate.check`). Code that sets a global — the default
dtype, grad mode, the number of threads, anomaly detection — changes what every later check (and
every later layer, and the caller's own tests) computes. Around every check the validator takes a
:class:`Snapshot`, runs the check, and :func:`restore` puts every setting back and returns what
differed as :class:`Change` entries: a ``global_state`` finding.

The random generators (torch's CPU and, when initialised, CUDA generators, NumPy's legacy global
generator and Python's ``random``) are restored too but never reported: the validator itself
seeds them before it calls the factory, and layers draw from them while they are built.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from invlin.validate.results import CheckResult

__all__ = [
    "CHECK_NAME",
    "GRAD_CHANGES",
    "Change",
    "Findings",
    "Snapshot",
    "guarded",
    "one_thread",
    "restore",
    "snapshot",
    "watched",
]

#: Name of the finding a layer that changed process-wide state gets, one per dtype/device.
CHECK_NAME = "global_state"

#: Inference-mode guards created to undo a layer that entered inference mode and never left:
#: the mode is a stack of C++ guards, so the way back is a guard of the opposite mode, kept alive.
_GUARDS: list[Any] = []


@dataclass(frozen=True)
class _Setting:
    """One global: ``name`` (how a user reads it), a getter, and a setter (``None``: it can be
    set only once per process, so it is reported but not restored)."""

    name: str
    get: Callable[[], Any]
    put: Callable[[Any], None] | None


def _set_inference(mode: bool) -> None:
    _GUARDS.append(torch._C._InferenceMode(mode))  # no public setter exists


def _set_default_device(device: Any) -> None:
    # "cpu" is also what an unset default reads as; unsetting avoids a device mode on every call
    torch.set_default_device(None if torch.device(device).type == "cpu" else device)


def _settings() -> list[_Setting]:
    """Every global compared around a check (those this torch build can read)."""
    matmul = torch.backends.cuda.matmul
    cudnn = torch.backends.cudnn

    def attr(obj: Any, name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        return (lambda: getattr(obj, name)), (lambda v: setattr(obj, name, v))

    table: list[tuple[str, Callable[[], Any], Callable[[Any], None] | None]] = [
        ("torch.get_default_dtype()", torch.get_default_dtype, torch.set_default_dtype),
        ("torch.get_default_device()", torch.get_default_device, _set_default_device),
        ("torch.is_grad_enabled()", torch.is_grad_enabled, torch.set_grad_enabled),
        ("torch.is_inference_mode_enabled()", torch.is_inference_mode_enabled, _set_inference),
        (
            "torch.is_anomaly_enabled()",
            torch.is_anomaly_enabled,
            lambda v: torch.set_anomaly_enabled(v, torch.is_anomaly_check_nan_enabled()),
        ),
        (
            "torch.is_anomaly_check_nan_enabled()",
            torch.is_anomaly_check_nan_enabled,
            lambda v: torch.set_anomaly_enabled(torch.is_anomaly_enabled(), v),
        ),
        (
            "torch.are_deterministic_algorithms_enabled()",
            torch.are_deterministic_algorithms_enabled,
            lambda v: torch.use_deterministic_algorithms(
                v, warn_only=torch.is_deterministic_algorithms_warn_only_enabled()
            ),
        ),
        (
            "torch.is_deterministic_algorithms_warn_only_enabled()",
            torch.is_deterministic_algorithms_warn_only_enabled,
            lambda v: torch.use_deterministic_algorithms(
                torch.are_deterministic_algorithms_enabled(), warn_only=v
            ),
        ),
        ("torch.get_num_threads()", torch.get_num_threads, torch.set_num_threads),
        ("torch.get_num_interop_threads()", torch.get_num_interop_threads, None),
        (
            "torch.get_float32_matmul_precision()",
            torch.get_float32_matmul_precision,
            torch.set_float32_matmul_precision,
        ),
        (
            "torch.is_autocast_enabled('cpu')",
            lambda: torch.is_autocast_enabled("cpu"),
            lambda v: torch.set_autocast_enabled("cpu", v),
        ),
        (
            "torch.get_autocast_dtype('cpu')",
            lambda: torch.get_autocast_dtype("cpu"),
            lambda v: torch.set_autocast_dtype("cpu", v),
        ),
        ("torch.backends.cuda.matmul.allow_tf32", *attr(matmul, "allow_tf32")),
        ("torch.backends.cudnn.allow_tf32", *attr(cudnn, "allow_tf32")),
        ("torch.backends.cudnn.deterministic", *attr(cudnn, "deterministic")),
        ("torch.backends.cudnn.benchmark", *attr(cudnn, "benchmark")),
        ("numpy.geterr()", np.geterr, lambda v: np.seterr(**v)),
        ("os.getcwd()", os.getcwd, os.chdir),
        ("sys.getrecursionlimit()", sys.getrecursionlimit, sys.setrecursionlimit),
    ]
    out = []
    for name, get, put in table:
        try:
            get()
        except (AttributeError, RuntimeError, TypeError):  # not in this torch build
            continue
        out.append(_Setting(name, get, put))
    return out


_SETTINGS: list[_Setting] = []


def _all() -> list[_Setting]:
    if not _SETTINGS:
        _SETTINGS.extend(_settings())
    return _SETTINGS


@dataclass(frozen=True)
class Snapshot:
    """The value of every global of :func:`_settings` plus the random generators' states."""

    values: dict[str, Any]
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    numpy_rng: Any
    python_rng: Any


@dataclass(frozen=True)
class Change:
    """A global that differed after the check: ``name`` (a getter call), values as text,
    ``restored`` whether it could be put back."""

    name: str
    before: str
    after: str
    restored: bool = True

    @property
    def text(self) -> str:
        """``"torch.get_default_dtype() changed float32 → float64"``."""
        tail = "" if self.restored else " (cannot be restored in this process)"
        return f"{self.name} changed {self.before} → {self.after}{tail}"


def _show(value: Any) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.device):
        return str(value)
    return repr(value)


def snapshot() -> Snapshot:
    """Every global the validator guards, as it is now."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return Snapshot(
        values={s.name: s.get() for s in _all()},
        torch_rng=torch.get_rng_state(),
        cuda_rng=cuda,
        numpy_rng=np.random.get_state(),  # noqa: NPY002
        python_rng=random.getstate(),
    )


def restore(before: Snapshot) -> list[Change]:
    """Put back everything :func:`snapshot` saw; the settings that had changed, in order."""
    changes = []
    for s in _all():
        old, now = before.values[s.name], s.get()
        if now == old:
            continue
        restored = False
        if s.put is not None:
            try:
                s.put(old)
                restored = s.get() == old
            except (RuntimeError, ValueError, TypeError, OSError):
                restored = False
        changes.append(Change(s.name, _show(old), _show(now), restored))
    torch.set_rng_state(before.torch_rng)
    if before.cuda_rng is not None:
        torch.cuda.set_rng_state_all(before.cuda_rng)
    np.random.set_state(before.numpy_rng)  # noqa: NPY002
    random.setstate(before.python_rng)
    return changes


@contextmanager
def guarded(into: list[Change]) -> Iterator[None]:
    """Run the block, then restore every global and append what the block changed to
    ``into`` (also when the block raises)."""
    before = snapshot()
    try:
        yield
    finally:
        into.extend(restore(before))


class Findings:
    """The ``global_state`` finding of one dtype/device: which globals changed, during what.

    The finding is a failed :class:`CheckResult` named :data:`CHECK_NAME` whose message lists
    each change once with the checks it happened in; its ``example`` holds the same as data
    (``{"changes": [{"change": text, "during": [...]}]}``) so that a finding can be continued
    from an earlier one (:meth:`extend`).
    """

    def __init__(self, dtype: str, device: str) -> None:
        self.dtype, self.device = dtype, device
        self._during: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._during)

    def add(self, during: str, changes: list[Change]) -> None:
        """Record ``changes`` seen ``during`` (``"check round_trip"``, ``"the first build"``)."""
        for c in changes:
            places = self._during.setdefault(c.text, [])
            if during not in places:
                places.append(during)

    def extend(self, earlier: CheckResult | None) -> None:
        """Continue from ``earlier``, a finding this class made (another worker's)."""
        data = (earlier.example or {}) if earlier is not None else {}
        for item in data.get("changes", ()):
            places = self._during.setdefault(str(item["change"]), [])
            places += [p for p in item.get("during", ()) if p not in places]

    def result(self) -> CheckResult:
        """The finding as a failed result."""
        where = f"{self.dtype}/{self.device}"
        lines = [
            f"{change} during {', '.join(places)} ({where})"
            for change, places in self._during.items()
        ]
        message = (
            "the layer changed process-wide state (restored after each check, so later "
            "checks and layers ran as before): " + "; ".join(lines)
        )
        return CheckResult(
            check=CHECK_NAME,
            dtype=self.dtype,
            device=self.device,
            status="fail",
            message=message,
            example={
                "changes": [{"change": c, "during": list(p)} for c, p in self._during.items()]
            },
        )


#: Grad-mode changes the layer made inside one call, where the checks' own ``enable_grad`` /
#: ``no_grad`` blocks would undo them before :func:`guarded` looks (filled by :func:`watched`).
GRAD_CHANGES: list[Change] = []


def _watch(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, t: Any, *args: Any, **kwargs: Any) -> Any:
        before = torch.is_grad_enabled()
        try:
            return method(self, t, *args, **kwargs)
        finally:
            after = torch.is_grad_enabled()
            if after != before:
                torch.set_grad_enabled(before)
                GRAD_CHANGES.append(Change("torch.is_grad_enabled()", repr(before), repr(after)))

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


_WATCHED: dict[type, type] = {}


def watched(adapter: Any) -> Any:
    """``adapter`` with its ``forward`` and ``inverse`` calls watched for a grad-mode change
    (recorded in :data:`GRAD_CHANGES` and undone at once); the class is swapped in place for
    a subclass, so deep copies of the adapter are watched too."""
    cls = type(adapter)
    if cls in _WATCHED.values():
        return adapter
    if cls not in _WATCHED:
        _WATCHED[cls] = type(
            cls.__name__,
            (cls,),
            {
                "forward": _watch(cls.forward),
                "inverse": _watch(cls.inverse),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
            },
        )
    adapter.__class__ = _WATCHED[cls]
    return adapter


@contextmanager
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the checks push tiny tensors, for which thread hand-offs
    cost more than the work; the caller's thread count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
