"""Layer benchmarks: P4Inv and LU-Net layers as ratios to torch's dense anchors, side by side."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch

from benchmarks.timing import Timing, compare, ratio
from invlin.nn import LeakySoftplus, LULinear, P4InvLinear

try:
    from invlin.nn import cached_products
except ImportError:  # code before cached_products() (a `before` run): its rows are left out
    cached_products = None

__all__ = ["leaky_softplus_rows", "lu_rows", "merge_rows", "p4_rows", "row"]


def row(
    case: str, n: int, dtype: torch.dtype, device: str, num: Timing, den: Timing, **extra: object
) -> dict[str, object]:
    """One result: the median ratio num/den with its quartiles and both medians in ms."""
    out: dict[str, object] = {
        "case": case,
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
    }
    out.update(ratio(num, den))
    out["num_ms"] = num.median * 1e3
    out["den_ms"] = den.median * 1e3
    out.update(extra)
    return out


@contextlib.contextmanager
def _grad(enabled: bool) -> Iterator[None]:
    with torch.set_grad_enabled(enabled):
        yield


def _p4(n: int, device: str, dtype: torch.dtype, seed: int) -> P4InvLinear:
    """A P4InvLinear in training mode with a live perturbation (u ≠ 0, bias ≠ 0)."""
    g = torch.Generator().manual_seed(seed)
    layer = P4InvLinear(n, init="orthogonal", generator=g)
    with torch.no_grad():
        layer.u.copy_(torch.randn(n, generator=g) / math.sqrt(n))
        layer.bias.copy_(0.1 * torch.randn(n, generator=g))
    layer.generator = None  # v's resets and probes then follow the device's default generator
    return layer.to(device=device, dtype=dtype).train()


def p4_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int, repeats: int
) -> list[dict[str, object]]:
    """P4InvLinear forward/inverse ÷ nn.Linear forward (with and without autograd; repeated
    calls with the same parameters — also inside :func:`~invlin.nn.cached_products` — and with
    u changed before every call), P4 inverse
    ÷ torch.linalg.solve on the same matrix, and ÷ triangular solves with precomputed LU
    factors of that matrix (at n ≥ 1024)."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        torch.manual_seed(n)
        x = torch.randn(batch, n, device=device, dtype=dtype)
        lin = torch.nn.Linear(n, n, device=device, dtype=dtype).train()
        p4 = _p4(n, device, dtype, seed=n)
        y = p4(x)[0].detach()
        for grad in (True, False):
            mode = "grad" if grad else "no_grad"
            cands = {
                "linear": lambda lin=lin, x=x: lin(x),
                "forward": lambda p4=p4, x=x: p4(x),
                "inverse": lambda p4=p4, y=y: p4.inverse(y),
            }
            cached = grad and cached_products is not None
            if cached:
                cands["forward_cached"] = _cached(cands["forward"])
                cands["inverse_cached"] = _cached(cands["inverse"])
            with _grad(grad):
                t = compare(cands, device=device, repeats=repeats)
            for case in ("forward", "inverse") + (
                ("forward_cached", "inverse_cached") if cached else ()
            ):
                rows.append(row(f"p4_{case}", n, dtype, device, t[case], t["linear"], mode=mode))
        rows += _fresh_rows(p4, lin, x, y, n, dtype=dtype, device=device, repeats=repeats)
        with torch.no_grad():
            m = (p4.weight + torch.outer(p4.u.double(), p4.v.double())).to(dtype)
            rhs = (y - p4.bias).mT.contiguous()
            work = dtype if dtype not in (torch.float16, torch.bfloat16) else torch.float32
            lu, piv = torch.linalg.lu_factor(m.to(work))
            rhs_w = rhs.to(work)
            cands: dict[str, Callable[[], object]] = {
                "inverse": lambda p4=p4, y=y: p4.inverse(y),
                "lu_solve": lambda lu=lu, piv=piv, r=rhs_w: torch.linalg.lu_solve(lu, piv, r),
            }
            if dtype not in (torch.float16, torch.bfloat16):  # linalg.solve has no 16-bit kernel
                cands["solve"] = lambda m=m, r=rhs: torch.linalg.solve(m, r)
            t = compare(cands, device=device, repeats=repeats)
        if "solve" in t:
            rows.append(row("p4_inverse_vs_solve", n, dtype, device, t["inverse"], t["solve"]))
        if n >= 1024:
            rows.append(
                row(
                    "p4_inverse_vs_triangular",
                    n,
                    dtype,
                    device,
                    t["inverse"],
                    t["lu_solve"],
                    work_dtype=str(work).removeprefix("torch."),
                )
            )
    return rows


def _cached(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` called inside :func:`~invlin.nn.cached_products` (entering it is timed too)."""

    def call() -> object:
        with cached_products():
            return fn()

    return call


def _fresh_rows(
    p4: P4InvLinear,
    lin: torch.nn.Linear,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int,
    *,
    dtype: torch.dtype,
    device: str,
    repeats: int,
) -> list[dict[str, object]]:
    """Forward and inverse with u changed in place before every call (autograd on), so no
    product of the previous call can be reused — the cost a training step pays once per
    parameter update. The in-place change is timed alone and subtracted, pair by pair."""
    sign = [1.0]

    def perturb(p4: P4InvLinear = p4) -> None:
        sign[0] = -sign[0]  # alternate, so u stays where it was
        with torch.no_grad():
            p4.u.add_(sign[0] * 1e-4 / math.sqrt(n))

    t = compare(
        {
            "linear": lambda: lin(x),
            "perturb": perturb,
            "forward": lambda: (perturb(), p4(x)),
            "inverse": lambda: (perturb(), p4.inverse(y)),
        },
        device=device,
        repeats=repeats,
    )
    rows = []
    for case, name in (("p4_forward_fresh", "forward"), ("p4_inverse_fresh", "inverse")):
        net = Timing(
            max(t[name].median - t["perturb"].median, 1e-9),
            tuple(
                max(a - b, 1e-9) for a, b in zip(t[name].samples, t["perturb"].samples, strict=True)
            ),
        )
        rows.append(row(case, n, dtype, device, net, t["linear"], mode="grad"))
    return rows


def merge_rows(sizes: list[int], *, device: str, repeats: int) -> list[dict[str, object]]:
    """P4InvLinear.merge(force=True) ÷ torch.linalg.inv of the float64 state matrix; the merge
    times over n show its O(n²) growth (see :func:`growth_exponent`)."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        torch.manual_seed(n)
        p4 = _p4(n, device, torch.float32, seed=n)
        scale = 0.1 / math.sqrt(n)

        def merge(p4: P4InvLinear = p4, scale: float = scale) -> None:
            with torch.no_grad():
                p4.u.normal_(std=scale)
            p4.merge(force=True)

        def perturb(p4: P4InvLinear = p4, scale: float = scale) -> None:
            with torch.no_grad():
                p4.u.normal_(std=scale)

        a = p4.weight.clone()
        t = compare(
            {"merge": merge, "perturb": perturb, "inv": lambda a=a: torch.linalg.inv(a)},
            device=device,
            repeats=repeats,
            target=0.05,
        )
        merge_only = Timing(
            max(t["merge"].median - t["perturb"].median, 1e-9),
            tuple(
                max(m - p, 1e-9)
                for m, p in zip(t["merge"].samples, t["perturb"].samples, strict=True)
            ),
        )
        rows.append(
            row("merge_vs_inv", n, p4.weight.dtype, device, merge_only, t["inv"], merges=p4.merges)
        )
    return rows


def growth_exponent(rows: list[dict[str, object]], smallest: int = 512) -> float:
    """Least-squares slope of log(merge ms) against log n over the ``merge_vs_inv`` rows with
    n ≥ ``smallest`` (below that a merge costs mostly fixed overhead, not O(n²) work)."""
    pts = [
        (math.log(float(r["n"])), math.log(float(r["num_ms"])))
        for r in rows
        if r["case"] == "merge_vs_inv" and int(r["n"]) >= smallest
    ]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def lu_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int, repeats: int
) -> list[dict[str, object]]:
    """LULinear forward and inverse (training mode, autograd on) ÷ nn.Linear forward."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        torch.manual_seed(n)
        x = torch.randn(batch, n, device=device, dtype=dtype)
        lin = torch.nn.Linear(n, n, device=device, dtype=dtype).train()
        lu = LULinear(n, device=device, dtype=dtype).train()
        y = lu(x)[0].detach()
        t = compare(
            {
                "linear": lambda lin=lin, x=x: lin(x),
                "forward": lambda lu=lu, x=x: lu(x),
                "inverse": lambda lu=lu, y=y: lu.inverse(y),
            },
            device=device,
            repeats=repeats,
        )
        rows.append(row("lu_forward", n, dtype, device, t["forward"], t["linear"]))
        rows.append(row("lu_inverse", n, dtype, device, t["inverse"], t["linear"]))
    return rows


def leaky_softplus_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int, repeats: int
) -> list[dict[str, object]]:
    """LeakySoftplus inverse ÷ its forward on y = f(x), x ~ N(0, 3²) (autograd on)."""
    rows: list[dict[str, object]] = []
    act = LeakySoftplus()
    for n in sizes:
        torch.manual_seed(n)
        x = 3 * torch.randn(batch, n, device=device, dtype=dtype)
        y = act(x)[0]
        t = compare(
            {"forward": lambda x=x: act(x), "inverse": lambda y=y: act.inverse(y)},
            device=device,
            repeats=repeats,
        )
        rows.append(row("leaky_softplus_inverse", n, dtype, device, t["inverse"], t["forward"]))
    return rows
