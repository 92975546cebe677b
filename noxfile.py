"""nox sessions: tests, slow, properties, lint, docs (CI); report, baselines, bench, cuda,
experiments, validate, conformance, mutation (by hand)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# Pin torch to the CPU build by default; set INVLIN_CONSTRAINTS="" to let pip choose, or to a file.
CONSTRAINTS = os.environ.get("INVLIN_CONSTRAINTS", str(ROOT / "constraints" / "cpu.txt"))


def _install(session: nox.Session, extras: str) -> None:
    args = ["-c", CONSTRAINTS] if CONSTRAINTS else []
    session.install(*args, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests and doctests, the slow ones skipped (a few minutes on 2 cores)."""
    _install(session, "test,flint,report,dask,experiments")
    session.run("pytest", *(session.posargs or ["tests", "--doctest-modules", "invlin"]))


@nox.session
def slow(session: nox.Session) -> None:
    """Run only the tests marked slow (compilation, whole sweeps, training runs; CI runs it)."""
    _install(session, "test,flint,report,dask,experiments")
    session.run("pytest", "tests", "--run-slow", "-m", "slow", *session.posargs)


@nox.session
def properties(session: nox.Session) -> None:
    """Run the Hypothesis property suites (ci profile unless --hypothesis-profile is given)."""
    _install(session, "test,flint")
    args = list(session.posargs)
    if not any(a.startswith("--hypothesis-profile") for a in args):
        args = ["--hypothesis-profile", "ci", *args]
    session.run("pytest", "properties", "-p", "no:cacheprovider", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff on the code base: lint rules and formatting (``ruff format --check``)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Run the default drift report into a new folder ./invlin-output/report-<date>-<time>/
    (about a minute on 2 cores); ``nox -s baselines`` regenerates the committed reports/default."""
    _install(session, "flint,report")
    session.run("invlin", "report", *session.posargs)


@nox.session(default=False)
def report_ci(session: nox.Session) -> None:
    """Quick report check: a small sweep is written, matches the schema, flags a drifting policy."""
    _install(session, "test,flint,report")
    session.run("pytest", "tests/test_drift_report.py", "-q", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmark suite: ratios to the dense anchors, written to reports/bench/<machine>.md/.json.

    Not part of CI's test run (minutes; timings need a quiet machine). Extra arguments go to
    ``python -m benchmarks`` (e.g. ``-- --device cuda --dtypes float32 bfloat16``)."""
    _install(session, "flint")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def cuda(session: nox.Session) -> None:
    """Run the CUDA tests (skip cleanly without a GPU); uses the torch already installed."""
    # A CUDA torch build cannot come from the CPU constraints file: install invlin without them
    # and keep the environment's torch (create the venv with --system-site-packages when needed).
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_cuda.py", "-v", "-rs", *session.posargs)


@nox.session(default=False)
def experiments(session: nox.Session) -> None:
    """Train the toy2d and digits experiments into new folders under ./invlin-output/ (a few
    minutes on 2 CPU cores); ``nox -s baselines`` regenerates the committed reports/experiments."""
    _install(session, "experiments,flint")
    session.run("invlin", "train", "toy2d", "--quiet", *session.posargs)
    session.run("invlin", "train", "digits", "--quiet", *session.posargs)


@nox.session(default=False)
def baselines(session: nox.Session) -> None:
    """Regenerate the committed baselines in place: reports/default and reports/experiments.

    Every other way of running the commands writes a new folder under ./invlin-output/; here
    each ``--out`` is explicit, and the folders are replaced only because they carry invlin's
    ``.invlin-output`` marker (train replaces its own toy2d*/digits* files and keeps the rest).
    The report takes about a minute on 2 cores, the two experiments about 6 minutes more
    (their committed training times); not run by CI. reports/validate/NAME comes from
    ``nox -s validate``."""
    _install(session, "experiments,flint,report")
    session.run("invlin", "report", "--name", "default", "--output", "reports/default")
    for experiment in ("toy2d", "digits"):
        session.run("invlin", "train", experiment, "--quiet", "--out", "reports/experiments")


def _validate_libraries() -> dict[str, str]:
    """``--library`` name → pinned requirement of every built-in adapter plug-in with a pin,
    read from invlin/validate/registry.py (standard library only) without installing invlin."""
    path = ROOT / "invlin" / "validate" / "registry.py"
    spec = importlib.util.spec_from_file_location("_invlin_registry_for_nox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return {name: row.pin for name, row in module.BUILTIN.items() if row.pin}


#: The flow libraries ``invlin validate --library`` knows, pinned to their current releases.
VALIDATE_LIBRARIES = _validate_libraries()


@nox.session(default=False)
@nox.parametrize("library", list(VALIDATE_LIBRARIES))
def validate(session: nox.Session, library: str) -> None:
    """Validate one library's curated layers (its own environment) into reports/validate/NAME.

    Exit status 1 (a check failed) still writes the report and does not fail the session;
    a usage error (status 2) does. Extra arguments go to ``invlin validate``."""
    _install(session, "validate,flint")
    args = ["-c", CONSTRAINTS] if CONSTRAINTS else []
    session.install(*args, VALIDATE_LIBRARIES[library])
    session.run(
        "invlin",
        "validate",
        "--library",
        library,
        "--out",
        f"reports/validate/{library}",
        *session.posargs,
        success_codes=[0, 1],
    )


@nox.session(default=False)
def conformance(session: nox.Session) -> None:
    """Merge reports/validate/*/conformance.json into reports/validate/README.md (+ JSON).

    Run after ``nox -s validate``; needs no flow library."""
    _install(session, "validate")
    session.run("python", "-m", "invlin.validate.summary", "reports/validate", *session.posargs)


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs) into site/, warnings as errors (CI runs it)."""
    _install(session, "docs")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation run: plant each curated defect of mutation/mutants.py alone in a temporary copy
    of the checkout, run the tests that target its module, write reports/mutation/README.md.

    One pytest run at a time (about 4 minutes on a quiet 2-core machine); fails when a mutant
    survives or is stale. Extra arguments go to ``python -m mutation.run``
    (e.g. ``-- --only ID``)."""
    _install(session, "test,flint")
    session.run("python", "-m", "mutation.run", *session.posargs)
