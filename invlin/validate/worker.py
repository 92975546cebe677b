"""Validate layers in worker processes, with time and memory limits, side by side.

The process that runs ``invlin validate`` never imports a layer's code (nor torch): it sends
TARGET strings (``pkg.mod:factory``, ``file.py:factory``; a library's catalog entry travels as
its own TARGET, ``invlin.validate.catalog:FACTORIES.<library>.<name>``) to worker processes,
which import them, run :func:`~invlin.validate.runner.validate` and send back, over a pipe,
every :class:`~invlin.validate.results.CheckEvent`, every result as it is decided and the
finished :class:`~invlin.validate.results.LayerReport` (as plain data: nothing the parent
unpickles imports anything).

Isolation. Each layer gets a fresh worker, so nothing a layer does to its process (a global it
sets, a function it patches, memory it leaks) reaches another layer. Workers come from a
*fork server* (``multiprocessing`` "forkserver" on Linux, "spawn" elsewhere): a clean
interpreter, started once per run, that imports torch and the validator and then forks one
worker per layer in milliseconds — so a run pays one interpreter start-up and one torch import
however many layers it validates (with "spawn", every worker pays both). The fork server never
runs torch code (no thread pools to break) and never imports a layer.

Limits, enforced by the parent because a layer that loops in native code cannot be
interrupted: a check that runs longer than :attr:`Limits.timeout` gets its worker killed and
an ``error`` result saying so, and the layer's remaining checks continue in a fresh worker; a
layer past :attr:`Limits.layer_timeout` in all is stopped, its unrun checks ``error``. A
worker that dies (``os._exit``, a segfault, the out-of-memory killer) gives the same kind of
``error`` for the check it was in. :attr:`Limits.memory_mb` caps each worker's data segment
(``RLIMIT_DATA``: heap and anonymous mappings, where tensors live), so a layer that allocates
too much gets ``MemoryError``/"can't allocate memory" — an ``error`` result — instead of
taking the machine down.

Workers ignore SIGINT: Ctrl-C reaches the parent, which kills them; so a ``KeyboardInterrupt``
seen in a worker was raised by the layer and is a result (see
:func:`~invlin.validate.runner.contained`). A worker's stdout is its stderr, so what a layer
prints never mixes into the parent's output (``--format json``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from invlin.validate.progress import Progress
from invlin.validate.results import CheckEvent, CheckResult, LayerReport
from invlin.validate.target import UsageError, split_target

__all__ = [
    "DEFAULT_TIMEOUT",
    "LAYER_TIMEOUT_FACTOR",
    "STARTUP_LIMIT",
    "Isolated",
    "LayerJob",
    "Limits",
    "library_modules",
    "run_isolated",
    "serve",
]

#: Seconds one check (or one import/build of a layer) may run: the ci profile's checks take
#: well under a second each on small layers and the thorough profile about ten times more, so
#: 120 s leaves two orders of magnitude for slow layers while a hung one costs two minutes.
DEFAULT_TIMEOUT: float = 120.0
#: A layer's overall limit, in units of the per-check limit, unless given.
LAYER_TIMEOUT_FACTOR: float = 5.0
#: Seconds a worker may take to start (the first one imports torch on a possibly busy machine).
STARTUP_LIMIT: float = 300.0


def library_modules() -> dict[str, str]:
    """``--library`` name → the module the fork server preloads for it (from
    :func:`invlin.validate.registry.declared`; nothing imported). A broken plug-in list is a
    :class:`UsageError`."""
    from invlin.validate.registry import PluginError, declared

    try:
        return {d.name: d.preload for d in declared()}
    except PluginError as exc:
        raise UsageError(str(exc)) from exc


_POLL = 0.25  # seconds between looks at the workers (and progress redraws)

Key = tuple[str, str, str]


# -- what crosses the pipe ---------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """``timeout``: seconds per check, and per import or build of a layer; ``layer_timeout``:
    seconds per layer in all; ``memory_mb``: each worker's data segment in MiB (it includes
    the ≈ 300 MiB torch and the validator take); ``None`` is no limit."""

    timeout: float | None = DEFAULT_TIMEOUT
    layer_timeout: float | None = DEFAULT_TIMEOUT * LAYER_TIMEOUT_FACTOR
    memory_mb: int | None = None


@dataclass(frozen=True)
class LayerJob:
    """One layer to validate: ``target`` (a TARGET string), ``label`` (names its warnings),
    and the ``name``/``library`` the report gets (``None``: the adapter's)."""

    target: str
    label: str
    name: str | None = None
    library: str | None = None
    #: the index of an inner transform of the flow ``target`` builds (``None``: the target)
    part: int | None = None


@dataclass
class Isolated:
    """What :func:`run_isolated` returns: one report per job (in order), the warnings raised
    (recorder entries), and the resolved ``checks``, ``dtypes`` and ``devices``."""

    reports: list[LayerReport]
    warnings: list[dict[str, Any]]
    checks: tuple[str, ...]
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]


def _plain(value: Any) -> Any:
    """``value`` as builtins only (NumPy scalars become floats, tuples lists, ...)."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return _plain(tolist())
        except Exception:
            pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


def _result(data: dict[str, Any]) -> CheckResult:
    return CheckResult(**data)


def _report(data: dict[str, Any]) -> LayerReport:
    data = dict(data)
    return LayerReport(results=[_result(r) for r in data.pop("results")], **data)


# -- the worker's side ---------------------------------------------------------------------
def _vm_data_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _limit_memory(mb: int | None) -> str | None:
    """Cap the data segment at ``mb`` MiB; why that cannot work, or ``None``."""
    if mb is None:
        return None
    try:
        import resource
    except ImportError:
        return "--memory-limit needs the resource module (Unix)"
    used = _vm_data_mb()
    if used is not None and used + 64 > mb:
        return (
            f"--memory-limit {mb} MB is below what a worker needs before it runs any layer "
            f"(about {used:.0f} MB for torch and the validator, plus headroom)"
        )
    limit = mb * 2**20
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError) as exc:
        return f"--memory-limit {mb} MB cannot be set here: {exc}"
    return None


_OOM_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "out of memory")


def _out_of_memory(data: dict[str, Any], mb: int | None, key: str) -> dict[str, Any]:
    """Say in ``data[key]`` that an allocation failed under the memory limit."""
    if mb is None:
        return data
    seen = " ".join(str(data.get(k) or "") for k in ("exception", "message", "error"))
    said = f"out of memory under --memory-limit {mb} MB: "
    text = data.get(key)
    if any(m in seen for m in _OOM_MARKERS) and text is not None and not text.startswith(said):
        data[key] = said + text
    return data


class _Child:
    """The worker: answers the parent's requests until the pipe closes."""

    def __init__(
        self,
        conn: multiprocessing.connection.Connection,
        memory_mb: int | None,
        refusal: str | None,
    ) -> None:
        self.conn, self.memory_mb, self.refusal = conn, memory_mb, refusal
        self.imported: dict[str, list[Any]] = {}  # TARGET -> global changes its import made

    def send(self, *msg: Any) -> None:
        self.conn.send(msg)

    def hello(self) -> None:
        import torch

        from invlin.validate.checks import CHECKS, CONDITIONAL, KNOWN
        from invlin.validate.distribution import DIST_CHECKS

        self.send(
            "hello",
            {
                "checks": [*KNOWN, *DIST_CHECKS],  # every check --check may name
                "default": list(CHECKS),  # the checks run when none is named
                "conditional": list(CONDITIONAL),  # ... and these with --context-features
                "cuda": bool(torch.cuda.is_available()),
                "refusal": self.refusal,
            },
        )

    def load(self, target: str) -> Callable[..., object]:
        """The factory of ``target``; the globals its import changed are remembered."""
        from invlin.validate import isolation
        from invlin.validate.target import load_target

        changes: list[Any] = []
        with isolation.guarded(changes):
            factory = load_target(target)
        if changes:
            self.imported.setdefault(target, changes)
        return factory

    def do_load(self, target: str, context_features: int = 0) -> None:
        from invlin.validate.runner import contained, explained

        try:
            factory = self.load(target)
        except UsageError as exc:
            self.send("loaded", "usage", str(exc))
        except BaseException as exc:
            if not contained(exc):
                raise
            self.send("loaded", "error", f"importing TARGET {target!r} raised {explained(exc)}")
        else:
            from invlin.validate.conditioning import accepts_context

            if context_features and not accepts_context(factory):
                self.send(
                    "loaded",
                    "usage",
                    f"TARGET {target!r}: the factory does not accept context_features, which "
                    f"--context-features {context_features} passes: give it a "
                    "context_features parameter (or leave --context-features out)",
                )
                return
            self.send("loaded", "ok", "")

    def do_catalog(self, library: str, context_features: int = 0) -> None:
        from invlin.validate.catalog import LIBRARIES, catalog
        from invlin.validate.runner import contained, explained

        if library not in LIBRARIES:
            self.send(
                "catalog",
                "usage",
                f"--library must be one of {', '.join(LIBRARIES)}, got {library!r}",
            )
            return
        try:
            if context_features:  # the library's conditional layers instead
                from invlin.validate.conditional_catalog import conditional_catalog

                entries = conditional_catalog(library)
            else:
                entries = catalog(library)
            from invlin.validate.distribution.catalog import flow_catalog

            entries += flow_catalog(library, conditional=bool(context_features))  # whole flows
        except ImportError as exc:
            self.send(
                "catalog",
                "usage",
                f"--library {library}: the library is not installed here ({exc})",
            )
        except BaseException as exc:
            if not contained(exc):
                raise
            self.send(
                "catalog",
                "usage",
                f"--library {library}: listing its layers raised {explained(exc)}",
            )
        else:
            self.send("catalog", "ok", [(e.name, e.target) for e in entries])

    def do_layer(self, job: LayerJob, options: dict[str, Any], known: list[dict[str, Any]]) -> None:
        from invlin.validate import isolation
        from invlin.validate.recorder import record_warnings
        from invlin.validate.runner import contained, explained, validate

        mb = self.memory_mb
        self.send("phase", "build")
        try:
            factory = self.load(job.target)
        except BaseException as exc:
            if not contained(exc):
                raise
            why = (
                str(exc)
                if isinstance(exc, UsageError)
                else f"importing TARGET {job.target!r} raised {explained(exc)}"
            )
            report = LayerReport(
                name=job.name or split_target(job.target)[1],
                library=job.library or "unknown",
                target=job.target,
                error=why,
            )
            self.send("report", _out_of_memory(_plain(report), mb, "error"), [])
            return
        if job.part is not None:  # an inner transform of a whole flow, as a layer
            from invlin.validate.distribution import part_factory

            factory = part_factory(factory, job.part)
        results = {(r["check"], r["dtype"], r["device"]): _result(r) for r in known}
        changes = self.imported.get(job.target)
        if changes:  # the import changed globals: the first dtype/device's finding says so
            where = (isolation.CHECK_NAME, options["dtypes"][0], options["devices"][0])
            findings = isolation.Findings(where[1], where[2])
            findings.extend(results.get(where))
            findings.add(f"the import of {job.target}", changes)
            results[where] = findings.result()

        def event(e: CheckEvent) -> None:
            self.send("event", _plain(e))

        def result(r: CheckResult) -> None:
            self.send("result", _out_of_memory(_plain(r), mb, "message"))

        warnings: list[dict[str, Any]] = []
        parts: list[str] = []  # a whole flow's inner transforms, each validated as a job
        with record_warnings(job.label, warnings):
            report = validate(
                factory,
                name=job.name,
                target=job.target,
                library=job.library,
                progress=event,
                on_result=result,
                known=results,
                on_parts=parts.extend,
                **options,
            )
        data = _plain(report)
        data["results"] = [_out_of_memory(r, mb, "message") for r in data["results"]]
        self.send("report", _out_of_memory(data, mb, "error"), _plain(warnings), parts)

    def serve(self) -> None:
        handlers: dict[str, Callable[..., None]] = {
            "hello": self.hello,
            "load": self.do_load,
            "catalog": self.do_catalog,
            "layer": self.do_layer,
        }
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            try:
                handlers[msg[0]](*msg[1:])
            except BaseException:  # a validator bug, or a layer's exception that escaped
                self.send("bug", traceback.format_exc())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()


def serve(conn: multiprocessing.connection.Connection, memory_mb: int | None) -> None:
    """Entry point of a worker process: ignore SIGINT, send stdout to stderr, apply the memory
    limit, then answer the parent's requests on ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.flush()
        os.dup2(2, 1)
    except OSError:
        pass
    _Child(conn, memory_mb, _limit_memory(memory_mb)).serve()
    # No interpreter shutdown: a layer's atexit handlers or threads must not hold the worker.
    os._exit(0)


# -- the parent's side ---------------------------------------------------------------------
def _context(libraries: Iterable[str]) -> Any:
    """The fork-server context (its server imports :mod:`invlin.validate.preload` and the
    catalog ``libraries``), or "spawn" where there is no fork server."""
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        modules = library_modules()
        libs = [modules[lib] for lib in libraries if lib in modules]
        ctx.set_forkserver_preload(["invlin.validate.preload", *libs])
        return ctx
    return multiprocessing.get_context("spawn")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _death(exitcode: int | None) -> str:
    """How a worker ended, in words."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        name = _signal_name(-exitcode)
        why = {
            "SIGSEGV": " (a crash in native code)",
            "SIGBUS": " (a crash in native code)",
            "SIGABRT": " (native code aborted)",
            "SIGKILL": " (the system's out-of-memory killer sends this)",
        }.get(name, "")
        return f"was killed by {name}{why}"
    return (
        f"exited with status {exitcode} (os._exit or exit() in native code: the "
        f"interpreter ended without raising)"
    )


def _seconds(t: float) -> str:
    return f"{t:g}" if t == int(t) else f"{t:.1f}"


class _Lost(Exception):
    """A worker timed out or died while it was asked something."""


@contextmanager
def _no_main() -> Iterator[None]:
    """Hide the ``__main__`` module while a worker starts: multiprocessing would otherwise make
    the worker run the caller's script again (a test file, a script without an
    ``if __name__ == "__main__"`` guard); a worker needs nothing from it."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _Proc:
    """One worker process seen from the parent."""

    def __init__(self, ctx: Any, memory_mb: int | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=serve, args=(child, memory_mb), name="invlin-validate-worker"
        )
        with _no_main():
            self.proc.start()
        child.close()

    def send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError):  # dead already: the sentinel will say so
            pass

    def messages(self) -> list[tuple[Any, ...]]:
        """Every message waiting in the pipe."""
        out = []
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError):
            pass
        return out

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def death(self) -> str:
        self.proc.join(1)
        return _death(self.proc.exitcode)

    def stop(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        self.conn.close()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


@dataclass
class _Slot:
    """A layer being validated: its worker, what it is doing since when, the results so far."""

    index: int
    job: LayerJob
    proc: _Proc
    started: float
    since: float
    key: Key | None = None  # the check running now
    phase: str = "build"  # build: importing/building; check: in ``key``; after: between checks
    name: str | None = None
    latest: dict[Key, dict[str, Any]] = field(default_factory=dict)
    done: bool = False
    parts: list[str] = field(default_factory=list)  # labels of a whole flow's inner transforms


class _Session:
    """The workers of one run; every one still alive is killed on exit."""

    def __init__(self, limits: Limits, libraries: Sequence[str]) -> None:
        self.limits = limits
        self.ctx = _context(libraries)
        self.procs: list[_Proc] = []
        self.spare: _Proc | None = None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.stop(kill=True)

    def start(self) -> _Proc:
        try:
            proc = _Proc(self.ctx, self.limits.memory_mb)
        except (OSError, EOFError) as exc:  # the fork server died (a library's import killed
            if self.ctx.get_start_method() == "spawn":  # it): workers start from scratch
                raise
            print(
                f"invlin validate: the worker fork server failed ({exc}); starting each "
                f"worker from scratch",
                file=sys.stderr,
            )
            self.ctx = multiprocessing.get_context("spawn")
            proc = _Proc(self.ctx, self.limits.memory_mb)
        self.procs.append(proc)
        return proc

    def retire(self, proc: _Proc, *, kill: bool = False) -> None:
        proc.stop(kill=kill)
        if proc in self.procs:
            self.procs.remove(proc)

    def ask(
        self, proc: _Proc, msg: tuple[Any, ...], limit: float | None, what: str
    ) -> tuple[Any, ...]:
        """Send ``msg`` and wait for the answer; :class:`_Lost` when ``proc`` dies or takes
        longer than ``limit`` seconds (it is then killed)."""
        proc.send(*msg)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            multiprocessing.connection.wait([proc.conn, proc.proc.sentinel], timeout=left)
            alive = proc.alive  # before reading: what a dead worker sent is all in the pipe
            for reply in proc.messages():
                if reply[0] == "bug":
                    raise RuntimeError(f"the validator's worker failed {what}:\n{reply[1]}")
                return reply
            if not alive:
                raise _Lost(f"the worker process {proc.death()} while {what}")
            if deadline is not None and time.monotonic() >= deadline:
                self.retire(proc, kill=True)
                raise _Lost(f"timed out after {_seconds(limit)} s {what}")

    # -- planning: resolve everything the user named, in one worker ------------------------
    def plan(
        self, targets: Sequence[str], libraries: Sequence[str], context_features: int = 0
    ) -> tuple[dict[str, Any], dict[str, str], dict[str, list[tuple[str, str]]]]:
        """(hello: checks and CUDA; {TARGET: why its import failed as a layer error}; catalog
        entries per library — the conditional ones when ``context_features`` > 0); raises
        :class:`UsageError` for what the user got wrong (a TARGET whose factory takes no
        ``context_features`` when it is > 0, too)."""
        proc = self.start()
        try:
            hello = self.ask(
                proc, ("hello",), max(STARTUP_LIMIT, self.limits.timeout or 0), "starting"
            )[1]
        except _Lost as exc:
            raise UsageError(f"the validator's worker process could not start: {exc}") from None
        if hello.get("refusal"):
            raise UsageError(hello["refusal"])
        failed = {}
        for target in targets:
            try:
                _, status, detail = self.ask(
                    proc,
                    ("load", target, context_features),
                    self.limits.timeout,
                    f"importing TARGET {target!r}",
                )
            except _Lost as exc:
                failed[target], proc = str(exc), self.start()
            else:
                if status == "usage":
                    raise UsageError(detail)
                if status == "error":
                    failed[target] = detail
        entries = {}
        for lib in dict.fromkeys(libraries):
            try:
                _, status, detail = self.ask(
                    proc,
                    ("catalog", lib, context_features),
                    self.limits.timeout,
                    f"listing the {lib} catalog",
                )
            except _Lost as exc:
                raise UsageError(f"--library {lib}: {exc}") from None
            if status == "usage":
                raise UsageError(detail)
            entries[lib] = [tuple(e) for e in detail]
        self.spare = proc
        return hello, failed, entries

    # -- running layers --------------------------------------------------------------------
    def run(
        self,
        jobs: Sequence[tuple[int, LayerJob]],
        options: dict[str, Any],
        workers: int,
        progress: Progress,
    ) -> dict[int, tuple[LayerReport, list[dict[str, Any]]]]:
        """Validate every (number, job), ``workers`` at a time: {number: (report, warnings)}."""
        out: dict[int, tuple[LayerReport, list[dict[str, Any]]]] = {}
        pending = deque(jobs)
        slots: list[_Slot] = []
        while pending or slots:
            while pending and len(slots) < workers:
                i, job = pending.popleft()
                proc, self.spare = (self.spare or self.start()), None
                now = time.monotonic()
                slots.append(_Slot(i, job, proc, started=now, since=now))
                proc.send("layer", job, options, [])
            waitables = [s.proc.conn for s in slots] + [s.proc.proc.sentinel for s in slots]
            multiprocessing.connection.wait(waitables, timeout=_POLL)
            for slot in list(slots):
                finished = self._step(slot, options, progress)
                if finished is not None:
                    out[slot.index] = finished
                    slots.remove(slot)
                    progress.finished(slot.index)
                    progress.more(len(slot.parts))
                    for k, label in enumerate(slot.parts):  # a flow's inner transforms: (i, k)
                        part = dataclasses.replace(slot.job, name=label, label=label, part=k)
                        pending.append(((slot.index, k), part))
            progress.tick()
        if self.spare is not None:
            self.retire(self.spare)
            self.spare = None
        return out

    def _step(
        self, slot: _Slot, options: dict[str, Any], progress: Progress
    ) -> tuple[LayerReport, list[dict[str, Any]]] | None:
        """Handle what ``slot``'s worker sent; enforce the limits. The finished report, or
        ``None`` while the layer runs."""
        alive = slot.proc.alive  # before reading: what a dead worker sent is all in the pipe
        for msg in slot.proc.messages():
            kind = msg[0]
            if kind == "phase":  # the worker is up: the build's clock starts now
                slot.since = time.monotonic()
            elif kind == "event":
                event = CheckEvent(**msg[1])
                slot.name = event.layer
                slot.since = time.monotonic()
                if event.phase == "start":
                    slot.phase, slot.key = "check", (event.check, event.dtype, event.device)
                else:
                    slot.phase, slot.key = "after", None
                job = slot.job
                progress.event(
                    slot.index,
                    f"{job.library}:{event.layer}" if job.library else event.layer,
                    event,
                )
            elif kind == "result":
                r = msg[1]
                slot.latest[(r["check"], r["dtype"], r["device"])] = r
            elif kind == "report":
                self.retire(slot.proc)
                slot.parts = list(msg[3]) if len(msg) > 3 else []
                return _report(msg[1]), list(msg[2])
            elif kind == "bug":
                self.retire(slot.proc, kill=True)
                return self._give_up(slot, options, f"validator bug in the worker: {msg[1]}")
        now = time.monotonic()
        limits = self.limits
        if not alive:
            return self._lost(slot, options, f"the worker process {slot.proc.death()}", False)
        if limits.layer_timeout is not None and now - slot.started > limits.layer_timeout:
            self.retire(slot.proc, kill=True)
            return self._out_of_time(slot, options)
        if limits.timeout is not None and now - slot.since > limits.timeout:
            self.retire(slot.proc, kill=True)
            return self._lost(slot, options, f"timed out after {_seconds(limits.timeout)} s", True)
        return None

    def _where(self, slot: _Slot, options: dict[str, Any]) -> str:
        if slot.phase == "check" and slot.key is not None:
            check, dtype, device = slot.key
            return f"in check {check} ({dtype}/{device})"
        if slot.phase == "build":
            return f"building the layer ({slot.job.target}, features={options['features']})"
        return "after its checks"

    def _lost(
        self, slot: _Slot, options: dict[str, Any], what: str, timed_out: bool
    ) -> tuple[LayerReport, list[dict[str, Any]]] | None:
        """The worker timed out or died: record the check it was in, go on in a fresh worker
        (or give the layer up when it was not in a check)."""
        self.retire(slot.proc, kill=True)
        where = self._where(slot, options)
        if slot.phase != "check" or slot.key is None:
            did = (
                "the factory did not return"
                if slot.phase == "build" and timed_out
                else "the layer did not return"
                if timed_out
                else "the layer ended the interpreter"
            )
            return self._give_up(slot, options, f"{what} {where} — {did}")
        check, dtype, device = slot.key
        did = "the layer did not return" if timed_out else "the layer ended the interpreter"
        slot.latest[slot.key] = _plain(
            CheckResult(
                check=check,
                dtype=dtype,
                device=device,
                status="error",
                message=f"{what} {where} — {did}; the worker was stopped and the layer's "
                f"remaining checks ran in a fresh worker",
            )
        )
        slot.proc = self.start()
        slot.phase, slot.key, slot.since = "build", None, time.monotonic()
        slot.proc.send("layer", slot.job, options, list(slot.latest.values()))
        return None

    def _give_up(
        self, slot: _Slot, options: dict[str, Any], error: str
    ) -> tuple[LayerReport, list[dict[str, Any]]]:
        return LayerReport(
            name=self._name(slot),
            library=slot.job.library or "unknown",
            target=slot.job.target,
            error=error,
            results=self._ordered(slot, options),
        ), []

    def _out_of_time(
        self, slot: _Slot, options: dict[str, Any]
    ) -> tuple[LayerReport, list[dict[str, Any]]]:
        """The layer's overall limit ran out: the running and every unrun check are errors."""
        limit = _seconds(self.limits.layer_timeout or 0)
        ran_out = f"the layer's time limit of {limit} s (--layer-timeout) ran out"
        if slot.phase == "check" and slot.key is not None:
            check, dtype, device = slot.key
            slot.latest[slot.key] = _plain(
                CheckResult(
                    check=check,
                    dtype=dtype,
                    device=device,
                    status="error",
                    message=f"{ran_out} {self._where(slot, options)}; the worker was stopped",
                )
            )
        for key in self._keys(options):
            if key not in slot.latest:
                slot.latest[key] = _plain(
                    CheckResult(
                        check=key[0],
                        dtype=key[1],
                        device=key[2],
                        status="error",
                        message=f"not run: {ran_out} before this check",
                    )
                )
        error = None if slot.phase == "check" else f"{ran_out} {self._where(slot, options)}"
        return LayerReport(
            name=self._name(slot),
            library=slot.job.library or "unknown",
            target=slot.job.target,
            error=error,
            results=self._ordered(slot, options),
        ), []

    @staticmethod
    def _name(slot: _Slot) -> str:
        return slot.job.name or slot.name or split_target(slot.job.target)[1]

    @staticmethod
    def _keys(options: dict[str, Any]) -> list[Key]:
        return [
            (c, dt, dev)
            for dev in options["devices"]
            for dt in options["dtypes"]
            for c in options["checks"]
        ]

    def _ordered(self, slot: _Slot, options: dict[str, Any]) -> list[CheckResult]:
        """The results known so far, in the order :func:`validate` gives them."""
        from_worker = dict(slot.latest)
        order: list[Key] = []
        for dev in options["devices"]:
            for dt in options["dtypes"]:
                order += [(c, dt, dev) for c in options["checks"]]
                order += [
                    k
                    for k in from_worker
                    if k[1:] == (dt, dev) and k not in order and k[0] not in options["checks"]
                ]
        order += [k for k in from_worker if k not in order]
        return [_result(from_worker[k]) for k in order if k in from_worker]


_DEVICE_FORMS = "cpu or cuda[:i]"


def _devices(requested: Sequence[str] | None, cuda: bool) -> tuple[str, ...]:
    if not requested:
        return ("cpu", "cuda") if cuda else ("cpu",)
    for d in requested:
        if d.startswith("cuda") and not cuda:
            raise UsageError(f"--device {d!r}: no CUDA device is available")
    return tuple(requested)


def run_isolated(
    *,
    targets: Sequence[str] = (),
    libraries: Sequence[str] = (),
    options: dict[str, Any],
    limits: Limits = Limits(),
    workers: int = 1,
    name: str | None = None,
    progress: Progress | None = None,
) -> Isolated:
    """Validate every TARGET of ``targets`` and every catalog layer of ``libraries`` in worker
    processes.

    ``options`` are :func:`~invlin.validate.runner.validate`'s (``features``, ``dtypes``,
    ``devices``, ``profile``, ``checks``, ``seed``, ``max_examples``; ``None`` for a default);
    ``name`` names the TARGETs' layers (default: their adapters' names). ``workers`` layers
    run side by side; the reports come back in the order of ``targets``, then of each
    library's catalog. ``progress`` hears of every :class:`CheckEvent` and of each finished
    layer, and ticks about every 0.25 s while layers run (see
    :class:`~invlin.validate.progress.Progress`).

    Raises :class:`UsageError` for a TARGET that cannot be imported (ModuleNotFoundError,
    SyntaxError, ...: the user's mistake), an unknown or missing library or check, a CUDA
    device on a machine without one, or a memory limit below what a worker needs. A TARGET
    whose import calls ``sys.exit``, crashes or hangs is a layer error instead.
    """
    targets = list(dict.fromkeys(targets))
    libraries = list(dict.fromkeys(libraries))
    with _Session(limits, libraries) as session:
        hello, failed, entries = session.plan(
            targets, libraries, options.get("context_features") or 0
        )
        checks = options.get("checks")
        if checks:
            unknown = [c for c in checks if c not in hello["checks"]]
            if unknown:
                raise UsageError(
                    f"--check must name one of {', '.join(hello['checks'])}, got "
                    f"{', '.join(map(repr, unknown))}"
                )
        opts = dict(options)
        default = [
            *hello["default"],
            *(hello["conditional"] if opts.get("context_features") else ()),
        ]
        opts["checks"] = list(dict.fromkeys(checks)) if checks else default
        opts["dtypes"] = list(dict.fromkeys(opts.get("dtypes") or ("float64", "float32")))
        opts["devices"] = list(_devices(opts.get("devices"), hello["cuda"]))
        jobs = [LayerJob(target=t, label=t, name=name) for t in targets]
        for lib, items in entries.items():
            jobs += [LayerJob(target=t, label=f"{lib}:{n}", name=n, library=lib) for n, t in items]
        done: dict[int, tuple[LayerReport, list[dict[str, Any]]]] = {
            i: (
                LayerReport(
                    name=name or split_target(j.target)[1],
                    library="unknown",
                    target=j.target,
                    error=failed[j.target],
                ),
                [],
            )
            for i, j in enumerate(jobs)
            if j.library is None and j.target in failed
        }
        todo = [(i, j) for i, j in enumerate(jobs) if i not in done]
        progress = progress or Progress()
        progress.begin(len(jobs))
        done.update(session.run(todo, opts, max(1, workers), progress))
    reports, warnings = [], []
    for i in range(len(jobs)):
        report, warns = done[i]
        reports.append(report)
        warnings += warns
        k = 0
        while (i, k) in done:  # a whole flow's inner transforms follow it
            report, warns = done[(i, k)]  # type: ignore[index]
            reports.append(report)
            warnings += warns
            k += 1
    return Isolated(
        reports=reports,
        warnings=warnings,
        checks=tuple(opts["checks"]),
        dtypes=tuple(opts["dtypes"]),
        devices=tuple(opts["devices"]),
    )
