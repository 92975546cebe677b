"""``invlin validate``: run the conformance checks on a layer factory or a library's layers."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from invlin.cli import positive_int
from invlin.validate.recorder import record_warnings
from invlin.validate.target import UsageError

__all__ = ["register", "run_validation"]

PROFILES = ("dev", "ci", "thorough")
DTYPES = ("float64", "float32")
FORMATS = ("text", "markdown", "json")


def default_profile() -> str:
    """``$INVLIN_PROFILE`` when it names a profile, else ``ci``."""
    name = os.environ.get("INVLIN_PROFILE", "")
    return name if name in PROFILES else "ci"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand to the ``invlin`` parser."""
    p = sub.add_parser(
        "validate",
        help="check another library's invertible layers (round trip, log|det|, shapes, ...)",
        description="Build a layer with FACTORY(features=N), wrap it in the adapter of its "
        "library (nflows, zuko, normflows, FrEIA, pyro / torch.distributions, invlin) and run "
        "the conformance checks with the tolerance engine: round trips, log|det| against a "
        "float64 autograd Jacobian (and the exact oracle for linear layers), batch shapes, "
        "dtype/device, train/eval and caches, domain edges, ill-conditioned weights, "
        "gradients. Prints a conformance table. Exit status: 0 when every check passes "
        "(skips allowed), 1 when a check fails or a layer raises, 2 for usage errors.",
        epilog="examples: invlin validate mypkg.flows:make_layer --features 8;  "
        "invlin validate path/to/layers.py:factory --format markdown;  "
        "invlin validate --library nflows --out reports/validate/nflows",
    )
    p.add_argument("target", nargs="?", default=None, metavar="TARGET",
                   help="'package.module:factory' or 'path/to/file.py:factory'; the factory is "
                        "called as factory(features=N) and returns a layer (optional with "
                        "--library)")
    p.add_argument("--features", type=positive_int, default=4, metavar="N",
                   help="number of features passed to the factory (default 4)")
    p.add_argument("--library", action="append", default=None, metavar="NAME",
                   help="also run the curated layers of a library: invlin, nflows, zuko, "
                        "normflows, freia, pyro (repeatable)")
    p.add_argument("--dtype", action="append", default=None, choices=DTYPES,
                   help="dtype to check in (repeatable; default float64 and float32)")
    p.add_argument("--device", action="append", default=None, metavar="DEVICE",
                   help="torch device: cpu or cuda[:i] (repeatable; default cpu, plus cuda "
                        "when available)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="search effort: dev, ci or thorough (default $INVLIN_PROFILE or ci)")
    p.add_argument("--check", action="append", default=None, metavar="NAME",
                   help="run only this check (repeatable; default all)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="what to print: text (default), markdown or json")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="also write DIR/conformance.md and DIR/conformance.json (atomically)")
    p.set_defaults(func=_run)


def _devices(requested: list[str] | None) -> tuple[str, ...] | None:
    if not requested:
        return None
    import torch

    out = []
    for name in requested:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise UsageError(f"--device must be cpu or cuda[:i], got {name!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {name!r}: no CUDA device is available")
        if device.type not in ("cpu", "cuda"):
            raise UsageError(f"--device must be cpu or cuda[:i], got {name!r}")
        out.append(str(device))
    return tuple(dict.fromkeys(out))


def _library_entries(library: str) -> list[Any]:
    from invlin.validate.catalog import LIBRARIES, catalog

    if library not in LIBRARIES:
        raise UsageError(f"--library must be one of {', '.join(LIBRARIES)}, got {library!r}")
    try:
        return list(catalog(library))
    except ImportError as exc:
        raise UsageError(f"--library {library}: the library is not installed here ({exc})") \
            from exc


def _known_checks(names: list[str] | None) -> tuple[str, ...] | None:
    if not names:
        return None
    try:
        from invlin.validate.checks import CHECKS
    except ImportError:  # the registry's name differs: let the runner judge the names
        return tuple(names)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise UsageError(f"--check must name one of {', '.join(CHECKS)}, got "
                         f"{', '.join(map(repr, unknown))}")
    return tuple(names)


def run_validation(*, target: str | None = None, libraries: list[str] | tuple[str, ...] = (),
                   features: int = 4, dtypes: tuple[str, ...] | None = None,
                   devices: tuple[str, ...] | None = None, profile: str | None = None,
                   checks: tuple[str, ...] | None = None) -> Any:
    """Validate ``target`` and every curated layer of ``libraries``: one :class:`Conformance`.

    Raises :class:`~invlin.validate.target.UsageError` for a bad TARGET, an import failure,
    an unknown or missing library or check. A layer that raises never raises here: it is a
    failed result in the table.
    """
    from invlin.validate.results import Conformance

    if target is None and not libraries:
        raise UsageError("give a TARGET ('package.module:factory' or 'file.py:factory') "
                         "or --library NAME")
    profile = profile or default_profile()
    if profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    # Resolve everything the user named before running anything.
    factory = None
    if target is not None:
        from invlin.validate.target import load_target

        factory = load_target(target)
    entries = {lib: _library_entries(lib) for lib in dict.fromkeys(libraries)}
    checks = _known_checks(list(checks) if checks else None)
    try:
        from invlin.validate.runner import validate_all
    except ImportError as exc:
        hint = " (pip install 'invlin[validate]')" if "hypothesis" in str(exc) else ""
        raise UsageError(f"the validator cannot be imported: {exc}{hint}") from exc
    kw: dict[str, Any] = {"features": features, "profile": profile, "checks": checks,
                          "devices": devices}
    if dtypes:
        kw["dtypes"] = tuple(dtypes)
    result = Conformance()
    raised: list[dict[str, Any]] = []
    jobs: list[tuple[str, Any, dict[str, Any]]] = []
    if factory is not None:
        jobs.append((str(target), factory, {"target": target}))
    for lib, items in entries.items():
        # one layer at a time, so that each recorded warning names its layer
        jobs += [(f"{lib}:{getattr(item, 'name', item)}", item, {"library": lib})
                 for item in items]
    try:
        for label, item, own in jobs:
            with record_warnings(label, raised):
                part = validate_all([item], **kw, **own)
            result.layers += part.layers
            result.meta.update(part.meta)
    except ValueError as exc:  # arguments the runner refuses (a layer that raises never does)
        raise UsageError(str(exc)) from exc
    if raised:
        result.meta["warnings"] = raised
    return result


def _command_line(args: argparse.Namespace) -> str:
    argv = ["invlin", "validate"]
    if args.target:
        argv.append(args.target)
    argv += ["--features", str(args.features)]
    for flag, values in (("--library", args.library), ("--dtype", args.dtype),
                         ("--device", args.device), ("--check", args.check)):
        for v in values or ():
            argv += [flag, v]
    argv += ["--profile", args.profile or default_profile()]
    return shlex.join(argv)


def _title(args: argparse.Namespace) -> str:
    names = [*(args.library or ()), *([args.target] if args.target else [])]
    return "invlin conformance: " + ", ".join(names) if names else "invlin conformance"


def _run(args: argparse.Namespace) -> int:
    from invlin.validate.render import render

    try:
        conformance = run_validation(
            target=args.target, libraries=list(args.library or ()), features=args.features,
            dtypes=tuple(dict.fromkeys(args.dtype)) if args.dtype else None,
            devices=_devices(args.device), profile=args.profile, checks=args.check)
    except UsageError as exc:
        print(f"invlin validate: error: {exc}", file=sys.stderr)
        return 2
    conformance.meta["command"] = _command_line(args)
    sys.stdout.write(render(conformance, args.format, title=_title(args)))
    sys.stdout.flush()
    if args.out is not None:
        from invlin.validate.output import write_conformance

        try:
            paths = write_conformance(conformance, args.out, title=_title(args))
        except (OSError, ValueError) as exc:
            print(f"invlin validate: error: cannot write --out {str(args.out)!r}: {exc}",
                  file=sys.stderr)
            return 2
        print("written: " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0 if conformance.passed else 1
