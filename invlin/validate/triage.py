"""Hand-written verdicts on conformance findings (``triage.json``) and their match to results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invlin.validate.results import CheckResult, Conformance

__all__ = ["KINDS", "TRIAGE_FILE", "Verdict", "load_triage", "match", "unmatched"]

#: The triage file's name inside a reports folder (next to the per-library folders).
TRIAGE_FILE = "triage.json"

#: What a finding can be, by the ``kind`` key of an entry → the phrase the report prints.
KINDS: dict[str, str] = {
    "defect": "library defect",
    "documented": "documented limitation",
    "floating-point": "inherent to floating point",
    "convention": "convention deviation (harmless where the library itself consumes it)",
}

_REQUIRED = ("library", "layer", "checks", "kind", "summary", "facts", "source", "reproduction")


@dataclass(frozen=True)
class Verdict:
    """What one finding is, with the facts behind it.

    ``library``/``layers`` name the catalog entries (the JSON key ``layer``: one name or a
    list, for one fact shared by several layers); ``checks`` the failed checks it explains
    (``("*",)``: every check of that layer); ``dtypes`` the dtypes it applies to (empty: all);
    ``kind`` a key of :data:`KINDS`; ``summary`` one line; ``facts`` where and why, measured;
    ``source`` the library's file:line (or documentation) it comes from; ``reproduction`` a
    standalone script that uses only the library and torch and asserts the fact.
    """

    library: str
    layers: tuple[str, ...]
    checks: tuple[str, ...]
    kind: str
    summary: str
    facts: str
    source: str
    reproduction: str
    dtypes: tuple[str, ...] = ()

    def covers(self, library: str, layer: str, check: str, dtype: str) -> bool:
        """True when this verdict explains ``check`` of ``layer`` failing in ``dtype``."""
        return (
            self.library == library
            and layer in self.layers
            and ("*" in self.checks or check in self.checks)
            and (not self.dtypes or dtype in self.dtypes)
        )

    @property
    def label(self) -> str:
        """The printed kind (:data:`KINDS`)."""
        return KINDS[self.kind]


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ValueError(f"{where}: {key!r} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _verdict(item: Any, where: str) -> Verdict:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object, got {type(item).__name__}")
    missing = [k for k in _REQUIRED if k not in item]
    unknown = sorted(set(item) - set(_REQUIRED) - {"dtypes"})
    if missing or unknown:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    for key in _REQUIRED:
        if key not in ("checks", "layer") and (
            not isinstance(item[key], str) or not item[key].strip()
        ):
            raise ValueError(f"{where}: {key!r} must be a non-empty string")
    layer = item["layer"]
    layers = (layer,) if isinstance(layer, str) and layer else _strings(layer, "layer", where)
    if item["kind"] not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {sorted(KINDS)}, got {item['kind']!r}")
    dtypes = _strings(item["dtypes"], "dtypes", where) if "dtypes" in item else ()
    return Verdict(
        library=item["library"],
        layers=layers,
        checks=_strings(item["checks"], "checks", where),
        kind=item["kind"],
        summary=item["summary"].strip(),
        facts=item["facts"].strip(),
        source=item["source"].strip(),
        reproduction=item["reproduction"].rstrip(),
        dtypes=dtypes,
    )


def load_triage(path: str | Path) -> list[Verdict]:
    """The verdicts of a triage file (a JSON list of objects with the keys of
    :class:`Verdict`); ``[]`` when the file does not exist. Raises ValueError naming the entry
    and key for malformed data."""
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: the triage must be a JSON list, got {type(data).__name__}")
    return [_verdict(item, f"{path.name} entry {i}") for i, item in enumerate(data)]


def match(verdicts: list[Verdict], library: str, layer: str, result: CheckResult) -> Verdict | None:
    """The first verdict that explains ``result`` (a failed or errored check of ``layer``)."""
    for v in verdicts:
        if v.covers(library, layer, result.check, result.dtype):
            return v
    return None


def unmatched(
    verdicts: list[Verdict], parts: dict[str, Conformance]
) -> tuple[list[tuple[str, str, CheckResult]], list[Verdict]]:
    """``(untriaged, stale)``: failed/errored results no verdict explains, as (library, layer,
    result), and verdicts that explain no failed/errored result (the library changed, or the
    validator did) — both printed by the summary so the triage cannot silently drift."""
    used: set[int] = set()
    untriaged = []
    for lib, part in parts.items():
        for layer in part.layers:
            for r in layer.results:
                if r.status not in ("fail", "error"):
                    continue
                v = match(verdicts, lib, layer.name, r)
                if v is None:
                    untriaged.append((lib, layer.name, r))
                else:
                    used.add(id(v))
    libraries = set(parts)
    stale = [v for v in verdicts if id(v) not in used and v.library in libraries]
    return untriaged, stale
