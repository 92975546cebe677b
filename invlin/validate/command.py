"""``invlin validate``: run the conformance checks on a layer factory or a library's layers.

This process imports neither torch nor the layers: every layer is validated in a worker
process (:mod:`invlin.validate.worker`), so a layer that hangs, crashes, exits or changes
global state cannot take the run — or the layers validated after it — with it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from invlin.cli import SUMMARIES, positive_int
from invlin.search_profiles import PROFILE_NAMES, VALIDATOR_DEFAULT, choose_profile, profile_named
from invlin.validate.progress import Progress, ProgressLine
from invlin.validate.target import UsageError, split_target
from invlin.validate.worker import DEFAULT_TIMEOUT, LAYER_TIMEOUT_FACTOR

__all__ = ["register", "run_validation"]

PROFILES = PROFILE_NAMES
DTYPES = ("float64", "float32")
FORMATS = ("text", "markdown", "json")

DESCRIPTION = """\
Build a layer with FACTORY(features=N), wrap it in the adapter of its library (any registered
adapter plug-in: the libraries of --library, or a third party's through the entry-point group
invlin.adapters), move its parameters off their initialisation (seeded, reported) and run the
conformance checks with the tolerance engine: invertibility (a full-rank Jacobian), round trips
and log|det| against a float64 reference (the exact oracle for linear layers) on ordinary,
large, extreme and near-boundary inputs, batch shapes and every row of a 130-row batch
recomposed, dtype/device, train/eval and caches, domain edges, ill-conditioned weights,
parameter gradients against finite differences, composition with itself and its inverse
(log|det| additive, shapes, torch Transform event_dim / Compose / Cat / Stack), and copies
(state_dict into a fresh instance, torch.save/load, pickle, deepcopy, the inverse object t.inv).
A case that fails in one dtype is replayed in the other. Prints a conformance table.
torch.compile is judged only when asked: --check compile.

Whole flows: when FACTORY returns a distribution (zuko Flow, nflows Flow, normflows
NormalizingFlow, torch/pyro TransformedDistribution, or anything with log_prob and sample), the
checks dist_consistency (log_prob of samples equals the density along the sampling path),
dist_normalisation (the density integrates to 1: quadrature in 1-2 dimensions, importance
sampling elsewhere) and dist_samples (samples against the density on random 1-D projections,
DKWM bound; a correct flow fails less than once in 10^6 runs) run, and every transform inside
the flow is validated as a layer of its own.

Conditional layers (--context-features M): the factory is called as FACTORY(features=N,
context_features=M), every check runs with one N(0, I) context drawn from the seed for every
row, and the check "context" judges contexts per row, one broadcast context, extreme ones
(|c| up to 1e4), an inverse under another context, and a fresh instance; flows are judged at
drawn contexts.

Each layer runs in a worker process of its own: a layer that hangs (--timeout), allocates too
much (--memory-limit), crashes, calls sys.exit or changes process-wide state (default dtype,
grad mode, threads, ...) is reported as such, and the run goes on.

Statuses of a check (one per dtype/device):
  pass          the check judged its cases and every one was within the tolerance
  fail          a case broke the tolerance (ratio > allowed), or a contract was broken;
                "global_state": the layer changed process-wide state (restored afterwards)
  error         the layer raised, crashed the worker, or timed out in this check
  skip          the check does not apply to this layer (the reason is listed)
  insufficient  the check ran but could judge no case (e.g. every Jacobian singular): it
                proves nothing, so it fails the run unless --allow-insufficient

Exit status:
  0  every check passed or was skipped (and, with --allow-insufficient, insufficient)
  1  a check failed, errored or was insufficient, or a layer could not be imported, built,
     raised, crashed or timed out
  2  usage error: bad TARGET or option, a module that cannot be imported, an unknown or
     missing library or check, a CUDA device without CUDA
130 interrupted (Ctrl-C)
"""

EPILOG = """\
examples:
  invlin validate mypkg.flows:make_layer --features 8
  invlin validate path/to/layers.py:factory --format markdown
  invlin validate --library nflows --out reports/validate/nflows -j 2
  invlin validate layers.py:make --timeout 30 --memory-limit 2000
"""


def default_profile() -> str:
    """``$INVLIN_PROFILE`` when set, else ``ci``; a UsageError when it names no profile."""
    try:
        return choose_profile(default=VALIDATOR_DEFAULT)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def context_count(text: str) -> int:
    """argparse type: a number of context features, an integer ≥ 0 (0: unconditional)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """argparse type: a number of seconds ≥ 0 (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _libraries() -> str:
    """The ``--library`` names for the help, from the plug-in registry (nothing imported)."""
    from invlin.validate.registry import PluginError, names

    try:
        return ", ".join(names())
    except PluginError as exc:  # still print the help; running names the broken plug-in too
        return f"(none listed: {exc})"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand to the ``invlin`` parser."""
    p = sub.add_parser(
        "validate",
        help=SUMMARIES["validate"],
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="TARGET",
        help="'package.module:factory' or 'path/to/file.py:factory'; the factory is "
        "called as factory(features=N) and returns a layer (optional with "
        "--library)",
    )
    p.add_argument(
        "--features",
        type=positive_int,
        default=4,
        metavar="N",
        help="number of features passed to the factory (default 4)",
    )
    p.add_argument(
        "--context-features",
        type=context_count,
        default=0,
        metavar="M",
        help="validate conditional layers: the factory is called as factory(features=N, "
        "context_features=M) (it must accept that argument) and every check runs with a "
        "context drawn from the seed, one N(0, I) context for every row; the check 'context' "
        "judges per-row, broadcast and extreme contexts (|c| up to 1e4). With --library, the "
        "library's conditional layers are validated instead of its unconditional ones "
        "(default 0: unconditional)",
    )
    p.add_argument(
        "--library",
        action="append",
        default=None,
        metavar="NAME",
        help=f"also run the curated layers of a library: {_libraries()} (repeatable; "
        "adapter plug-ins of the entry-point group invlin.adapters add more)",
    )
    p.add_argument(
        "--dtype",
        action="append",
        default=None,
        choices=DTYPES,
        help="dtype to check in (repeatable; default float64 and float32)",
    )
    p.add_argument(
        "--device",
        action="append",
        default=None,
        metavar="DEVICE",
        help="torch device: cpu or cuda[:i] (repeatable; default cpu, plus cuda when available)",
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="search effort: dev, ci or thorough (default $INVLIN_PROFILE or ci)",
    )
    p.add_argument(
        "--check",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this check (repeatable; default: every check except the opt-in "
        "compile, which runs only when named: --check compile)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="what to print: text (default), markdown or json",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the folder DIR with conformance.md and conformance.json: created if "
        "missing, replaced atomically if invlin wrote it (it holds a .invlin-output marker), "
        "refused (exit 2, before any work) if it holds anything else",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="time limit of one check, and of importing or building a layer: past "
        "it the worker is stopped, the check is an error and the layer's other "
        f"checks go on in a fresh worker (default {DEFAULT_TIMEOUT:g}; 0: none)",
    )
    p.add_argument(
        "--layer-timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="time limit of one layer in all; its unrun checks are errors (default "
        f"{LAYER_TIMEOUT_FACTOR:g} x --timeout; 0: none)",
    )
    p.add_argument(
        "--memory-limit",
        type=positive_int,
        default=None,
        metavar="MB",
        help="cap each worker's data segment (RLIMIT_DATA: heap, tensors) at MB "
        "MiB, about 300 of which torch and the validator use; an allocation "
        "past it is an error of that check (default: no limit; Linux)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="validate N layers side by side, each in its own worker; the output "
        "is the same and in the same order as with -j 1 (default 1)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no live progress line (it is shown only when stderr is a terminal)",
    )
    p.add_argument(
        "--allow-insufficient",
        action="store_true",
        help="exit 0 even when a check was insufficient (judged no case)",
    )
    p.set_defaults(func=_run)


_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def _devices(requested: list[str] | None) -> tuple[str, ...] | None:
    """The ``--device`` names, checked by their form (whether CUDA is there, the worker
    says)."""
    if not requested:
        return None
    out = []
    for name in requested:
        if not _DEVICE.fullmatch(name):
            raise UsageError(f"--device must be cpu or cuda[:i], got {name!r}")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _limits(timeout: float | None, layer_timeout: float | None, memory_limit: int | None) -> Any:
    from invlin.validate.worker import Limits

    per_check = float(timeout) if timeout else None
    if layer_timeout is None:
        per_layer = None if per_check is None else per_check * LAYER_TIMEOUT_FACTOR
    else:
        per_layer = float(layer_timeout) if layer_timeout else None
    return Limits(timeout=per_check, layer_timeout=per_layer, memory_mb=memory_limit)


def run_validation(
    *,
    target: str | None = None,
    libraries: list[str] | tuple[str, ...] = (),
    features: int = 4,
    dtypes: tuple[str, ...] | None = None,
    devices: tuple[str, ...] | None = None,
    profile: str | None = None,
    checks: tuple[str, ...] | None = None,
    seed: int = 0,
    timeout: float | None = DEFAULT_TIMEOUT,
    layer_timeout: float | None = None,
    memory_limit: int | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
    context_features: int = 0,
) -> Any:
    """Validate ``target`` and every curated layer of ``libraries``: one :class:`Conformance`.

    Every layer runs in a worker process (:func:`invlin.validate.worker.run_isolated`), ``jobs``
    at a time. ``timeout`` is the limit of one check in seconds (``None`` or 0: none),
    ``layer_timeout`` of one layer (default ``5 × timeout``, 0: none), ``memory_limit`` each
    worker's data segment in MiB. ``progress`` is a
    :class:`~invlin.validate.progress.Progress` (default: none). ``context_features`` M > 0
    validates conditional layers (``factory(features=N, context_features=M)``, the libraries'
    conditional catalogs; see :mod:`invlin.validate.conditioning`).

    Raises :class:`~invlin.validate.target.UsageError` for a bad TARGET, an import failure,
    an unknown or missing library or check, a bad device. A layer that raises, crashes, exits
    or times out never raises here: it is a failed result in the table.
    """
    from invlin.validate.meta import checks_run, run_meta
    from invlin.validate.results import Conformance
    from invlin.validate.worker import run_isolated

    if target is None and not libraries:
        raise UsageError(
            "give a TARGET ('package.module:factory' or 'file.py:factory') or --library NAME"
        )
    profile = profile or default_profile()
    try:
        profile_named(profile, "--profile")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if target is not None:
        where, _ = split_target(target)
        if where.endswith(".py") and not Path(where).expanduser().is_file():
            raise UsageError(f"TARGET file {where!r} does not exist (in {target!r})")
    options: dict[str, Any] = {
        "features": features,
        "profile": profile,
        "seed": seed,
        "checks": list(checks) if checks else None,
        "dtypes": list(dtypes) if dtypes else None,
        "devices": list(devices) if devices else None,
    }
    if context_features:
        options["context_features"] = context_features
    started = time.monotonic()  # the run's wall time goes into its metadata
    done = run_isolated(
        targets=[target] if target is not None else [],
        libraries=list(libraries),
        options=options,
        limits=_limits(timeout, layer_timeout, memory_limit),
        workers=jobs,
        progress=progress,
    )
    result = Conformance(layers=done.reports)
    result.meta = run_meta(
        profile=profile,
        features=features,
        dtypes=done.dtypes,
        devices=done.devices,
        seed=seed,
        checks=checks_run(done.checks, done.reports),
        wall_seconds=time.monotonic() - started,
        jobs=jobs,
    )
    if context_features:
        result.meta["context_features"] = context_features
    if done.warnings:
        result.meta["warnings"] = done.warnings
    return result


def _command_line(args: argparse.Namespace) -> str:
    argv = ["invlin", "validate"]
    if args.target:
        argv.append(args.target)
    argv += ["--features", str(args.features)]
    if args.context_features:
        argv += ["--context-features", str(args.context_features)]
    for flag, values in (
        ("--library", args.library),
        ("--dtype", args.dtype),
        ("--device", args.device),
        ("--check", args.check),
    ):
        for v in values or ():
            argv += [flag, v]
    argv += ["--profile", args.profile or default_profile()]
    if args.timeout != DEFAULT_TIMEOUT:
        argv += ["--timeout", f"{args.timeout:g}"]
    if args.layer_timeout is not None:
        argv += ["--layer-timeout", f"{args.layer_timeout:g}"]
    if args.memory_limit is not None:
        argv += ["--memory-limit", str(args.memory_limit)]
    if args.allow_insufficient:
        argv.append("--allow-insufficient")
    return shlex.join(argv)


def _title(args: argparse.Namespace) -> str:
    names = [*(args.library or ()), *([args.target] if args.target else [])]
    return "invlin conformance: " + ", ".join(names) if names else "invlin conformance"


def _run(args: argparse.Namespace) -> int:
    from invlin.outputs import OutputError, plan_output, wrote_line
    from invlin.validate.render import render

    output = None
    if args.out is not None:  # checked before any work
        try:
            output = plan_output(args.out, kind="validate", command=_command_line(args))
        except (OutputError, UsageError) as exc:  # UsageError: a bad $INVLIN_PROFILE
            print(f"invlin validate: error: {exc}", file=sys.stderr)
            return 2
    progress = ProgressLine(enabled=False if args.quiet else None)
    try:
        conformance = run_validation(
            target=args.target,
            libraries=list(args.library or ()),
            features=args.features,
            dtypes=tuple(dict.fromkeys(args.dtype)) if args.dtype else None,
            devices=_devices(args.device),
            profile=args.profile,
            checks=args.check,
            timeout=args.timeout,
            layer_timeout=args.layer_timeout,
            memory_limit=args.memory_limit,
            jobs=args.jobs,
            context_features=args.context_features,
            progress=progress,
        )
    except UsageError as exc:
        progress.close()
        print(f"invlin validate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        print("invlin validate: interrupted", file=sys.stderr)
        return 130
    finally:
        progress.close()  # idempotent; also after a validator bug
    conformance.meta["command"] = _command_line(args)
    if args.allow_insufficient:
        conformance.meta["allow_insufficient"] = True
    sys.stdout.write(render(conformance, args.format, title=_title(args)))
    sys.stdout.flush()
    if output is not None:
        from invlin.validate.output import write_conformance

        title = _title(args)
        try:
            path = output.write(lambda folder: write_conformance(conformance, folder, title=title))
        except (OSError, ValueError, OutputError) as exc:
            print(
                f"invlin validate: error: cannot write --out {str(args.out)!r}: {exc}",
                file=sys.stderr,
            )
            return 2
        print(wrote_line(path), file=sys.stderr)  # stdout holds the rendered result
    return 0 if conformance.ok(allow_insufficient=args.allow_insufficient) else 1
