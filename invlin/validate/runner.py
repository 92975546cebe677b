"""Run the checks on layer factories: one LayerReport per layer, a Conformance table for many."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from invlin._errors import error_summary
from invlin._validation import positive_int
from invlin.search_profiles import profile_named
from invlin.validate import isolation
from invlin.validate.checks import CHECKS, CONDITIONAL, KNOWN, CheckContext, run_check
from invlin.validate.conditioning import (
    accepts_context,
    bind_context,
    call_factory,
    context_features_value,
)
from invlin.validate.distribution import (
    DIST_CHECKS,
    DistributionAdapter,
    applicable,
    as_distribution,
    part_factory,
)
from invlin.validate.meta import LIBRARY_DISTRIBUTIONS, checks_run, run_meta
from invlin.validate.perturbation import Perturbation, move_off_init, reapply
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckEvent, CheckResult, Conformance, LayerReport
from invlin.validate.verdicts import reconcile

__all__ = [
    "LIBRARY_DISTRIBUTIONS",
    "Key",
    "contained",
    "default_devices",
    "explained",
    "validate",
    "validate_all",
]

#: A result's place in a report: (check, dtype, device).
Key = tuple[str, str, str]
_DTYPES = ("float64", "float32")


def default_devices() -> tuple[str, ...]:
    """``("cpu", "cuda")`` when CUDA is available, else ``("cpu",)``."""
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def explained(exc: BaseException) -> str:
    """:func:`~invlin._errors.error_summary`, saying so when the exception would have ended
    the process."""
    if isinstance(exc, SystemExit):
        return f"{error_summary(exc)} (the layer's code called sys.exit; the validator went on)"
    if isinstance(exc, KeyboardInterrupt):
        return f"{error_summary(exc)} (raised by the layer's code, not by Ctrl-C)"
    return error_summary(exc)


def contained(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a layer's code, is a result rather than the end of the run.

    Every exception is, ``SystemExit`` included (a layer that calls ``sys.exit`` must not end
    the validation, let alone with status 0) — except a ``KeyboardInterrupt`` in a process that
    handles SIGINT: that may be the user's Ctrl-C. The worker of ``invlin validate`` ignores
    SIGINT (its parent handles Ctrl-C), so there a ``KeyboardInterrupt`` came from the layer.
    """
    if isinstance(exc, KeyboardInterrupt):
        return signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    return True


def _factory_name(factory: Callable[..., object]) -> str:
    return (
        getattr(factory, "__qualname__", None)
        or getattr(factory, "__name__", None)
        or type(factory).__name__
    )


def _import_line(factory: Callable[..., object], target: str) -> str:
    """Source that binds ``factory`` in a reproduction script."""
    part = getattr(factory, "flow_part", None)
    if part is not None:  # an inner transform of a whole flow: the flow's factory, then its part
        return (
            f"{_import_line(part.flow, target)}\n"
            "from invlin.validate.distribution import part_factory\n"
            f"factory = part_factory(factory, {part.index})"
        )
    if target:
        return f"from invlin.validate.target import load_target\nfactory = load_target({target!r})"
    module = getattr(factory, "__module__", None)
    qual = getattr(factory, "__qualname__", "")
    if module and qual and "<" not in qual and module != "__main__":
        head, _, rest = qual.partition(".")
        line = f"from {module} import {head}"
        return f"{line}\nfactory = {head}{'.' + rest if rest else ''}"
    return f"factory = ...  # {_factory_name(factory)!r} cannot be imported: build it here"


def _setup(
    factory: Callable[..., object],
    target: str,
    *,
    features: int,
    seed: int,
    name: str | None,
    dtype: str,
    device: str,
    moved: Perturbation | None,
    context_features: int = 0,
) -> str:
    ctx_arg = f", context_features={context_features}" if context_features else ""
    lines = [
        "import numpy as np",
        "import torch",
        "from invlin.validate.adapters import adapt",
        _import_line(factory, target),
        f"torch.manual_seed({seed}); np.random.seed({seed})",
        f"adapter = adapt(factory(features={features}{ctx_arg}), {features}, name={name!r})",
    ]
    if context_features:
        lines += [
            "from invlin.validate.conditioning import bind_context",
            f"bind_context(adapter, {context_features}, seed={seed})  # the context of every call",
        ]
    if moved is not None and moved.scale > 0:
        lines += [
            "from invlin.validate.perturbation import perturb",
            f"perturb([adapter], {moved.seed}, scale={moved.scale!r})  # off its init",
        ]
    lines.append(f"adapter.to(dtype=torch.{dtype}, device={device!r})")
    return "\n".join(lines)


def _seeded(
    factory: Callable[..., object], features: int, seed: int, context_features: int = 0
) -> object:
    """``factory(features=features)`` after ``torch.manual_seed(seed)`` — and NumPy's and
    Python's global generators seeded too (FrEIA draws permutations with NumPy), their states
    restored afterwards; torch's is restored by the guard :func:`validate` puts around every
    build and check, so the caller's random streams are untouched."""
    # The legacy global generator is the one third-party layers draw from: seed it on purpose.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        random.seed(seed)
        return call_factory(factory, features, context_features)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def _check_names(checks: Sequence[str] | None, context_features: int = 0) -> list[str]:
    if checks is None:  # the conditional checks join the default run for a conditional layer
        return [*CHECKS, *(CONDITIONAL if context_features else ())]
    if isinstance(checks, str):
        checks = [checks]
    unknown = [c for c in checks if c not in KNOWN and c not in DIST_CHECKS]
    if unknown:
        raise ValueError(f"checks must name entries of {[*KNOWN, *DIST_CHECKS]}, got {unknown}")
    return list(dict.fromkeys(checks))


def _validate_args(
    features: Any, dtypes: Sequence[str], devices: Sequence[str], profile: str
) -> None:
    positive_int(features, "features")
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
    profile_named(profile)


def _available(device: str) -> str | None:
    """Why ``device`` cannot be used here, or ``None``."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if kind not in ("cpu", "cuda"):
        try:
            torch.empty(0, device=device)
        except Exception as exc:
            return f"device {device!r} is not usable here: {error_summary(exc)}"
    return None


def _check(check: str, make: Callable[[], Adapter], ctx: CheckContext) -> CheckResult:
    """:func:`run_check`, with the exceptions that would end the process as ``error``."""
    try:
        return run_check(check, KNOWN.get(check) or DIST_CHECKS[check], make, ctx)
    except BaseException as exc:
        if not contained(exc):
            raise
        return CheckResult(
            check=check,
            dtype=ctx.dtype,
            device=ctx.device,
            status="error",
            message=f"the layer raised {explained(exc)}",
            exception=error_summary(exc),
        )


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
    known: Mapping[Key, CheckResult] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    perturb: bool = True,
    context_features: int = 0,
    on_parts: Callable[[list[str]], None] | None = None,
) -> LayerReport:
    """Run ``checks`` (default: all of :data:`~invlin.validate.checks.CHECKS`; the opt-in
    :data:`~invlin.validate.checks.OPT_IN` ones only when named) on the layer
    ``factory(features=features)`` for every dtype and device.

    The factory is called afresh for every check, dtype and device, after
    ``torch.manual_seed(seed)`` (NumPy's and Python's generators are seeded too), and its layer
    wrapped by :func:`~invlin.validate.adapters.adapt`. A factory or adapter that fails the
    first time gives a report with ``error`` set and no results; a layer that raises inside a
    check (``SystemExit`` too, see :func:`contained`) gives that check ``status="error"``;
    nothing raises here except ``ValueError`` for bad arguments. ``devices`` defaults to
    :func:`default_devices`; a device not available here gives ``skip`` results.
    ``max_examples`` overrides the profile's count.

    Process-wide state is guarded (:mod:`~invlin.validate.isolation`): every check, and the
    first build, runs between a snapshot and its restoration, so the caller's random generators,
    default dtype, grad mode, thread count, ... are as they were when this returns; a layer
    that changed any of them gets a failed ``global_state`` result per dtype/device saying
    what changed during which check.

    ``context_features`` M > 0: the layer is conditional; the factory is called as
    ``factory(features=N, context_features=M)`` (ValueError when it takes no such argument)
    and every check runs with the bound context of :mod:`~invlin.validate.conditioning`
    (one N(0, I) context drawn from ``seed``, handed to every row); the ``context`` check
    judges per-row, broadcast and extreme contexts.

    ``perturb`` (default on): the first build's trainable parameters are moved off their
    initialisation by a seeded perturbation that keeps the layer valid
    (:func:`~invlin.validate.perturbation.move_off_init`), and every later build gets the same
    one, so zero- or identity-initialised layers are not trivially right; what was done (and
    whether the layer is still the identity map) is ``LayerReport.perturbation``.

    ``progress``, when given, is called with a :class:`CheckEvent` before and after each check.
    ``known`` maps (check, dtype, device) to results decided elsewhere (by a worker that was
    stopped, see :mod:`~invlin.validate.worker`): they are taken as they are, not run again.
    ``on_result``, when given, is called with every result as it is decided, and with the
    ``global_state`` finding of a dtype/device each time it grows.

    A factory that returns a distribution (a whole flow, see :mod:`invlin.validate.distribution`)
    gets the distribution checks instead — those named in ``checks``, or all when none is named
    — with its parameters left as built; when the selection has layer checks, ``on_parts`` is
    then called with the labels of its inner transforms (``"<name>.transforms[i]: Class"``),
    which the caller validates as layers (:func:`~invlin.validate.distribution.part_factory`).
    """
    from invlin.validate.adapters import adapt

    devices = tuple(devices) if devices is not None else default_devices()
    dtypes = tuple(dtypes)
    _validate_args(features, dtypes, devices, profile)
    names = _check_names(checks, context_features)
    if not callable(factory):
        raise ValueError(f"factory must be callable, got {type(factory).__name__}")
    context_features = context_features_value(context_features)
    if context_features and not accepts_context(factory):
        raise ValueError(
            f"factory {_factory_name(factory)!r} does not accept context_features (needed "
            f"for context_features={context_features}): give it a context_features parameter"
        )
    known = dict(known or {})

    moved: list[Perturbation] = []  # decided once, then reapplied to every build
    declined: list[str] = []  # why no perturbation could be decided (the layer raised)

    def build() -> Adapter:
        layer = _seeded(factory, features, seed, context_features)
        flow = as_distribution(layer, features, name=name, context_features=context_features)
        if flow is not None:  # a whole flow: distribution checks (its parts: see on_parts)
            return flow  # type: ignore[return-value]
        adapter = isolation.watched(adapt(layer, features, name=name))
        if context_features:
            bind_context(adapter, context_features, seed)
        if name is not None:  # an Adapter passes through adapt() with its own name
            adapter.name = name
        return adapter

    def make() -> Adapter:
        adapter = build()
        if moved:
            reapply(adapter, moved[0])
        return adapter

    def decide_perturbation() -> None:
        # Inside the first check (its guards and time limit): the screen runs the layer's
        # code, so a layer that hangs, exits or crashes does so where a check reports it.
        if not perturb or moved or declined:
            return
        opening = known.get((names[0], dtypes[0], devices[0]))
        if opening is not None and opening.status == "error":
            # a previous worker was stopped in the first check, where it was moving them
            declined.append(
                "parameters left as built: the worker that was moving them was "
                f"stopped ({opening.message})"
            )
            return
        try:
            moved.append(move_off_init(build(), seed))
        except BaseException as exc:
            if not contained(exc):
                raise
            declined.append(f"parameters left as built: moving them raised {explained(exc)}")

    def told(res: CheckResult) -> CheckResult:
        if on_result is not None:
            on_result(res)
        return res

    label = name or _factory_name(factory)
    built: list[isolation.Change] = []
    with isolation.one_thread():
        try:
            with isolation.guarded(built):
                first = make()
        except BaseException as exc:
            if not contained(exc):
                raise
            return LayerReport(
                name=label, library=library or "unknown", target=target, error=explained(exc)
            )
        report = LayerReport(name=first.name, library=library or first.library, target=target)
        is_flow = isinstance(first, DistributionAdapter)
        part_names = [c for c in names if c not in DIST_CHECKS]  # for a flow's inner transforms
        names = applicable(names, flow=is_flow)
        if is_flow:
            declined.append("a whole flow: its parameters are left as built")
        total, done = len(devices) * len(dtypes) * len(names), 0

        def tell(
            check: str, dtype: str, device: str, phase: str, status: str | None = None
        ) -> None:
            if progress is not None:
                progress(
                    CheckEvent(
                        layer=report.name,
                        check=check,
                        dtype=dtype,
                        device=device,
                        phase=phase,
                        index=done,
                        total=total,
                        status=status,
                    )
                )

        def context(dtype: str, device: str, **extra: Any) -> CheckContext:
            extra.setdefault("max_examples", max_examples)
            return CheckContext(
                dtype=dtype,
                device=device,
                profile=profile,
                seed=seed,
                features=features,
                context_features=context_features,
                flow_part=getattr(factory, "flow_part", None) is not None,
                setup=_setup(
                    factory,
                    target,
                    features=features,
                    seed=seed,
                    name=name,
                    dtype=dtype,
                    device=device,
                    moved=moved[0] if moved else None,
                    context_features=context_features,
                ),
                **extra,
            )

        for device in devices:
            reason = _available(device)
            for dtype in dtypes:
                findings = isolation.Findings(dtype, device)
                findings.extend(known.get((isolation.CHECK_NAME, dtype, device)))
                findings.add("the first build of the layer", built)
                built = []
                for check in names:
                    tell(check, dtype, device, "start")
                    if (check, dtype, device) in known:
                        res = known[(check, dtype, device)]
                    elif reason is not None:
                        res = told(
                            CheckResult(
                                check=check,
                                dtype=dtype,
                                device=device,
                                status="skip",
                                message=reason,
                            )
                        )
                    else:
                        changes: list[isolation.Change] = []
                        isolation.GRAD_CHANGES.clear()
                        with isolation.guarded(changes):
                            decide_perturbation()
                            res = told(_check(check, make, context(dtype, device)))
                        changes += isolation.GRAD_CHANGES
                        isolation.GRAD_CHANGES.clear()
                        if changes:
                            findings.add(f"check {check}", changes)
                            told(findings.result())
                    report.results.append(res)
                    done += 1
                    tell(check, dtype, device, "end", res.status)
                if findings:
                    report.results.append(findings.result())

        def rerun(check: str, dtype: str, device: str, case: np.ndarray) -> CheckResult:
            # The replay's own global-state changes were reported by the check's first run.
            with isolation.guarded([]):
                return _check(check, make, context(dtype, device, max_examples=1, replay=(case,)))

        reconcile(report, rerun, features=features)
        report.perturbation = moved[0].message if moved else (declined[0] if declined else None)
        if is_flow and on_parts is not None and part_names:
            try:
                with isolation.guarded([]):
                    parts = first.transforms()
            except BaseException as exc:
                if not contained(exc):
                    raise
                report.error = f"listing its inner transforms raised {explained(exc)}"
            else:
                on_parts([f"{report.name}.{p.label}" for p in parts])
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
        raise ValueError(
            f"entries must be factories, (name, factory) pairs or have a callable "
            f"'factory', got {item!r}"
        )
    kw = {k: get(k) for k in ("name", "target", "library", "features") if get(k) is not None}
    return factory, kw


def validate_all(entries: Iterable[Any], **kw: Any) -> Conformance:
    """:func:`validate` every entry (see :func:`_entry` for the accepted forms; an entry's own
    name, target, library and features override ``kw``) into one :class:`Conformance` whose
    ``meta`` records the profile, features, dtypes, devices, seed, the date (UTC), Python and
    the versions of torch, NumPy, invlin, Hypothesis, the oracle's backends and every flow
    library installed."""
    result = Conformance()
    for item in entries:
        factory, own = _entry(item)
        parts: list[str] = []
        result.layers.append(validate(factory, **{**kw, **own}, on_parts=parts.extend))
        for k, label in enumerate(parts):  # a whole flow: each inner transform as a layer
            result.layers.append(validate(part_factory(factory, k), **{**kw, **own, "name": label}))
    devices = kw.get("devices")
    result.meta = run_meta(
        profile=kw.get("profile", "ci"),
        features=kw.get("features", 4),
        dtypes=kw.get("dtypes", _DTYPES),
        devices=devices if devices is not None else default_devices(),
        seed=kw.get("seed", 0),
        checks=checks_run(
            _check_names(kw.get("checks"), kw.get("context_features", 0)), result.layers
        ),
    )
    return result
