"""Oracle backends (flint ÷ mpmath) and the wall time of the default ``invlin report``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import compare
from invlin.oracle import ExactMatrix, available_backends, evaluate

__all__ = ["oracle_rows", "report_wall_time"]


def _matrix(n: int, seed: int) -> np.ndarray:
    """A well-conditioned float64 test matrix: Q·diag(s)·Qᵀ-like, κ ≈ 10."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0, 1, n)
    return (q * s) @ rng.permutation(q.T)


def oracle_rows(sizes: list[int], *, repeats: int = 3) -> list[dict[str, object]]:
    """``evaluate(a, backend=…)`` of one float64 matrix per n: flint ÷ mpmath (same matrix,
    same target precision, interleaved); n ≥ 128 uses a single repeat (mpmath takes seconds)."""
    rows: list[dict[str, object]] = []
    if "flint" not in available_backends():
        return [{"case": "oracle_flint_vs_mpmath", "skipped": "python-flint is not installed"}]
    for n in sizes:
        exact = ExactMatrix.from_float(_matrix(n, seed=n))
        reps = 1 if n >= 128 else repeats
        t = compare(
            {
                "flint": lambda e=exact: evaluate(e, backend="flint"),
                "mpmath": lambda e=exact: evaluate(e, backend="mpmath"),
            },
            repeats=reps,
            warmup=0 if n >= 128 else 1,
            target=0.0,
        )
        flint, mp = t["flint"], t["mpmath"]
        rows.append(
            {
                "case": "oracle_flint_vs_mpmath",
                "n": n,
                "dtype": "float64",
                "device": "cpu",
                "ratio": flint.median / mp.median,
                "q1": min(flint.samples) / max(mp.samples),
                "q3": max(flint.samples) / min(mp.samples),
                "num_ms": flint.median * 1e3,
                "den_ms": mp.median * 1e3,
                "repeats": reps,
            }
        )
    return rows


def report_wall_time() -> dict[str, object]:
    """Wall time of ``invlin report`` with its default workload, as a subprocess.

    The command is whatever this checkout's ``invlin report`` is; when it writes a report
    folder (``--output``) it is sent to a temporary directory so the repository is untouched.
    """
    exe = shutil.which("invlin")
    base = [exe, "report"] if exe else [sys.executable, "-m", "invlin.cli", "report"]
    helptext = subprocess.run([*base, "--help"], capture_output=True, text=True, check=False).stdout
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--output", str(Path(tmp) / "report")] if "--output" in helptext else []
        if "--no-progress" in helptext:
            extra.append("--no-progress")
        t0 = time.perf_counter()
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, check=False, cwd=tmp)
        wall = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "case": "report_wall_time",
        "device": "cpu",
        "seconds": wall,
        "returncode": proc.returncode,
        "command": " ".join(["invlin", "report", *extra]).replace(tmp, "$TMP"),
        "description": helptext.split("\n\n")[1].strip() if "\n\n" in helptext else "",
        "output_head": lines[:2],
        "output_tail": lines[-2:],
    }
