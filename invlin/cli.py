"""The ``invlin`` command line: each subcommand lives with the feature it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "positive_int"]

#: Modules with a ``register(subparsers)`` function that adds one subcommand and sets ``func``.
COMMANDS = ("invlin.drift.command", "invlin.experiments.command", "invlin.validate.command")


def positive_int(text: str) -> int:
    """argparse type: a positive integer, or a usage error quoting ``text``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``invlin`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="invlin", description="Verify inverses and log-determinants of invertible layers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invlin`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
