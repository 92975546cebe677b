"""A full training step of a P4Inv flow ÷ the same flow built from nn.Linear layers."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from benchmarks.layers import row
from benchmarks.timing import compare
from invlin.nn import BentIdentity, InvertibleSequential, P4InvLinear, P4Scheduler

__all__ = ["LinearBlock", "compiled_training_rows", "training_rows"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class LinearBlock(nn.Module):
    """nn.Linear with the flow interface; its log|det| is taken as 0 (nn.Linear has none)."""

    def __init__(self, n: int, device: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.linear = nn.Linear(n, n, device=device, dtype=dtype)
        with torch.no_grad():  # orthogonal like the P4 layers' A (QR in float32: no 16-bit QR)
            w = torch.empty(n, n, device=device, dtype=torch.float32)
            self.linear.weight.copy_(nn.init.orthogonal_(w))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), x.new_zeros(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("the nn.Linear anchor is forward-only")


def _flow(kind: str, n: int, blocks: int, device: str, dtype: torch.dtype) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(blocks):
        if kind == "p4":
            layers.append(P4InvLinear(n, init="orthogonal", device=device, dtype=dtype))
        else:
            layers.append(LinearBlock(n, device, dtype))
        if i < blocks - 1:
            layers.append(BentIdentity())
    return InvertibleSequential(*layers).to(device=device, dtype=dtype)


def _step_fn(
    kind: str,
    n: int,
    blocks: int,
    data: torch.Tensor,
    device: str,
    dtype: torch.dtype,
    compile: dict[str, Any] | None = None,
    foreach: bool | None = None,
):
    """One step: forward, NLL (+ the P4 penalty), backward, Adam, and for P4 the scheduler.

    ``compile``: keyword arguments of ``torch.compile`` for the loss (forward, NLL, penalty;
    traced as one graph, ``fullgraph=True``, its backward compiled with it), or None for eager.
    Adam and the scheduler's merges run eagerly either way. ``foreach``: Adam's form (None:
    torch's default for the device — the multi-tensor form on a GPU, one loop on the CPU)."""
    flow = _flow(kind, n, blocks, device, dtype)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3, foreach=foreach)
    sched = P4Scheduler(flow, opt, merge_every=1, force_every=10) if kind == "p4" else None
    layers = list(sched.layers.values()) if sched is not None else []

    def nll(x: torch.Tensor) -> torch.Tensor:
        z, logdet = flow(x)
        loss = (0.5 * z.square().sum(-1) - logdet).mean() + n * _HALF_LOG_2PI
        for layer in layers:
            loss = loss + layer.penalty()
        return loss

    loss_fn = nll if compile is None else torch.compile(nll, fullgraph=True, **compile)

    def step() -> None:
        loss = loss_fn(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()

    return step, sched


def training_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int, repeats: int, blocks: int = 4
) -> list[dict[str, object]]:
    """Training step of a ``blocks``-layer P4Inv flow (P4InvLinear + BentIdentity, Adam,
    P4Scheduler merging every step, forcing every 10th) ÷ the same with nn.Linear layers."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        torch.manual_seed(n)
        data = torch.randn(batch, n, device=device, dtype=dtype)
        p4_step, sched = _step_fn("p4", n, blocks, data, device, dtype)
        lin_step, _ = _step_fn("linear", n, blocks, data, device, dtype)
        t = compare(
            {"p4": p4_step, "linear": lin_step}, device=device, repeats=repeats, target=0.05
        )
        merges = sum(c["merges"] for c in sched.counters.values()) if sched else 0
        rows.append(
            row(
                "training_step",
                n,
                dtype,
                device,
                t["p4"],
                t["linear"],
                blocks=blocks,
                steps=sched.steps if sched else 0,
                merges=merges,
            )
        )
    return rows


def compiled_training_rows(
    sizes: list[int],
    *,
    device: str,
    dtype: torch.dtype,
    batch: int,
    repeats: int,
    blocks: int = 4,
    compile: dict[str, Any] | None = None,
) -> list[dict[str, object]]:
    """The training step of :func:`training_rows` with each flow's loss (forward, NLL, penalty)
    and its backward compiled by ``torch.compile(**compile)`` (default: inductor, default mode):
    compiled P4 ÷ compiled nn.Linear, and compiled P4 ÷ eager P4 (the compiler's gain)."""
    compile = {} if compile is None else compile
    rows: list[dict[str, object]] = []
    for n in sizes:
        # Every flow's loss is the same code object: without a reset dynamo's recompile limit
        # (8 per code object) would silently leave later sizes and dtypes eager.
        torch._dynamo.reset()
        torch.manual_seed(n)
        data = torch.randn(batch, n, device=device, dtype=dtype)
        cands = {"p4_eager": _step_fn("p4", n, blocks, data, device, dtype)[0]}
        p4_step, sched = _step_fn("p4", n, blocks, data, device, dtype, compile)
        lin_step, _ = _step_fn("linear", n, blocks, data, device, dtype, compile)
        cands.update(p4=p4_step, linear=lin_step)
        try:
            for fn in (p4_step, lin_step):  # compile outside the timed warm-up
                fn()
        except Exception as exc:  # e.g. inductor without a C++ compiler on the CPU
            inner = getattr(exc, "inner_exception", None) or exc.__cause__
            while inner is not None:  # dynamo wraps the backend's error
                exc, inner = inner, getattr(inner, "inner_exception", None) or inner.__cause__
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"torch.compile failed: {type(exc).__name__}: {first}"
            return [
                {"case": c, "n": n, "skipped": reason}
                for c in ("training_step_compiled", "training_step_compiled_vs_eager")
            ]
        t = compare(cands, device=device, repeats=repeats, target=0.05)
        info = {
            "blocks": blocks,
            "compile": ", ".join(f"{k}={v}" for k, v in compile.items()) or "defaults",
        }
        merges = sum(c["merges"] for c in sched.counters.values())
        rows.append(
            row(
                "training_step_compiled",
                n,
                dtype,
                device,
                t["p4"],
                t["linear"],
                steps=sched.steps,
                merges=merges,
                **info,
            )
        )
        rows.append(
            row("training_step_compiled_vs_eager", n, dtype, device, t["p4"], t["p4_eager"], **info)
        )
    return rows
