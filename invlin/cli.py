"""The ``invlin`` command line: each subcommand lives with the feature it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "SUBCOMMANDS", "SUMMARIES", "build_parser", "main", "positive_int"]

#: Which module registers each subcommand: its ``register(subparsers)`` adds the subcommand and
#: sets ``func``. ``invlin NAME ...`` imports only NAME's module.
SUBCOMMANDS: dict[str, str] = {
    "report": "invlin.drift.command",
    "train": "invlin.experiments.command",
    "validate": "invlin.validate.command",
}
#: The modules of :data:`SUBCOMMANDS`, each once.
COMMANDS = tuple(dict.fromkeys(SUBCOMMANDS.values()))
#: The one-line help of each subcommand, listed by ``invlin --help`` without importing the
#: subcommands' modules (registering ``report`` imports NumPy and SciPy, ``train`` NumPy).
SUMMARIES: dict[str, str] = {
    "report": "drift report: tracked inverses, log|det| and signs against the exact oracle",
    "train": "train the seeds' experiments (toy2d, digits)",
    "validate": "check another library's invertible layers (round trip, log|det|, shapes, ...)",
}
DESCRIPTION = "Verify inverses and log-determinants of invertible layers."


def positive_int(text: str) -> int:
    """argparse type: a positive integer, or a usage error quoting ``text``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The ``invlin`` argument parser with the subcommands of ``commands`` (default all)."""
    parser = argparse.ArgumentParser(prog="invlin", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in commands:
        importlib.import_module(name).register(sub)
    return parser


def overview_parser() -> argparse.ArgumentParser:
    """The ``invlin`` parser for a command line that names no subcommand (``invlin --help``,
    a typo): every subcommand with its summary, none of their modules imported."""
    parser = argparse.ArgumentParser(prog="invlin", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary in SUMMARIES.items():
        sub.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invlin`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own = SUBCOMMANDS.get(argv[0]) if argv else None
    if own is None:  # no subcommand: only help or a usage error can follow
        overview_parser().parse_args(argv)
        return 2  # pragma: no cover - parse_args exits (help: 0, usage error: 2)
    args = build_parser((own,)).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
