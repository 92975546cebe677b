"""Outcomes of validation checks and the conformance table they make up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckResult", "Conformance", "LayerReport", "Status"]

Status = Literal["pass", "fail", "error", "skip"]


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


@dataclass
class LayerReport:
    """All checks of one layer."""

    name: str
    library: str
    target: str
    results: list[CheckResult] = field(default_factory=list)
    error: str | None = None  # the factory/adapter itself failed

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.status in ("pass", "skip") for r in self.results)


@dataclass
class Conformance:
    """The conformance table: every layer validated in one run, plus environment metadata."""

    layers: list[LayerReport] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

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
