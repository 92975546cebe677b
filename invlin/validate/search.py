"""Hypothesis search over a check's cases: worst ratio seen and the shrunk minimal failing case."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import target as hypothesis_target
from hypothesis.strategies import SearchStrategy

from invlin._json import jsonable as _jsonable
from invlin.testing.profiles import PROFILES
from invlin.validate.protocol import Unsupported

__all__ = [
    "SHRINK_LIMIT",
    "LayerFault",
    "Outcome",
    "Probe",
    "internal",
    "jsonable",
    "search",
    "tensor_literal",
]

#: Evaluations allowed after the first failure: shrinking stops there (the example is then the
#: smallest failing one found so far) so that a failing check costs bounded time.
SHRINK_LIMIT: dict[str, int] = {"dev": 40, "ci": 150, "thorough": 1000}
_MAX_INLINE = 256  # entries of an array written into an example as a list


@dataclass
class Probe:
    """What one case gave: ``ratio`` (worst, tolerance-engine units) against ``allowed``.

    ``ok`` is the verdict; ``message`` says what was compared (and, on failure, where it went
    wrong); ``example`` the case as JSON-ready data; ``repro`` Python lines that rerun it, given
    an ``adapter`` (see :attr:`CheckContext.setup`); ``judged`` how many cases (rows, points)
    this probe really judged — a probe that could judge nothing (every row's Jacobian singular)
    returns ``ok=True, judged=0``, and a search whose probes judged nothing in all is
    ``insufficient``, never a pass.
    """

    ok: bool
    ratio: float | None = None
    allowed: float | None = None
    message: str = ""
    example: dict[str, Any] | None = None
    repro: str | None = None
    judged: int = 1


@dataclass
class Outcome:
    """Result of a search: ``failure`` (the shrunk failing probe) or ``None``; ``raised`` the
    ``"Type: message"`` of an exception the layer raised on the shrunk case (with that case in
    ``failure``); ``worst`` the passing probe with the largest ratio; ``examples`` evaluated;
    ``judged`` the cases the passing probes judged (sum of :attr:`Probe.judged`);
    ``unjudged`` the message of the last probe that judged nothing (why it could not)."""

    failure: Probe | None = None
    raised: str | None = None
    worst: Probe | None = None
    examples: int = 0
    judged: int = 0
    unjudged: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        probe = self.failure if self.failure is not None else self.worst
        return None if probe is None else probe.ratio

    @property
    def allowed(self) -> float | None:
        probe = self.failure if self.failure is not None else self.worst
        return None if probe is None else probe.allowed


class LayerFault(ValueError):
    """Raised by the validator's own code about something the layer did (a wrong output type or
    shape): reported as the layer's exception, never as a validator bug."""


_OWN = tuple(str(Path(__file__).resolve().parent / d) for d in ("checks", "search.py", "runner.py"))
_OWN += (str(Path(__file__).resolve().parents[1] / "testing"),)


def internal(exc: BaseException) -> bool:
    """True when ``exc`` was raised by the validator's own code (checks, search, runner, the
    tolerance engine) rather than by the layer or its adapter — a validator bug — unless it is
    a :class:`LayerFault`."""
    if isinstance(exc, LayerFault):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and str(Path(last).resolve()).startswith(_OWN)


class _Failed(Exception):
    def __init__(self, probe: Probe, case: Any = None) -> None:
        super().__init__(probe.message)
        self.probe = probe
        self.case = case


class _Raised(Exception):
    def __init__(self, text: str, probe: Probe, case: Any = None) -> None:
        super().__init__(text)
        self.text = text
        self.probe = probe
        self.case = case


#: Rows of a failing batch tried alone when the probe does not name the failing row.
_ROWS_TRIED = 8
#: Rows of a batch on which the layer raised, tried alone for the one that raises.
_ROWS_RAISING = 32


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: arrays/tensors as (nested) lists when they have at most
    256 entries (else shape and extremes), non-finite floats as the strings "inf", "-inf",
    "nan", other objects as their repr."""
    return _jsonable(value, max_inline=_MAX_INLINE, fallback=repr)


def tensor_literal(a: Any, dtype: str) -> str:
    """Python source of a torch tensor holding ``a`` exactly (float reprs round-trip)."""
    arr = np.asarray(a, dtype=np.float64)
    return f"torch.tensor({arr.tolist()!r}, dtype=torch.{dtype})"


def _key(case: Any) -> Any:
    if isinstance(case, np.ndarray):
        return ("nd", case.shape, case.tobytes())
    if isinstance(case, (tuple, list)):
        return tuple(_key(c) for c in case)
    return repr(case)


def _error_text(exc: BaseException) -> str:
    """``"Type: first line of the message"``."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _one_row(
    case: Any,
    failed: Probe,
    probe: Callable[[Any], Probe],
    describe: Callable[[Any], dict[str, Any]] | None,
    snippet: Callable[[Any], str] | None,
) -> Probe | None:
    """The failure of one row of a failing batch ``case`` (b, n) probed alone, or ``None``.

    Batches drawn wide fail on one row among hundreds; the example and its reproduction are
    then that row alone when it fails by itself (a defect that needs the whole batch, such as
    rows that see each other, keeps the batch). Tried: the row the probe names
    (``example["row"]``), else the first :data:`_ROWS_TRIED` rows.
    """
    if not isinstance(case, np.ndarray) or case.ndim != 2 or case.shape[0] < 2:
        return None
    named = (failed.example or {}).get("row")
    rows = (
        [int(named)]
        if isinstance(named, (int, np.integer)) and 0 <= named < len(case)
        else range(min(_ROWS_TRIED, case.shape[0]))
    )
    for j in rows:
        single = case[j : j + 1]
        try:
            out = probe(single)
        except Exception as exc:
            if internal(exc):
                raise
            continue  # raising alone is a different finding: keep the batch's
        if not out.ok:
            if out.example is None and describe is not None:
                out.example = describe(single)
            out.example = jsonable(out.example)
            if out.repro is None and snippet is not None:
                out.repro = snippet(single)
            return out
    return None


def _one_row_raising(
    case: Any,
    text: str,
    probe: Callable[[Any], Probe],
    describe: Callable[[Any], dict[str, Any]] | None,
    snippet: Callable[[Any], str] | None,
) -> Probe | None:
    """The first of the first :data:`_ROWS_RAISING` rows of a batch ``case`` (b, n) on which
    the layer raises the same exception type alone, as a failing :class:`Probe`, or ``None``."""
    if not isinstance(case, np.ndarray) or case.ndim != 2 or case.shape[0] < 2:
        return None
    kind = text.split(":")[0]
    for j in range(min(_ROWS_RAISING, case.shape[0])):
        single = case[j : j + 1]
        try:
            probe(single)
        except Exception as exc:
            if internal(exc):
                raise
            if _error_text(exc).split(":")[0] == kind:
                return Probe(
                    ok=False,
                    message=f"the layer raised {_error_text(exc)}",
                    example=jsonable(describe(single)) if describe else None,
                    repro=snippet(single) if snippet else None,
                )
    return None


def search(
    strategy: SearchStrategy,
    probe: Callable[[Any], Probe],
    *,
    profile: str,
    max_examples: int,
    seed: int = 0,
    describe: Callable[[Any], dict[str, Any]] | None = None,
    snippet: Callable[[Any], str] | None = None,
    explicit: Iterable[Any] = (),
) -> Outcome:
    """Run ``probe`` on up to ``max_examples`` cases drawn from ``strategy`` (after the
    ``explicit`` ones); stop at the first failing case and shrink it.

    ``profile`` (dev/ci/thorough) sets derandomisation (ci), targeting (thorough: the search is
    steered towards large ratios) and the shrink budget :data:`SHRINK_LIMIT`; other runs are
    seeded with ``seed``. An exception raised inside ``probe`` (by the layer) is shrunk like a
    failure and returned in ``raised``, its case in ``failure`` (via ``describe``/``snippet``).
    Nothing is written to disk (no example database) or printed. :class:`Unsupported` raised by
    ``probe`` ends the search and is re-raised (the check is skipped); an exception from the
    validator's own code (:func:`internal`) propagates as the bug it is.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples must be a positive integer, got {max_examples!r}")
    prof = PROFILES[profile]
    limit = SHRINK_LIMIT[profile]
    state: dict[str, Any] = {
        "n": 0,
        "after": 0,
        "failing": set(),
        "worst": None,
        "last": None,
        "judged": 0,
    }

    def body(case: Any) -> None:
        key = _key(case)
        if state.get("unsupported") is not None:
            return
        if state["failing"]:
            state["after"] += 1
            if state["after"] > limit:  # shrink budget spent: only known failures fail
                if key in state["failing"]:
                    raise state["failing_exc"][key]
                return
        state["n"] += 1
        try:
            out = probe(case)
        except Unsupported as exc:  # the check cannot run on this layer: stop, skip it
            state["unsupported"] = exc
            return
        except Exception as exc:  # the layer raised: keep the case, let Hypothesis shrink it
            if internal(exc):
                raise
            p = Probe(
                ok=False,
                message=f"the layer raised {_error_text(exc)}",
                example=jsonable(describe(case)) if describe else None,
                repro=snippet(case) if snippet else None,
            )
            err = _Raised(_error_text(exc), p, case)
            _remember(key, err)
            raise err from exc
        if out.ok:
            state["judged"] += max(0, int(out.judged))
            if out.judged <= 0:
                state["unjudged"] = out.message
            if out.ratio is not None and math.isfinite(out.ratio):
                worst = state["worst"]
                if worst is None or worst.ratio is None or out.ratio > worst.ratio:
                    state["worst"] = out
                if prof.targeting:
                    hypothesis_target(float(out.ratio), label="ratio")
            return
        if out.example is None and describe is not None:
            out.example = describe(case)
        out.example = jsonable(out.example)
        if out.repro is None and snippet is not None:
            out.repro = snippet(case)
        err2 = _Failed(out, case)
        _remember(key, err2)
        raise err2

    def _remember(key: Any, err: Exception) -> None:
        state["failing"].add(key)
        state.setdefault("failing_exc", {})[key] = err
        state["last"] = err

    phases = [Phase.explicit, Phase.generate, Phase.shrink]
    if prof.targeting:
        phases.insert(2, Phase.target)
    config = settings(
        max_examples=max_examples,
        derandomize=prof.derandomize,
        database=None,
        deadline=None,
        verbosity=Verbosity.quiet,
        phases=phases,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    test = given(strategy)(body)
    for case in reversed(list(explicit)):
        test = example(case)(test)
    test = config(test)
    if not prof.derandomize:
        test = hypothesis_seed(seed)(test)
    outcome = Outcome()
    try:
        test()
        if state.get("unsupported") is not None:
            raise state["unsupported"]
    except _Failed as exc:
        outcome.failure = exc.probe
        one = _one_row(exc.case, exc.probe, probe, describe, snippet)
        if one is not None:
            outcome.failure = one
            outcome.notes.append("reduced to the failing row alone")
    except _Raised as exc:
        outcome.failure, outcome.raised = exc.probe, exc.text
        one = _one_row_raising(exc.case, exc.text, probe, describe, snippet)
        if one is not None:
            outcome.failure = one
            outcome.notes.append("reduced to a row that raises alone")
    except Unsupported:
        raise
    except Exception as exc:  # Hypothesis itself gave up (flaky layer, ...): report the last case
        last = state["last"]
        if last is None or internal(exc):
            raise
        outcome.notes.append(
            f"the search ended with {type(exc).__name__}: the layer did not "
            f"fail reproducibly; the last failing case is reported unshrunk"
        )
        if isinstance(last, _Raised):
            outcome.failure, outcome.raised = last.probe, last.text
        else:
            outcome.failure = last.probe
    if state["after"] > limit:
        outcome.notes.append(f"shrinking stopped after {limit} evaluations")
    outcome.worst = state["worst"]
    outcome.examples = state["n"]
    outcome.judged = state["judged"]
    outcome.unjudged = state.get("unjudged", "")
    return outcome
