"""The ``invlin`` command line: each subcommand lives with the feature it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "positive_int"]

#: Modules with a ``register(subparsers)`` function that adds one subcommand and sets ``func``.
COMMANDS = ("invlin.drift.command", "invlin.experiments.command", "invlin.validate.command")
#: Which module registers each subcommand: ``invlin validate ...`` imports only its own module
#: (the others import torch at registration, which ``invlin validate`` itself never needs).
SUBCOMMANDS: dict[str, str] = {
    "report": "invlin.drift.command",
    "train": "invlin.experiments.command",
    "validate": "invlin.validate.command",
}


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
    parser = argparse.ArgumentParser(
        prog="invlin", description="Verify inverses and log-determinants of invertible layers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in commands:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invlin`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    own = SUBCOMMANDS.get(first) if first is not None else None
    args = build_parser((own,) if own else COMMANDS).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
