"""Command line of the benchmark suite: run the cases, write reports/bench/<machine>.json/.md."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.accuracy import leaky_softplus_ulp
from benchmarks.goals import judge
from benchmarks.layers import growth_exponent, leaky_softplus_rows, lu_rows, merge_rows, p4_rows
from benchmarks.monitor import monitor_rows
from benchmarks.ops import ops_rows
from benchmarks.oracle import oracle_rows, report_wall_time
from benchmarks.render import render
from benchmarks.training import compiled_training_rows, training_rows
from benchmarks.validation import validation_rows

__all__ = ["CASES", "main", "run"]

CASES = (
    "p4",
    "merge",
    "lu",
    "leaky",
    "accuracy",
    "training",
    "compiled",
    "monitor",
    "ops",
    "oracle",
    "report",
    "validate",
)
ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name(device: str) -> str:
    """A file-name slug for the machine: the GPU's name on CUDA, else CPU model and cores."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        import os

        name = f"cpu {_cpu_model()} {os.cpu_count()}core"
    name = re.sub(r"\(R\)|\(TM\)|CPU|@.*?GHz", " ", name)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def code_version() -> dict[str, Any]:
    """Which invlin was measured: the directory it was imported from and, when that is a git
    checkout, its commit and whether its files differ from it (``None`` where unknown)."""
    import invlin

    where = Path(invlin.__file__).resolve().parent.parent
    commit = dirty = None
    try:
        git = ["git", "-C", str(where)]
        out = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
            status = subprocess.run(
                [*git, "status", "--porcelain", "--", "invlin"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"path": str(where), "commit": commit, "dirty": dirty}


def environment(device: str) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "device": device,
        "cpu": _cpu_model(),
        "device_name": torch.cuda.get_device_name(torch.device(device))
        if cuda
        else f"CPU: {_cpu_model()}",
        "invlin": code_version(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected cases and return the result (rows judged against the goals)."""
    dev = args.device
    dtypes = [getattr(torch, d) for d in args.dtypes]
    kw = {"device": dev, "batch": args.batch, "repeats": args.repeats}
    rows: list[dict[str, Any]] = []
    accuracy: list[dict[str, Any]] = []

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    for dtype in dtypes:
        if "p4" in args.cases:
            log(f"P4InvLinear {dtype}")
            rows += p4_rows(args.sizes, dtype=dtype, **kw)
        if "lu" in args.cases:
            log(f"LULinear {dtype}")
            rows += lu_rows(args.sizes, dtype=dtype, **kw)
        if "leaky" in args.cases:
            log(f"LeakySoftplus {dtype}")
            rows += leaky_softplus_rows(args.sizes, dtype=dtype, **kw)
        if "accuracy" in args.cases:
            log(f"LeakySoftplus accuracy {dtype}")
            accuracy.append(leaky_softplus_ulp(device=dev, dtype=dtype, count=args.ulp_points))
        if "training" in args.cases:
            log(f"training step {dtype}")
            rows += training_rows(args.sizes, dtype=dtype, **kw)
        if "compiled" in args.cases:
            log(f"compiled training step {dtype}")
            options = {"backend": args.compile_backend}
            if args.compile_mode:
                options["mode"] = args.compile_mode
            rows += compiled_training_rows(args.sizes, dtype=dtype, compile=options, **kw)
        if "monitor" in args.cases:
            log(f"training step, default drift monitor ÷ off {dtype}")
            rows += monitor_rows(args.sizes, dtype=dtype, **kw)
        if "ops" in args.cases:
            log(f"operation counts {dtype}")
            rows += ops_rows(args.sizes, device=dev, dtype=dtype, batch=args.batch)
    if "merge" in args.cases:
        log("merge")
        rows += merge_rows(args.merge_sizes, device=dev, repeats=args.repeats)
    if "oracle" in args.cases:
        log("oracle")
        rows += oracle_rows(args.oracle_sizes)
    if "report" in args.cases:
        log("invlin report")
        rows.append(report_wall_time())
    if "validate" in args.cases:
        log("invlin validate ÷ import torch")
        rows += validation_rows()
    merge = [r for r in rows if r.get("case") == "merge_vs_inv"]
    return {
        "machine": args.machine or machine_name(dev),
        "label": args.label,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment(dev),
        "settings": {
            "sizes": args.sizes,
            "merge_sizes": args.merge_sizes,
            "dtypes": args.dtypes,
            "batch": args.batch,
            "repeats": args.repeats,
            "cases": list(args.cases),
            "note": args.note,
            "compile": {"backend": args.compile_backend, "mode": args.compile_mode},
        },
        "rows": judge(rows),
        "accuracy": accuracy,
        "merge_growth_exponent": growth_exponent(merge) if len(merge) > 1 else None,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument(
        "--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float64"]
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument(
        "--merge-sizes",
        type=int,
        nargs="+",
        default=None,
        help="n for merge ÷ inv (default: --sizes plus 512 and 2048)",
    )
    p.add_argument("--oracle-sizes", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=21, help="interleaved samples per candidate")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=None,
        help="cases to run (default: all; oracle, report and validate only on the CPU)",
    )
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compiled case (default inductor)",
    )
    p.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode of the compiled case (e.g. reduce-overhead: CUDA "
        "graphs on a GPU; default: torch's default)",
    )
    p.add_argument("--ulp-points", type=int, default=1_000_000)
    p.add_argument("--machine", default=None, help="name of the output files")
    p.add_argument("--label", default="", help="free-text label stored in the JSON")
    p.add_argument("--note", default="", help="a sentence printed under the table headers")
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="an earlier JSON of this suite: adds a 'before' column",
    )
    p.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "bench")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cases is None:
        cpu_only = ("oracle", "report", "validate")
        args.cases = CASES if args.device == "cpu" else tuple(c for c in CASES if c not in cpu_only)
    if "compiled" in args.cases:
        from torch._dynamo import list_backends

        if args.compile_backend not in list_backends(exclude_tags=()):
            raise SystemExit(
                f"--compile-backend: unknown torch.compile backend "
                f"{args.compile_backend!r} (known: {', '.join(list_backends())})"
            )
    if args.merge_sizes is None:
        args.merge_sizes = sorted({*args.sizes, 512, 2048})
    result = run(args)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    text = render(result, baseline)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / result["machine"]
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"[bench] wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
