"""An exception as one line of text, for results and error messages (no traceback).

Imports nothing from invlin, so that any package (validate, drift, ...) can use it without an
import cycle.
"""

from __future__ import annotations

__all__ = ["error_summary", "message_line"]


def error_summary(exc: BaseException) -> str:
    """``"Type: first line of the message"``, or ``"Type"`` for an empty message.

    The form of a check's ``exception`` field: the type says what went wrong, the first line
    where (later lines are usually a traceback or a listing the report does not need).
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def message_line(exc: BaseException) -> str:
    """The whole message with its whitespace runs (newlines included) joined by one space, or
    the type's name for an empty message: for quoting inside a sentence of one's own."""
    return " ".join(str(exc).split()) or type(exc).__name__
