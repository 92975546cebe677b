"""``invlin report``: the drift report (sweep or replay) written to ``reports/<name>/``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from invlin.cli import positive_int
from invlin.drift.config import DEFAULTS, DTYPES
from invlin.drift.executors import EXECUTORS
from invlin.drift.policies import ENGINES, POLICIES
from invlin.drift.regimes import REGIMES

__all__ = ["register"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default=None,
        help="report name: the folder under reports/ (default: 'default', or "
        "'replay-<file>' for a replay)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report folder (default: reports/<name>); replaced atomically",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "flint", "mpmath"],
        help="oracle backend (default: flint when installed, else mpmath)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any track fails (default: 0 once written)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand (with its ``replay`` form) to the ``invlin`` parser."""
    rep = sub.add_parser(
        "report",
        help="drift report: tracked inverses, log|det| and signs against the exact oracle",
        description="Run drift policies (plain Sherman–Morrison, P4 guarded merges, guarded + "
        "monitor-triggered correction, periodic refresh) on the NumPy reference and the torch "
        "P4InvLinear through update sequences of three condition regimes, measure them at "
        "log-spaced checkpoints against the arbitrary-precision oracle, and write "
        "reports/<name>/ (report.html, report.md, PNG figures, data.json, CSV). With no options "
        "this is the default sweep (about a minute on 2 cores). "
        "`invlin report replay HISTORY` audits a recorded training run instead.",
    )
    d = DEFAULTS
    rep.add_argument(
        "--dims",
        "--n",
        "-n",
        type=positive_int,
        nargs="+",
        default=list(d["dims"]),
        metavar="N",
        help=f"dimensions n (default {' '.join(map(str, d['dims']))})",
    )
    rep.add_argument(
        "--updates",
        type=positive_int,
        nargs="+",
        default=list(d["updates"]),
        metavar="K",
        help="updates per sequence (default 1000)",
    )
    rep.add_argument(
        "--regimes",
        nargs="+",
        choices=REGIMES,
        default=list(d["regimes"]),
        help="condition regimes (default: all)",
    )
    rep.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=list(d["dtypes"]),
        help="dtypes of the tracked state (default float64 float32; bfloat16 needs --device cuda)",
    )
    rep.add_argument(
        "--policies",
        nargs="+",
        choices=POLICIES,
        default=list(d["policies"]),
        help="drift policies (default: all)",
    )
    rep.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=list(d["engines"]),
        help="reference (NumPy TrackedMatrix) and/or layer (torch P4InvLinear)",
    )
    rep.add_argument(
        "--device",
        default=d["device"],
        help="torch device of the layer engine: cpu or cuda[:i] (default cpu)",
    )
    rep.add_argument(
        "--depth",
        type=_fraction,
        default=d["depth"],
        help="how close the approach/crossing regimes get to singular (default "
        "1e-10: κ grows by about 1/depth)",
    )
    rep.add_argument(
        "--scale",
        type=_fraction,
        default=d["scale"],
        help="size ‖u vᵀ‖ of a random-walk step (default 0.05)",
    )
    rep.add_argument(
        "--refresh-every",
        type=positive_int,
        default=d["refresh_every"],
        help="merges between refreshes of the refresh policy (default 100)",
    )
    rep.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: in this process (default); dask: one task per configuration on a Dask cluster",
    )
    rep.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address (default: start a LocalCluster)",
    )
    rep.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="workers of the LocalCluster (default: one per CPU)",
    )
    _common(rep)
    rep.set_defaults(func=_sweep, _parser=rep)
    subs = rep.add_subparsers(dest="report_command", metavar="{replay}")
    rp = subs.add_parser(
        "replay",
        help="replay a recorded merge history against the oracle",
        description="Replay the merges that P4Scheduler(record=True) saved (MergeHistory.save) "
        "against the oracle: judge the recorded log|det| and sign of every layer, re-track the "
        "merges with the NumPy reference, and write reports/<name>/.",
    )
    rp.add_argument("history", type=Path, help="the .npz file written by MergeHistory.save")
    rp.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="state dtype the layer used (default float64, P4InvLinear's default)",
    )
    rp.add_argument(
        "--max-bytes",
        type=positive_int,
        default=None,
        metavar="BYTES",
        help="refuse a history whose arrays hold more bytes than this, "
        "uncompressed (default 2 GiB: invlin.drift.replay.MAX_HISTORY_BYTES)",
    )
    _common(rp)
    rp.set_defaults(func=_replay, _parser=rp)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from invlin.drift.progress import progress_bar

    return progress_bar(total, desc, enabled=enabled)


def _check_output(args: argparse.Namespace) -> None:
    """Refuse, before any work, an ``--output`` that is a file or lies below one (exit 2)."""
    if args.output is None:
        return
    for path in (args.output, *args.output.parents):
        if path.exists():
            if not path.is_dir():
                what = "is" if path == args.output else f"lies below {str(path)!r}, which is"
                args._parser.error(
                    f"--output {str(args.output)!r} {what} a file, not a folder: "
                    f"the report is a folder of files"
                )
            return


def _check_executor(args: argparse.Namespace) -> None:
    """Refuse, before any work, ``--executor dask`` when dask.distributed cannot be imported."""
    if args.executor != "dask":
        return
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        args._parser.error(
            f"--executor dask needs dask.distributed, which cannot be imported "
            f"({exc}): pip install 'invlin[dask]', or use --executor local"
        )


def _finish(args: argparse.Namespace, data: dict[str, Any], name: str) -> int:
    from invlin.report import write_report

    target = args.output if args.output is not None else Path("reports") / name
    try:
        path = write_report(data, target)
    except ImportError as exc:
        print(f"invlin report: {exc}", file=sys.stderr)
        return 1
    from invlin.report.document import summary_rows

    rows = summary_rows(data)
    cols = (0, 1, 2, 3, 4, 5, 6, 7, 12)
    head = (
        "regime",
        "n",
        "dtype",
        "engine",
        "policy",
        "max inv ratio",
        "max |Δlogdet|",
        "sign err",
        "verdict",
    )
    table = [head] + [tuple(r[c] for c in cols) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    s = data["summary"]
    print(
        f"{s['passed']} passed, {s['failed']} failed ({s['tracks']} tracks, "
        f"{data['wall_seconds']:.1f} s; ratios against the exact path, allowed = 30·(1+k))"
    )
    print(f"report: {path}/report.html (also report.md, data.json, CSV, PNG)")
    return 1 if (args.strict and s["failed"]) else 0


def _sweep(args: argparse.Namespace) -> int:
    from invlin.drift import executors
    from invlin.drift.config import plan_sweep
    from invlin.drift.environment import environment
    from invlin.drift.results import report_data

    if args.scheduler is not None and args.executor != "dask":
        args._parser.error("--scheduler needs --executor dask")
    _check_output(args)
    _check_executor(args)
    start = time.perf_counter()
    try:
        configs = plan_sweep(
            dims=args.dims,
            updates=args.updates,
            regimes=args.regimes,
            dtypes=args.dtypes,
            policies=args.policies,
            engines=args.engines,
            device=args.device,
            seed=args.seed,
            backend=args.backend,
            scale=args.scale,
            depth=args.depth,
            refresh_every=args.refresh_every,
        )
    except ValueError as exc:
        args._parser.error(str(exc))
    bar = _bar(sum(c.updates for c in configs), "invlin report", not args.no_progress)
    try:
        results = executors.run_sweep(
            configs,
            executor=args.executor,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=bar.update if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    settings = {
        "dims": args.dims,
        "updates": args.updates,
        "regimes": args.regimes,
        "dtypes": args.dtypes,
        "policies": args.policies,
        "engines": args.engines,
        "device": args.device,
        "seed": args.seed,
        "backend": args.backend,
        "depth": args.depth,
        "scale": args.scale,
        "refresh_every": args.refresh_every,
        "executor": args.executor,
    }
    name = args.name or "default"
    data = report_data(
        "sweep",
        name,
        results,
        settings=settings,
        environment=environment(args.device, _oracle_summary(results)),
        wall_seconds=time.perf_counter() - start,
        command=_command(settings, name),
    )
    return _finish(args, data, name)


def _replay(args: argparse.Namespace) -> int:
    from invlin.drift import replay
    from invlin.drift.environment import environment
    from invlin.drift.results import report_data

    _check_output(args)
    start = time.perf_counter()
    max_bytes = replay.MAX_HISTORY_BYTES if args.max_bytes is None else args.max_bytes
    try:
        results = replay.replay_history(
            args.history,
            dtype=args.dtype,
            backend=args.backend,
            seed=args.seed,
            max_bytes=max_bytes,
        )
    except ValueError as exc:
        args._parser.error(" ".join(str(exc).split()))  # one line
    name = args.name or f"replay-{args.history.stem}"
    settings = {
        "history": str(args.history),
        "dtype": args.dtype,
        "backend": args.backend,
        "seed": args.seed,
    }
    data = report_data(
        "replay",
        name,
        results,
        settings=settings,
        environment=environment("cpu", _oracle_summary(results)),
        wall_seconds=time.perf_counter() - start,
        command=[
            "report",
            "replay",
            str(args.history),
            "--dtype",
            args.dtype,
            "--backend",
            args.backend,
            "--seed",
            str(args.seed),
        ],
    )
    return _finish(args, data, name)


def _oracle_summary(results: list[Any]) -> dict[str, Any]:
    backends = sorted({r.oracle["backend"] for r in results})
    return {
        "backend": ", ".join(backends),
        "evaluations": sum(r.oracle["evaluations"] for r in results),
        "max_bits": max((r.oracle["max_bits"] for r in results), default=0),
    }


def _command(settings: dict[str, Any], name: str) -> list[str]:
    """The canonical command line that reproduces a sweep (timing aside)."""
    out = ["report"]
    for key in ("dims", "updates", "regimes", "dtypes", "policies", "engines"):
        out += [f"--{key}", *map(str, settings[key])]
    for key in ("device", "seed", "backend", "depth", "scale", "refresh_every", "executor"):
        out += [f"--{key.replace('_', '-')}", str(settings[key])]
    return [*out, "--name", name]
