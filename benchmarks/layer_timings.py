"""Median timings of invlin's torch layers next to nn.Linear, printed as a Markdown table.

Usage: python benchmarks/layer_timings.py [--device cuda] [--dtype float32] [--out FILE]
Ratios are measured side by side in one process (medians of several repeats after warm-up).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from invlin.nn.activations import LeakySoftplus
from invlin.nn.lu import LULinear
from invlin.nn.p4 import P4InvLinear


def _timer(device: str):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(fn, repeats=20, inner=10):
        for _ in range(3):
            fn()
        sync()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            samples.append((time.perf_counter() - t0) / inner)
        return statistics.median(samples)

    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    dev = args.device
    time_it = _timer(dev)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else platform.processor() or "cpu"
    lines = [
        f"# Layer timings on {name}",
        "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {sys.version.split()[0]}, "
        f"device `{dev}`, dtype {args.dtype}, batch {args.batch}. Medians of 20 repeats × 10 calls "
        "after warm-up; ratios are to `nn.Linear` forward measured in the same run.",
        "",
        "| n | Linear fwd (ms) | P4 fwd | P4 inv | P4 merge (ms) | inv (ms) | merge/inv | "
        "LU fwd | LU inv | LeakySoftplus inv/fwd |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with torch.no_grad():
        for n in args.sizes:
            x = torch.randn(args.batch, n, device=dev, dtype=dtype)
            lin = torch.nn.Linear(n, n).to(dev, dtype)
            p4 = P4InvLinear(n, init="orthogonal").to(dev, dtype)
            p4.u.normal_(std=0.01)
            lu = LULinear(n).to(dev, dtype)
            act = LeakySoftplus().to(dev)
            y_lu = lu(x)[0]
            y_act = act(x)[0]
            t_lin = time_it(lambda lin=lin, x=x: lin(x))
            t_p4f = time_it(lambda p4=p4, x=x: p4(x))
            t_p4i = time_it(lambda p4=p4, x=x: p4.inverse(x))

            def merge(p4=p4):
                p4.u.normal_(std=1e-3)
                p4.merge(force=True)

            t_merge = time_it(merge, repeats=10, inner=5)
            w = p4.weight.clone()
            t_inv = time_it(lambda w=w: torch.linalg.inv(w), repeats=10, inner=5)
            t_luf = time_it(lambda lu=lu, x=x: lu(x))
            t_lui = time_it(lambda lu=lu, y=y_lu: lu.inverse(y))
            t_af = time_it(lambda act=act, x=x: act(x))
            t_ai = time_it(lambda act=act, y=y_act: act.inverse(y))
            lines.append(
                f"| {n} | {t_lin * 1e3:.4f} | {t_p4f / t_lin:.2f}× | {t_p4i / t_lin:.2f}× | "
                f"{t_merge * 1e3:.4f} | {t_inv * 1e3:.4f} | {t_merge / t_inv:.3f} | "
                f"{t_luf / t_lin:.2f}× | {t_lui / t_lin:.2f}× | {t_ai / t_af:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
