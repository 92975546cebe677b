"""The small shared rules: ``_validation.positive_int`` and the one-line exception texts."""

from __future__ import annotations

import numpy as np
import pytest

from invlin._errors import error_summary, message_line
from invlin._validation import positive_int


@pytest.mark.parametrize("value", [1, 7, 2**40, np.int64(3), np.uint8(1)])
def test_positive_int_accepts_ints_and_returns_a_python_int(value):
    out = positive_int(value, "n")
    assert out == value and type(out) is int


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "True"),
        (False, "False"),
        (2.0, "2.0"),
        ("3", "'3'"),
        (None, "None"),
        (0, "0"),
        (-4, "-4"),
        (np.int64(0), repr(np.int64(0))),
    ],
)
def test_positive_int_rejects_with_the_name_and_value(value, shown):
    with pytest.raises(ValueError) as info:
        positive_int(value, "steps")
    assert str(info.value) == f"steps must be a positive integer, got {shown}"


def test_positive_int_with_a_larger_minimum():
    assert positive_int(2, "order", minimum=2) == 2
    with pytest.raises(ValueError) as info:
        positive_int(1, "order", minimum=2)
    assert str(info.value) == "order must be an integer ≥ 2, got 1"


@pytest.mark.parametrize(
    ("exc", "summary", "line"),
    [
        (ValueError("bad n\n  Traceback line"), "ValueError: bad n", "bad n Traceback line"),
        (KeyError("k"), "KeyError: 'k'", "'k'"),
        (RuntimeError(""), "RuntimeError", "RuntimeError"),
        (OSError("  \n "), "OSError", "OSError"),
        (SystemExit(3), "SystemExit: 3", "3"),
    ],
)
def test_error_texts(exc, summary, line):
    assert error_summary(exc) == summary  # a result's exception field
    assert message_line(exc) == line  # quoted inside a sentence


def test_a_history_reader_error_is_quoted_on_one_line(tmp_path):
    from invlin.drift.replay import load_history

    bad = tmp_path / "history.npz"
    bad.write_bytes(b"not a zip\nsecond line")
    with pytest.raises(ValueError, match=r"\(File is not a zip file\): not a MergeHistory"):
        load_history(bad)
