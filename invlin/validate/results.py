"""Outcomes of validation checks and the conformance table they make up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BAD", "CheckEvent", "CheckResult", "Conformance", "LayerReport", "Status"]

#: ``insufficient``: the check ran but judged no case (every row unjudgeable), so it proves
#: nothing; it fails a run unless the user allows it (``--allow-insufficient``).
Status = Literal["pass", "fail", "error", "skip", "insufficient"]

#: Statuses that make a layer (and the run) fail; ``insufficient`` joins them unless allowed.
BAD: tuple[str, ...] = ("fail", "error")


@dataclass
class CheckResult:
    """One check of one layer in one dtype/device.

    ``ratio`` is the worst error ratio found (tolerance-engine units) and ``allowed`` the bound it
    was judged against; both are ``None`` for checks without a ratio (shapes, dtype, finiteness).
    ``example`` holds the minimal failing case (inputs, seed, shapes) and ``repro`` a runnable
    snippet; ``exception`` the ``"Type: message"`` of an exception the layer raised.
    """

    check: str
    dtype: str
    device: str
    status: Status
    ratio: float | None = None
    allowed: float | None = None
    message: str = ""
    example: dict[str, Any] | None = None
    repro: str | None = None
    exception: str | None = None
    cases: int | None = None


@dataclass(frozen=True)
class CheckEvent:
    """Progress of a run, sent to a ``progress`` callback: ``phase`` is ``"start"`` before a
    check runs and ``"end"`` after it (then ``status`` is its result's status); ``index`` and
    ``total`` count the (check, dtype, device) runs of this layer."""

    layer: str
    check: str
    dtype: str
    device: str
    phase: Literal["start", "end"]
    index: int
    total: int
    status: str | None = None


@dataclass
class LayerReport:
    """All checks of one layer."""

    name: str
    library: str
    target: str
    results: list[CheckResult] = field(default_factory=list)
    error: str | None = None  # the factory/adapter itself failed
    #: how the parameters were moved off their initialisation before checking (None: not moved)
    perturbation: str | None = None

    @property
    def passed(self) -> bool:
        """No error, and every check passed or was skipped (``insufficient`` fails)."""
        return self.ok(allow_insufficient=False)

    def ok(self, *, allow_insufficient: bool = False) -> bool:
        """:attr:`passed`, optionally letting ``insufficient`` results through."""
        bad = BAD if allow_insufficient else (*BAD, "insufficient")
        return self.error is None and not any(r.status in bad for r in self.results)


@dataclass
class Conformance:
    """The conformance table: every layer validated in one run, plus environment metadata."""

    layers: list[LayerReport] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every layer :attr:`LayerReport.passed`."""
        return self.ok(allow_insufficient=False)

    def ok(self, *, allow_insufficient: bool = False) -> bool:
        """Every layer :meth:`LayerReport.ok`."""
        return all(x.ok(allow_insufficient=allow_insufficient) for x in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (round-trips through :meth:`from_dict`)."""
        return {"meta": self.meta, "layers": [dataclasses.asdict(x) for x in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conformance:
        layers = []
        for item in data["layers"]:
            item = dict(item)
            results = [CheckResult(**r) for r in item.pop("results")]
            layers.append(LayerReport(results=results, **item))
        return cls(layers=layers, meta=dict(data.get("meta", {})))
