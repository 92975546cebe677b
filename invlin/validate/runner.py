"""Run the checks on layer factories: one LayerReport per layer, a Conformance table for many."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from invlin.testing.profiles import PROFILES
from invlin.validate.checks import CHECKS, CheckContext, run_check
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckEvent, CheckResult, Conformance, LayerReport

__all__ = ["LIBRARY_DISTRIBUTIONS", "default_devices", "validate", "validate_all"]

#: Distributions whose versions the conformance metadata records when installed.
LIBRARY_DISTRIBUTIONS: tuple[str, ...] = (
    "invlin", "torch", "numpy", "hypothesis", "python-flint", "mpmath",
    "nflows", "zuko", "normflows", "FrEIA", "pyro-ppl",
)
_DTYPES = ("float64", "float32")


def default_devices() -> tuple[str, ...]:
    """``("cpu", "cuda")`` when CUDA is available, else ``("cpu",)``."""
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def _text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _factory_name(factory: Callable[..., object]) -> str:
    return getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None) or \
        type(factory).__name__


def _import_line(factory: Callable[..., object], target: str) -> str:
    """Source that binds ``factory`` in a reproduction script."""
    if target:
        return f"from invlin.validate.target import load_target\nfactory = load_target({target!r})"
    module = getattr(factory, "__module__", None)
    qual = getattr(factory, "__qualname__", "")
    if module and qual and "<" not in qual and module != "__main__":
        head, _, rest = qual.partition(".")
        line = f"from {module} import {head}"
        return f"{line}\nfactory = {head}{'.' + rest if rest else ''}"
    return f"factory = ...  # {_factory_name(factory)!r} cannot be imported: build it here"


def _setup(factory: Callable[..., object], target: str, *, features: int, seed: int,
           name: str | None, dtype: str, device: str) -> str:
    return "\n".join([
        "import numpy as np",
        "import torch",
        "from invlin.validate.adapters import adapt",
        _import_line(factory, target),
        f"torch.manual_seed({seed}); np.random.seed({seed})",
        f"adapter = adapt(factory(features={features}), {features}, name={name!r})",
        f"adapter.to(dtype=torch.{dtype}, device={device!r})",
    ])


def _seeded(factory: Callable[..., object], features: int, seed: int) -> object:
    """``factory(features=features)`` after ``torch.manual_seed(seed)`` — and NumPy's and
    Python's global generators seeded too (FrEIA draws permutations with NumPy), their states
    restored afterwards so the caller's random streams are untouched."""
    # The legacy global generator is the one third-party layers draw from: seed it on purpose.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        random.seed(seed)
        return factory(features=features)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the checks push tiny tensors, for which thread hand-offs
    cost more than the work (10× measured on a loaded 2-core machine); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_names(checks: Sequence[str] | None) -> list[str]:
    if checks is None:
        return list(CHECKS)
    if isinstance(checks, str):
        checks = [checks]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"checks must name entries of {list(CHECKS)}, got {unknown}")
    return list(dict.fromkeys(checks))


def _validate_args(features: Any, dtypes: Sequence[str], devices: Sequence[str],
                   profile: str) -> None:
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive integer, got {features!r}")
    bad = [d for d in dtypes if d not in _DTYPES]
    if bad or not dtypes:
        raise ValueError(f"dtypes must be a non-empty subset of {_DTYPES}, got {tuple(dtypes)}")
    if not devices:
        raise ValueError("devices must not be empty")
    for d in devices:
        try:
            torch.device(d)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"devices must be torch device names, got {d!r}") from exc
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")


def _available(device: str) -> str | None:
    """Why ``device`` cannot be used here, or ``None``."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if kind not in ("cpu", "cuda"):
        try:
            torch.empty(0, device=device)
        except Exception as exc:
            return f"device {device!r} is not usable here: {_text(exc)}"
    return None


def validate(
    factory: Callable[..., object],
    *,
    features: int = 4,
    dtypes: Sequence[str] = _DTYPES,
    devices: Sequence[str] | None = None,
    profile: str = "ci",
    checks: Sequence[str] | None = None,
    name: str | None = None,
    target: str = "",
    library: str | None = None,
    seed: int = 0,
    max_examples: int | None = None,
    progress: Callable[[CheckEvent], None] | None = None,
) -> LayerReport:
    """Run ``checks`` (default: all of :data:`~invlin.validate.checks.CHECKS`) on the layer
    ``factory(features=features)`` for every dtype and device.

    The factory is called afresh for every check, dtype and device, after
    ``torch.manual_seed(seed)`` (NumPy's and Python's generators are seeded too and restored
    after), and its layer wrapped by :func:`~invlin.validate.adapters.adapt`. A factory or
    adapter that fails the first time gives a report with ``error`` set and no results; a layer
    that raises inside a check gives that check ``status="error"``; nothing raises here except
    ``ValueError`` for bad arguments. ``devices`` defaults to :func:`default_devices`; a device
    not available here gives ``skip`` results. ``max_examples`` overrides the profile's count.
    ``progress``, when given, is called with a :class:`CheckEvent` before and after each check.
    """
    from invlin.validate.adapters import adapt

    devices = tuple(devices) if devices is not None else default_devices()
    dtypes = tuple(dtypes)
    _validate_args(features, dtypes, devices, profile)
    names = _check_names(checks)
    if not callable(factory):
        raise ValueError(f"factory must be callable, got {type(factory).__name__}")

    def make() -> Adapter:
        adapter = adapt(_seeded(factory, features, seed), features, name=name)
        if name is not None:  # an Adapter passes through adapt() with its own name
            adapter.name = name
        return adapter

    label = name or _factory_name(factory)
    try:
        first = make()
    except Exception as exc:
        return LayerReport(name=label, library=library or "unknown", target=target,
                           error=_text(exc))
    report = LayerReport(name=first.name, library=library or first.library, target=target)
    total = len(devices) * len(dtypes) * len(names)

    def tell(check: str, dtype: str, device: str, phase: str, status: str | None = None
             ) -> None:
        if progress is not None:
            progress(CheckEvent(layer=report.name, check=check, dtype=dtype, device=device,
                                phase=phase, index=len(report.results), total=total,
                                status=status))

    with _one_thread():
        for device in devices:
            reason = _available(device)
            for dtype in dtypes:
                ctx = CheckContext(dtype=dtype, device=device, profile=profile,
                                   max_examples=max_examples, seed=seed, features=features,
                                   setup=_setup(factory, target, features=features, seed=seed,
                                                name=name, dtype=dtype, device=device))
                for check in names:
                    tell(check, dtype, device, "start")
                    if reason is not None:
                        res = CheckResult(check=check, dtype=dtype, device=device,
                                          status="skip", message=reason)
                    else:
                        res = run_check(check, CHECKS[check], make, ctx)
                    report.results.append(res)
                    tell(check, dtype, device, "end", res.status)
    return report


def _entry(item: Any) -> tuple[Callable[..., object], dict[str, Any]]:
    """(factory, keyword overrides) of a catalogue entry: a callable, ``(name, factory)``, a
    mapping or an object with ``factory`` (and optionally ``name``, ``target``, ``library``,
    ``features``)."""
    if callable(item) and not hasattr(item, "factory"):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
        return item[1], {"name": str(item[0])}
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    factory = get("factory")
    if not callable(factory):
        raise ValueError(f"entries must be factories, (name, factory) pairs or have a callable "
                         f"'factory', got {item!r}")
    kw = {k: get(k) for k in ("name", "target", "library", "features") if get(k) is not None}
    return factory, kw


def _versions() -> dict[str, str]:
    out = {}
    for dist in LIBRARY_DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def validate_all(entries: Iterable[Any], **kw: Any) -> Conformance:
    """:func:`validate` every entry (see :func:`_entry` for the accepted forms; an entry's own
    name, target, library and features override ``kw``) into one :class:`Conformance` whose
    ``meta`` records the profile, features, dtypes, devices, seed, the date (UTC), Python and
    the versions of torch, NumPy, invlin, Hypothesis, the oracle's backends and every flow
    library installed."""
    result = Conformance()
    for item in entries:
        factory, own = _entry(item)
        result.layers.append(validate(factory, **{**kw, **own}))
    devices = kw.get("devices")
    result.meta = {
        "profile": kw.get("profile", "ci"),
        "features": kw.get("features", 4),
        "dtypes": list(kw.get("dtypes", _DTYPES)),
        "devices": list(devices) if devices is not None else list(default_devices()),
        "seed": kw.get("seed", 0),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "versions": _versions(),
        "checks": _check_names(kw.get("checks")),
    }
    return result
