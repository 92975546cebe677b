"""Plant each curated mutant in a temporary copy of the checkout and run the tests meant to kill it.

The copy holds the tracked and untracked non-ignored files (``git ls-files -co
--exclude-standard``) and is made once; each mutant is written into it, its pytest selection is
run there (``python -m pytest -x -q -p no:cacheprovider …`` with the copy as working directory and
``PYTHONPATH``, so the copy's ``invlin`` is imported, not an editable install — checked before any
mutant runs), and the original text is written back. Nothing outside the temporary directory is
modified. Before the mutants, every selection is run once on the unmutated copy: a selection that
fails there cannot kill anything, so the run stops.

Outcomes: ``killed`` (pytest exit status 1, or 2 when the mutant breaks collection; the first
failing test is recorded), ``survived`` (status 0), ``timeout``, ``error`` (any other status, e.g.
5: the selection matched no test), ``equivalent`` (declared with a reason in
:mod:`mutation.mutants`; not run) and ``stale`` (its original snippet no longer occurs exactly
once in its file, e.g. after an edit of that code: not run, listed so that it gets rewritten).
The score is (killed + timeout) / (killed + timeout + survived).

One pytest run at a time (a single worker): the machines this runs on are shared.

Usage: ``python -m mutation.run [--only ID …] [--timeout S] [--out DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mutation.mutants import MUTANTS, Mutant

__all__ = ["Outcome", "main", "plant", "run_all", "score"]

ROOT = Path(__file__).resolve().parent.parent
PYTEST = (sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider")
_PROBE = "test_mutation_import_probe.py"
DEFAULT_OUT = ROOT / "reports" / "mutation"


@dataclass(frozen=True)
class Outcome:
    """What one mutant's selection did: ``status`` (killed/survived/timeout/error/equivalent),
    pytest's exit status ``rc`` (None when not run), wall time ``seconds``, the first failing
    test ``killer`` (node id; empty when none failed) and the last line of pytest's output
    ``tail``."""

    id: str
    file: str
    defect: str
    status: str
    rc: int | None
    seconds: float
    killer: str
    tail: str


def _files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f]


def copy_tree(dest: Path) -> None:
    """Copy the checkout's tracked and untracked non-ignored files into ``dest``."""
    for rel in _files():
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree but still tracked
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # No bytecode: a mutant and its restored original can share size and mtime second, and a
    # stale .pyc would then run the wrong text.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def verify_isolation(runner: Runner) -> None:
    """Fail unless pytest, run by ``runner`` in its tree, imports ``invlin`` (and its pytest
    plugin) from that tree rather than from an installed or editable copy."""
    tree = runner.tree
    probe = tree / _PROBE
    probe.write_text(
        "import invlin, invlin.validate.plugin\n"
        "def test_copy_is_imported():\n"
        f"    assert invlin.__file__.startswith({str(tree)!r}), invlin.__file__\n"
        f"    assert invlin.validate.plugin.__file__.startswith({str(tree)!r})\n"
    )
    try:
        rc, _, tail, _ = runner.pytest((_PROBE,), 600.0)
    finally:
        probe.unlink()
    if rc != 0:
        raise SystemExit(f"the copy's invlin is not the one imported: {tail}")


def plant(tree: Path, mutant: Mutant) -> str:
    """Write ``mutant`` into ``tree``; return the file's original text (to restore).

    Raises ValueError when the original snippet does not occur exactly once (a stale mutant)."""
    path = tree / mutant.file
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise ValueError(f"{mutant.id}: original snippet occurs {count} times in {mutant.file}")
    path.write_text(text.replace(mutant.original, mutant.replacement))
    return text


# The server imports the heavy third-party modules once (never invlin) and forks a child per
# pytest run; the child imports the copy's invlin afresh, so every run sees the file as it is.
_SERVER = r"""
import json, os, signal, sys, time
import numpy, scipy.linalg, torch, mpmath, hypothesis, pytest  # noqa: F401  (warm imports)
assert not any(m == "invlin" or m.startswith("invlin.") for m in sys.modules)
current = []
def _stop(*_):  # asked to stop: take the running pytest (its own session) down too
    for pid in current:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(1)
signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os._exit(int(pytest.main(job["args"])))
    current[:] = [pid]
    deadline = time.monotonic() + job["timeout"]
    rc = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.05)
    if rc is None:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    current.clear()
    print(json.dumps({"rc": rc}), flush=True)
"""


class Runner:
    """Runs pytest in ``tree``: forked from a warm server (default) or as a fresh process."""

    def __init__(self, tree: Path, fresh: bool = False) -> None:
        self.tree, self.fresh, self.server = tree, fresh, None
        if not fresh:
            self.server = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                cwd=tree,
                env=_env(tree),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            if self.server.stdout.readline().strip() != "ready":
                raise SystemExit("the pytest server did not start")

    def close(self, abort: bool = False) -> None:
        """Stop the server; ``abort``: at once, killing a pytest run in progress."""
        if self.server is not None:
            if abort:
                self.server.terminate()
            self.server.stdin.close()
            self.server.wait()

    def pytest(self, args: tuple[str, ...], timeout: float) -> tuple[int | None, str, str, float]:
        """Run ``pytest -x -q -p no:cacheprovider *args``: (exit status or None on timeout, the
        first failing test's node id or "", the last line of its output, seconds)."""
        start = time.perf_counter()
        log = self.tree.parent / "pytest.log"
        if self.fresh:
            try:
                with open(log, "w") as f:
                    proc = subprocess.run(
                        [*PYTEST, *args],
                        cwd=self.tree,
                        env=_env(self.tree),
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,
                    )
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = None
        else:
            job = {"args": [*PYTEST[3:], *args], "timeout": timeout, "log": str(log)}
            self.server.stdin.write(json.dumps(job) + "\n")
            self.server.stdin.flush()
            rc = json.loads(self.server.stdout.readline())["rc"]
        shutil.rmtree(self.tree / ".hypothesis", ignore_errors=True)  # no examples carried over
        out = log.read_text(errors="replace") if log.exists() else ""
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        return rc, _killer(lines), (lines[-1] if lines else ""), time.perf_counter() - start


def _killer(lines: list[str]) -> str:
    # pytest's short summary (-rfE, its default): "FAILED node::id - message" or "ERROR path"
    for ln in lines:
        for head in ("FAILED ", "ERROR "):
            if ln.startswith(head):
                return ln[len(head) :].split(" - ", 1)[0].strip()
    return ""


def _status(rc: int | None) -> str:
    if rc is None:
        return "timeout"
    return {0: "survived", 1: "killed", 2: "killed"}.get(rc, "error")


def is_stale(mutant: Mutant, root: Path = ROOT) -> bool:
    """True when ``mutant``'s original snippet does not occur exactly once in its file."""
    path = root / mutant.file
    return not path.is_file() or path.read_text().count(mutant.original) != 1


def run_one(runner: Runner, mutant: Mutant, timeout: float) -> Outcome:
    """Plant ``mutant``, run its selection, restore the file."""
    if mutant.equivalent or is_stale(mutant, runner.tree):
        status = "equivalent" if mutant.equivalent else "stale"
        return Outcome(mutant.id, mutant.file, mutant.defect, status, None, 0.0, "", "")
    original = plant(runner.tree, mutant)
    try:
        rc, killer, tail, seconds = runner.pytest(mutant.select, mutant.timeout or timeout)
    finally:
        (runner.tree / mutant.file).write_text(original)
    status = _status(rc)
    return Outcome(mutant.id, mutant.file, mutant.defect, status, rc, seconds, killer, tail)


def score(outcomes: list[Outcome]) -> dict[str, object]:
    """Counts per status and the score (killed + timeout) / (killed + timeout + survived)."""
    counts = {s: 0 for s in ("killed", "timeout", "survived", "error", "equivalent", "stale")}
    for o in outcomes:
        counts[o.status] += 1
    judged = counts["killed"] + counts["timeout"] + counts["survived"]
    detected = counts["killed"] + counts["timeout"]
    return {
        **counts,
        "total": len(outcomes),
        "non_equivalent_judged": judged,
        "score": detected / judged if judged else None,
    }


def run_all(
    mutants: list[Mutant], timeout: float, *, keep: bool = False, fresh: bool = False, log=print
) -> list[Outcome]:
    """Copy the checkout once, check isolation and the unmutated selections, run every mutant
    (stale ones are reported, not run)."""
    tmp = Path(tempfile.mkdtemp(prefix="invlin-mutation-"))
    tree = tmp / "tree"
    runner = None
    try:
        copy_tree(tree)
        runner = Runner(tree, fresh=fresh)
        verify_isolation(runner)
        log(f"copy at {tree}; invlin imported from the copy (checked)")
        live = [m for m in mutants if not m.equivalent and not is_stale(m, tree)]
        selections = sorted({a for m in live for a in m.select if not a.startswith("-")})
        flags = sorted({a for m in live for a in m.select if a.startswith("--doctest")})
        rc, _, tail, seconds = runner.pytest((*flags, *selections), 20 * timeout)
        if rc != 0:
            raise SystemExit(f"the selections fail on the unmutated copy ({rc}): {tail}")
        log(f"baseline: every selection passes unmutated ({seconds:.1f} s)")
        outcomes = []
        for m in mutants:
            o = run_one(runner, m, timeout)
            log(f"{o.status:10s} {o.seconds:6.1f} s  {m.id}  {o.killer}")
            outcomes.append(o)
        return outcomes
    except BaseException:  # e.g. Ctrl-C: no pytest run may outlive the runner
        if runner is not None:
            runner.close(abort=True)
            runner = None
        raise
    finally:
        if runner is not None:
            runner.close()
        if keep:
            log(f"copy kept at {tree}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _table(outcomes: list[Outcome]) -> str:
    rows = [
        "| mutant | file | defect | status | killed by | s |",
        "|---|---|---|---|---|---:|",
    ]
    for o in outcomes:
        by = f"`{o.killer}`" if o.killer else ""
        if o.status == "killed" and not o.killer:
            by = o.tail.replace("|", "\\|")  # e.g. a collection error
        defect = o.defect.replace("|", "\\|")
        rows.append(f"| `{o.id}` | `{o.file}` | {defect} | {o.status} | {by} | {o.seconds:.1f} |")
    return "\n".join(rows)


def write_report(outcomes: list[Outcome], out: Path, wall: float) -> dict[str, object]:
    """Write ``out/README.md`` and ``out/mutation.json``; return the score record."""
    out.mkdir(parents=True, exist_ok=True)
    summary = score(outcomes)
    summary["wall_seconds"] = round(wall, 1)
    equivalent = {m.id: m.equivalent for m in MUTANTS if m.equivalent}
    data = {
        "summary": summary,
        "outcomes": [asdict(o) for o in outcomes],
        "equivalent": equivalent,
    }
    (out / "mutation.json").write_text(json.dumps(data, indent=2) + "\n")
    s = summary
    pct = "n/a" if s["score"] is None else f"{100 * s['score']:.1f} %"
    survivors = [o for o in outcomes if o.status in ("survived", "error")]
    stale = [o for o in outcomes if o.status == "stale"]
    lines = [
        "# Mutation run",
        "",
        "Written by `nox -s mutation` (`python -m mutation.run`): each curated single-point "
        "defect of `mutation/mutants.py` planted alone in a temporary copy of the checkout and "
        "its test selection run there.",
        "",
        f"Score: **{s['killed'] + s['timeout']} / {s['non_equivalent_judged']} = {pct}** of the "
        f"non-equivalent mutants killed ({s['killed']} killed, {s['timeout']} timed out, "
        f"{s['survived']} survived, {s['error']} errors, {s['equivalent']} declared "
        f"equivalent, {s['stale']} stale); wall time {s['wall_seconds']} s, one pytest run at "
        "a time.",
        "",
        "Each mutant runs only the tests that target its module (`select` in "
        "`mutation/mutants.py`), with `-x` and a per-mutant timeout. The score counts killed "
        "and timed-out mutants over killed, timed-out and surviving ones.",
        "",
        "## Survivors",
        "",
        *([f"- `{o.id}` ({o.status}): {o.defect}" for o in survivors] if survivors else ["None."]),
        "",
        "## Stale (the code changed; rewrite the mutant's snippet)",
        "",
        *([f"- `{o.id}`: {o.defect} (`{o.file}`)" for o in stale] or ["None."]),
        "",
        "## Declared equivalent",
        "",
        *([f"- `{k}`: {v}" for k, v in equivalent.items()] or ["None."]),
        "",
        "## Every mutant",
        "",
        _table(outcomes),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: run the mutants, print a table, write the report; exit 1 on a survivor."""
    p = argparse.ArgumentParser(prog="python -m mutation.run", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant (180)")
    p.add_argument("--out", type=Path, default=None, help=f"report folder ({DEFAULT_OUT})")
    p.add_argument("--no-report", action="store_true", help="print only, write nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy")
    p.add_argument(
        "--fresh", action="store_true", help="a new Python process per run (no warm server)"
    )
    args = p.parse_args(argv)
    chosen = list(MUTANTS)
    if args.only:
        known = {m.id for m in MUTANTS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            p.error(f"unknown mutant id(s): {', '.join(unknown)}")
        chosen = [m for m in MUTANTS if m.id in set(args.only)]
    start = time.perf_counter()
    outcomes = run_all(chosen, args.timeout, keep=args.keep, fresh=args.fresh)
    wall = time.perf_counter() - start
    print(_table(outcomes))
    # a partial run (--only) writes no report unless --out is given
    quiet = args.no_report or (args.only and args.out is None)
    summary = score(outcomes) if quiet else write_report(outcomes, args.out or DEFAULT_OUT, wall)
    print(json.dumps({k: v for k, v in summary.items()}, indent=None))
    return 1 if summary["survived"] or summary["error"] or summary["stale"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
