"""``invlin report``: the drift report (sweep or replay), written to a folder of its own."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from invlin._errors import message_line
from invlin.cli import SUMMARIES, positive_int

__all__ = ["register"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


class _OutOption(argparse.Action):
    """Store ``--out``/``--output`` and remember which spelling was used, for messages."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.output_flag = option_string


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default=None,
        help="report name, shown in the report (default: 'default', or 'replay-<file>' for a "
        "replay); it no longer picks the folder: see --out",
    )
    p.add_argument(
        "--out",
        "--output",
        dest="output",
        type=Path,
        default=None,
        action=_OutOption,
        metavar="DIR",
        help="report folder (default: a new folder ./invlin-output/report-<date>-<time>); "
        "created if missing, replaced atomically if invlin wrote it (it holds a "
        ".invlin-output marker), refused if it holds anything else",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "flint", "mpmath"],
        help="oracle backend (default: flint when installed, else mpmath)",
    )
    p.add_argument(
        "--oracle-budget",
        type=float,
        default=None,
        metavar="UNITS",
        help="the most work the oracle may do per evaluation, in n³·max(1, bits/256) units "
        "(default invlin.oracle.budget.DEFAULT_BUDGET = 1e7, about n ≤ 170; inf: no limit); "
        "in this process only, so not with --executor dask",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any track fails, expected failures included (default: "
        "1 only when a failure is unexpected, 0 otherwise once written)",
    )
    p.add_argument(
        "--details",
        action="store_true",
        help="also print every track and every failure (always in report.md / report.html)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand (with its ``replay`` form) to the ``invlin`` parser."""
    # The choices come from a module of constants: help needs neither NumPy, SciPy nor torch.
    from invlin.drift.vocabulary import DEFAULTS, DTYPES, ENGINES, EXECUTORS, POLICIES, REGIMES

    rep = sub.add_parser(
        "report",
        help=SUMMARIES["report"],
        description="Run drift policies (plain Sherman–Morrison, P4 guarded merges, guarded + "
        "monitor-triggered correction, periodic refresh) on the NumPy reference and the torch "
        "P4InvLinear through update sequences of three condition regimes, measure them at "
        "log-spaced checkpoints against the arbitrary-precision oracle, and write a report "
        "folder (report.html, report.md, PNG figures, data.json, CSV; --out). With no options "
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
        "merges with the NumPy reference, and write a report folder (--out).",
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


def _check_output(args: argparse.Namespace, kind: str) -> Any:
    """Where the report goes (:func:`invlin.outputs.plan_output`), checked before any work: a
    location invlin must not or cannot write is a usage error (exit 2)."""
    from invlin.outputs import OutputError, plan_output

    try:
        return plan_output(args.output, kind=kind, label=getattr(args, "output_flag", "--out"))
    except OutputError as exc:
        args._parser.error(str(exc))


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


def _check_budget(args: argparse.Namespace) -> float | None:
    """``--oracle-budget`` resolved, checked before any work (a usage error: exit 2)."""
    from invlin.oracle import budget

    if args.oracle_budget is None:
        return None
    if getattr(args, "executor", "local") != "local":
        args._parser.error("--oracle-budget applies in this process: use --executor local")
    try:
        return budget.resolve_budget(args.oracle_budget)
    except ValueError as exc:
        args._parser.error(str(exc).replace("budget must", "--oracle-budget must"))


@contextlib.contextmanager
def _oracle_budget(args: argparse.Namespace, limit: float | None) -> Iterator[None]:
    """Run the body with the oracle's budget set to ``limit`` (restored afterwards: ``main``
    may run in a long-lived process); an evaluation it refuses ends the command (exit 2)."""
    from invlin.oracle import OracleBudgetError, budget

    saved = budget.DEFAULT_BUDGET
    if limit is not None:
        budget.DEFAULT_BUDGET = limit
    try:
        yield
    except OracleBudgetError as exc:
        args._parser.exit(
            2,
            f"invlin report: error: {exc.args[0].split('; pass')[0]}; "
            f"raise the limit with --oracle-budget {exc.estimate:.2g} (or inf), "
            "or use smaller --dims\n",
        )
    finally:
        budget.DEFAULT_BUDGET = saved


def _finish(args: argparse.Namespace, data: dict[str, Any], output: Any) -> int:
    import dataclasses
    import shlex

    from invlin.outputs import OutputError, wrote_line
    from invlin.report import render_files

    output = dataclasses.replace(output, command=shlex.join(["invlin", *data["command"]]))
    try:
        path = output.write_files(render_files(data))
    except ImportError as exc:
        print(f"invlin report: {exc}", file=sys.stderr)
        return 1
    except OutputError as exc:
        print(f"invlin report: error: {exc}", file=sys.stderr)
        return 2
    from invlin.drift.verdicts import exit_status
    from invlin.report.terminal import render_terminal

    print(render_terminal(data, details=args.details))
    print(wrote_line(path))
    s = data["summary"]
    return exit_status(unexpected=s["unexpected"], failed=s["failed"], strict=args.strict)


def _sweep(args: argparse.Namespace) -> int:
    from invlin.drift import executors
    from invlin.drift.config import plan_sweep
    from invlin.drift.environment import environment
    from invlin.drift.results import report_data

    if args.scheduler is not None and args.executor != "dask":
        args._parser.error("--scheduler needs --executor dask")
    output = _check_output(args, "report")
    _check_executor(args)
    limit = _check_budget(args)
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
    with _oracle_budget(args, limit):
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
        command=[*_command(settings, name), *_budget_option(args)],
    )
    return _finish(args, data, output)


def _replay(args: argparse.Namespace) -> int:
    from invlin.drift import replay
    from invlin.drift.environment import environment
    from invlin.drift.results import report_data

    output = _check_output(args, "replay")
    limit = _check_budget(args)
    start = time.perf_counter()
    max_bytes = replay.MAX_HISTORY_BYTES if args.max_bytes is None else args.max_bytes
    with _oracle_budget(args, limit):
        try:
            results = replay.replay_history(
                args.history,
                dtype=args.dtype,
                backend=args.backend,
                seed=args.seed,
                max_bytes=max_bytes,
            )
        except ValueError as exc:
            args._parser.error(message_line(exc))
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
            *_budget_option(args),
        ],
    )
    return _finish(args, data, output)


def _budget_option(args: argparse.Namespace) -> list[str]:
    """``--oracle-budget`` as given, for the reproduce command (nothing when left out)."""
    return [] if args.oracle_budget is None else ["--oracle-budget", str(args.oracle_budget)]


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
