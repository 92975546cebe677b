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

from invlin._errors import error_summary
from invlin._json import jsonable as _jsonable
from invlin._validation import positive_int
from invlin.search_profiles import Profile, profile_named
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


@dataclass(frozen=True)
class _Probing:
    """The caller's functions: ``probe`` judges a case; ``describe`` and ``snippet`` (optional)
    give a failing case's JSON-ready example and its reproduction lines."""

    probe: Callable[[Any], Probe]
    describe: Callable[[Any], dict[str, Any]] | None
    snippet: Callable[[Any], str] | None

    def completed(self, out: Probe, case: Any) -> Probe:
        """``out``, a failing probe of ``case``, with its example (JSON-ready) and reproduction
        filled in where the probe left them out."""
        if out.example is None and self.describe is not None:
            out.example = self.describe(case)
        out.example = jsonable(out.example)
        if out.repro is None and self.snippet is not None:
            out.repro = self.snippet(case)
        return out

    def raised(self, text: str, case: Any) -> Probe:
        """The failing probe of a ``case`` on which the layer raised ``text`` ("Type: ...")."""
        return Probe(
            ok=False,
            message=f"the layer raised {text}",
            example=jsonable(self.describe(case)) if self.describe else None,
            repro=self.snippet(case) if self.snippet else None,
        )


def _rows(case: Any) -> bool:
    """Whether ``case`` is a batch (b, n) of at least two rows, which a failure may reduce."""
    return isinstance(case, np.ndarray) and case.ndim == 2 and case.shape[0] >= 2


def _one_row(case: Any, failed: Probe, probing: _Probing) -> Probe | None:
    """The failure of one row of a failing batch ``case`` (b, n) probed alone, or ``None``.

    Batches drawn wide fail on one row among hundreds; the example and its reproduction are
    then that row alone when it fails by itself (a defect that needs the whole batch, such as
    rows that see each other, keeps the batch). Tried: the row the probe names
    (``example["row"]``), else the first :data:`_ROWS_TRIED` rows.
    """
    if not _rows(case):
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
            out = probing.probe(single)
        except Exception as exc:
            if internal(exc):
                raise
            continue  # raising alone is a different finding: keep the batch's
        if not out.ok:
            return probing.completed(out, single)
    return None


def _one_row_raising(case: Any, text: str, probing: _Probing) -> Probe | None:
    """The first of the first :data:`_ROWS_RAISING` rows of a batch ``case`` (b, n) on which
    the layer raises the same exception type alone, as a failing :class:`Probe`, or ``None``."""
    if not _rows(case):
        return None
    kind = text.split(":")[0]
    for j in range(min(_ROWS_RAISING, case.shape[0])):
        single = case[j : j + 1]
        try:
            probing.probe(single)
        except Exception as exc:
            if internal(exc):
                raise
            if error_summary(exc).split(":")[0] == kind:
                return probing.raised(error_summary(exc), single)
    return None


@dataclass
class _SearchState:
    """What the search has seen, across Hypothesis's calls of :meth:`body`.

    ``failing`` maps each failing case (by :func:`_key`) to the exception it raised, ``last``
    is the latest of those; ``after_failure`` counts the evaluations since the first failure
    against the shrink budget ``limit``; ``worst`` is the passing probe with the largest finite
    ratio; ``judged``/``unjudged`` as in :class:`Outcome`; ``unsupported`` the
    :class:`Unsupported` that stopped the search.
    """

    probing: _Probing
    limit: int
    targeting: bool
    evaluated: int = 0
    after_failure: int = 0
    failing: dict[Any, Exception] = field(default_factory=dict)
    last: Exception | None = None
    worst: Probe | None = None
    judged: int = 0
    unjudged: str = ""
    unsupported: Unsupported | None = None

    def body(self, case: Any) -> None:
        """The test Hypothesis runs on each case: returns when it passes (or is not run),
        raises :class:`_Failed`/:class:`_Raised` when it fails."""
        key = _key(case)
        if self.unsupported is not None or self._budget_spent(key):
            return
        self.evaluated += 1
        out = self._call(case, key)
        if out is None:
            return
        if out.ok:
            self._passed(out)
            return
        raise self._remember(key, _Failed(self.probing.completed(out, case), case))

    @property
    def shrink_stopped(self) -> bool:
        """Whether shrinking ran out of its budget."""
        return self.after_failure > self.limit

    def _budget_spent(self, key: Any) -> bool:
        """Count an evaluation after the first failure; once the shrink budget is spent, only
        known failures fail (re-raised) and every other case passes unevaluated (True)."""
        if not self.failing:
            return False
        self.after_failure += 1
        if not self.shrink_stopped:
            return False
        if key in self.failing:
            raise self.failing[key]
        return True

    def _call(self, case: Any, key: Any) -> Probe | None:
        """``probe(case)``; ``None`` when it raised :class:`Unsupported` (the search stops, the
        check is skipped). A layer's exception keeps the case for Hypothesis to shrink."""
        try:
            return self.probing.probe(case)
        except Unsupported as exc:
            self.unsupported = exc
            return None
        except Exception as exc:
            if internal(exc):
                raise
            text = error_summary(exc)
            raise self._remember(key, _Raised(text, self.probing.raised(text, case), case)) from exc

    def _passed(self, out: Probe) -> None:
        """Count what a passing probe judged; keep it when its ratio is the worst so far."""
        self.judged += max(0, int(out.judged))
        if out.judged <= 0:
            self.unjudged = out.message
        if out.ratio is None or not math.isfinite(out.ratio):
            return
        if self.worst is None or self.worst.ratio is None or out.ratio > self.worst.ratio:
            self.worst = out
        if self.targeting:
            hypothesis_target(float(out.ratio), label="ratio")

    def _remember(self, key: Any, err: Exception) -> Exception:
        """Record ``err`` as the failure of the case ``key`` (re-raised once shrinking stops)."""
        self.failing[key] = err
        self.last = err
        return err


def _hypothesis_test(
    strategy: SearchStrategy,
    body: Callable[[Any], None],
    prof: Profile,
    *,
    max_examples: int,
    seed: int,
    explicit: Iterable[Any],
) -> Callable[[], None]:
    """``body`` as a Hypothesis test over ``strategy`` (after the ``explicit`` cases), quiet and
    without an example database, derandomised or seeded as ``prof`` says."""
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
    return test


def _found(outcome: Outcome, err: Exception, probing: _Probing, *, shrunk: bool) -> None:
    """Put the failure ``err`` (:class:`_Failed` or :class:`_Raised`) in ``outcome``, reduced
    to one row of its batch where that row fails alone (only for a ``shrunk`` case)."""
    if isinstance(err, _Raised):
        outcome.failure, outcome.raised = err.probe, err.text
        one = _one_row_raising(err.case, err.text, probing) if shrunk else None
        note = "reduced to a row that raises alone"
    else:
        assert isinstance(err, _Failed)
        outcome.failure = err.probe
        one = _one_row(err.case, err.probe, probing) if shrunk else None
        note = "reduced to the failing row alone"
    if one is not None:
        outcome.failure = one
        outcome.notes.append(note)


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
    prof = profile_named(profile)
    max_examples = positive_int(max_examples, "max_examples")
    probing = _Probing(probe, describe, snippet)
    state = _SearchState(probing, limit=SHRINK_LIMIT[profile], targeting=prof.targeting)
    test = _hypothesis_test(
        strategy, state.body, prof, max_examples=max_examples, seed=seed, explicit=explicit
    )
    outcome = Outcome()
    try:
        test()
        if state.unsupported is not None:
            raise state.unsupported
    except (_Failed, _Raised) as exc:
        _found(outcome, exc, probing, shrunk=True)
    except Unsupported:
        raise
    except Exception as exc:  # Hypothesis itself gave up (flaky layer, ...): report the last case
        if state.last is None or internal(exc):
            raise
        outcome.notes.append(
            f"the search ended with {type(exc).__name__}: the layer did not "
            f"fail reproducibly; the last failing case is reported unshrunk"
        )
        _found(outcome, state.last, probing, shrunk=False)
    if state.shrink_stopped:
        outcome.notes.append(f"shrinking stopped after {state.limit} evaluations")
    outcome.worst = state.worst
    outcome.examples = state.evaluated
    outcome.judged = state.judged
    outcome.unjudged = state.unjudged
    return outcome
