"""A one-line live progress display for ``invlin validate`` on a terminal (stderr).

``[3/24] nflows:LULinear round_trip float32/cpu ... 4.1 s`` — the check that runs now, its
position among the layer's (check, dtype, device) runs, and how long it has been running,
redrawn in place with a carriage return. Nothing is written when the stream is not a
terminal (a log file, a pipe, CI) or when the user asked for ``--quiet``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from invlin.validate.results import CheckEvent

__all__ = ["LayerKey", "Progress", "ProgressLine", "progress_text"]


def progress_text(
    event: CheckEvent,
    label: str,
    elapsed: float,
    *,
    layer: int = 0,
    layers: int = 1,
    running: int = 1,
    width: int | None = None,
) -> str:
    """The progress line for ``event`` (a check of the layer ``label``) after ``elapsed``
    seconds: ``[position/total] label check dtype/device ... 4.1 s``, then which layer of
    ``layers`` (when more than one) and how many run side by side (when more than one), cut
    to ``width`` characters."""
    position = event.index + (1 if event.phase == "start" else 0)
    text = (
        f"[{position}/{event.total}] {label} {event.check} {event.dtype}/{event.device} "
        f"... {elapsed:.1f} s"
    )
    if layers > 1:
        text += f"  (layer {layer + 1}/{layers}"
        text += f", {running} running)" if running > 1 else ")"
    if width is not None and len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text


#: Which layer of a run: its number (0-based, in run order), or ``(number, k)`` for the k-th
#: inner transform of the whole flow that layer ``number`` is.
LayerKey = int | tuple[int, int]


class Progress:
    """What a run reports its progress to; this base class ignores it all."""

    def begin(self, layers: int) -> None:
        """The run will validate ``layers`` layers."""

    def more(self, layers: int) -> None:
        """``layers`` more layers joined the run: a whole flow's inner transforms, known once
        the flow itself is done."""

    def event(self, layer: LayerKey, label: str, event: CheckEvent) -> None:
        """Layer ``layer``, shown as ``label``, sent ``event``."""

    def finished(self, layer: LayerKey) -> None:
        """Layer ``layer`` has its report."""

    def tick(self) -> None:
        """Time passed (called a few times a second while layers run)."""

    def close(self) -> None:
        """The run is over."""


class ProgressLine(Progress):
    """The live line on ``stream`` (default stderr); silent unless ``enabled`` (default: the
    stream is a terminal). ``layers`` is how many layers the run validates (grown by
    :meth:`more`); a flow's inner transforms are numbered after the layers announced before
    them, in the order they start."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        layers: int = 1,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled, self.layers, self.clock = enabled, layers, clock
        self._running: dict[LayerKey, tuple[str, CheckEvent, float]] = {}
        self._begun = layers
        self._numbers: dict[LayerKey, int] = {}  # inner transforms' numbers, as they start
        self._shown = 0

    def _width(self) -> int:
        """The terminal's width less one (a full line would wrap), 79 when unknown."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns - 1 if columns > 1 else 79

    def _write(self, text: str) -> None:
        pad = " " * max(0, self._shown - len(text))
        self.stream.write("\r" + text + pad + ("\r" + text if pad else ""))
        self.stream.flush()
        self._shown = len(text)

    def begin(self, layers: int) -> None:
        self.layers = self._begun = layers

    def more(self, layers: int) -> None:
        self.layers += layers

    def _number(self, layer: LayerKey) -> int:
        if isinstance(layer, int):
            return layer
        # after every layer announced by begin, in the order the inner transforms start
        return self._numbers.setdefault(layer, self._begun + len(self._numbers))

    def event(self, layer: LayerKey, label: str, event: CheckEvent) -> None:
        self._number(layer)  # an inner transform is numbered when it starts
        if event.phase == "start" or layer not in self._running:
            self._running[layer] = (label, event, self.clock())
        self.tick()

    def finished(self, layer: LayerKey) -> None:
        self._running.pop(layer, None)
        if not self._running:
            self.close()

    def tick(self) -> None:
        if not self.enabled or not self._running:
            return
        layer, (label, event, since) = max(self._running.items(), key=lambda kv: kv[1][2])
        self._write(
            progress_text(
                event,
                label,
                self.clock() - since,
                layer=self._number(layer),
                layers=self.layers,
                running=len(self._running),
                width=self._width(),
            )
        )

    def close(self) -> None:
        if self.enabled and self._shown:
            self._write("")
