"""Wall time of ``invlin validate`` on one small layer against ``python -c "import torch"``.

Both are measured as fresh subprocesses in the same run, alternating, so the ratio compares
like with like on whatever the machine is doing: what a flow library's CI pays per layer
against the floor every torch program pays.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time

__all__ = ["LAYER", "lulinear", "validation_rows"]

#: The layer the goal names: nflows' LULinear with 6 features (invlin's own LULinear where
#: nflows is not installed; the row says which).
LAYER = "nflows LULinear, 6 features"


def lulinear(features: int) -> object:
    """nflows' ``LULinear(features)``, or invlin's ``LULinear`` without nflows."""
    if importlib.util.find_spec("nflows") is not None:
        from nflows.transforms import LULinear

        return LULinear(features)
    from invlin.nn import LULinear

    return LULinear(features)


def _seconds(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc.returncode


def validation_rows(repeats: int = 3, profile: str = "ci") -> list[dict[str, object]]:
    """One row: median wall time of ``invlin validate benchmarks.validation:lulinear
    --features 6 --profile PROFILE`` ÷ median of ``python -c "import torch"``, ``repeats``
    alternating runs of each."""
    torch_argv = [sys.executable, "-c", "import torch"]
    validate_argv = [
        sys.executable,
        "-m",
        "invlin.cli",
        "validate",
        "benchmarks.validation:lulinear",
        "--features",
        "6",
        "--profile",
        profile,
        "--format",
        "json",
    ]
    base, full, codes = [], [], set()
    for _ in range(max(1, repeats)):
        base.append(_seconds(torch_argv)[0])
        seconds, code = _seconds(validate_argv)
        full.append(seconds)
        codes.add(code)
    layer = (
        LAYER
        if importlib.util.find_spec("nflows") is not None
        else "invlin LULinear, 6 features (nflows not installed)"
    )
    num, den = statistics.median(full), statistics.median(base)
    return [
        {
            "case": "validate_vs_import_torch",
            "device": "cpu",
            "n": 6,
            "dtype": "both",
            "ratio": num / den,
            "q1": min(full) / den,
            "q3": max(full) / den,
            "num_ms": 1e3 * num,
            "den_ms": 1e3 * den,
            "layer": layer,
            "profile": profile,
            "returncodes": sorted(codes),
        }
    ]
