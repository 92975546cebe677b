"""A progress bar for long sweeps: tqdm when installed, else a plain one on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    """A minimal text progress bar: ``update(k)`` advances, ``close()`` ends the line.

    Redraws at most every ``interval`` seconds; on a non-terminal stream it prints one line per
    10 % instead of redrawing.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        stream: TextIO | None = None,
        width: int = 30,
        interval: float = 0.2,
    ):
        if total < 0:
            raise ValueError(f"total must be non-negative, got {total}")
        self.total, self.desc, self.width, self.interval = total, desc, width, interval
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._decile = -1

    def update(self, k: int = 1) -> None:
        """Advance by ``k`` units."""
        self.done = min(self.total, self.done + int(k))
        now = time.perf_counter()
        if self._tty:
            if now - self._last >= self.interval or self.done == self.total:
                self._last = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
        else:
            decile = 10 * self.done // self.total if self.total else 10
            if decile > self._decile:
                self._decile = decile
                self.stream.write(self._line(now) + "\n")
                self.stream.flush()

    def _line(self, now: float) -> str:
        frac = self.done / self.total if self.total else 1.0
        fill = round(frac * self.width)
        return (
            f"{self.desc}: [{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total} "
            f"{100 * frac:3.0f}% {now - self._start:5.1f}s"
        )

    def close(self) -> None:
        """Finish the bar (newline on a terminal)."""
        if self._tty:
            self.stream.write("\r" + self._line(time.perf_counter()) + "\n")
            self.stream.flush()


def progress_bar(total: int, desc: str = "", *, enabled: bool = True) -> Any:
    """A tqdm bar when tqdm is installed, else :class:`ProgressBar`; ``None`` when disabled.

    Either has ``update(k)`` and ``close()``.
    """
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return ProgressBar(total, desc)
    return tqdm(total=total, desc=desc, unit="upd", file=sys.stderr, dynamic_ncols=True)
