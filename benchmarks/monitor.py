"""A training step with the default drift monitor ÷ the same step with the monitor off."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmarks.layers import row
from benchmarks.timing import compare
from invlin.nn import BentIdentity, InvertibleSequential, P4InvLinear, P4Scheduler

__all__ = ["monitor_rows"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _monitored_step(
    n: int,
    blocks: int,
    data: torch.Tensor,
    monitor: str | None,
    device: str,
    dtype: torch.dtype,
    seed: int,
) -> tuple[Callable[[], None], P4Scheduler]:
    """One training step (forward, NLL + penalty, backward, Adam, scheduler merging every step
    and forcing every 10th) of a ``blocks``-layer P4Inv flow whose layers get ``monitor``."""
    torch.manual_seed(seed)  # the same initial layers for both candidates
    layers: list[torch.nn.Module] = []
    for i in range(blocks):
        layers.append(
            P4InvLinear(n, init="orthogonal", monitor=monitor, device=device, dtype=dtype)
        )
        if i < blocks - 1:
            layers.append(BentIdentity())
    flow = InvertibleSequential(*layers)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    sched = P4Scheduler(flow, opt, merge_every=1, force_every=10)
    p4 = list(sched.layers.values())

    def step() -> None:
        z, logdet = flow(data)
        loss = (0.5 * z.square().sum(-1) - logdet).mean() + n * _HALF_LOG_2PI
        for layer in p4:
            loss = loss + layer.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    return step, sched


def monitor_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int, repeats: int, blocks: int = 4
) -> list[dict[str, object]]:
    """Training step of a ``blocks``-layer P4Inv flow with every layer's default drift monitor
    (:meth:`~invlin.nn.DriftMonitor.default`) ÷ the same flow with ``monitor=None``, timed
    interleaved in one process; the row also counts the probes' actions."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        torch.manual_seed(n)
        data = torch.randn(batch, n, device=device, dtype=dtype)
        on, sched = _monitored_step(n, blocks, data, "default", device, dtype, n)
        off, _ = _monitored_step(n, blocks, data, None, device, dtype, n)
        t = compare({"on": on, "off": off}, device=device, repeats=repeats, target=0.05)
        counters = sched.counters.values()
        rows.append(
            row(
                "monitor_training_step",
                n,
                dtype,
                device,
                t["on"],
                t["off"],
                blocks=blocks,
                steps=sched.steps,
                merges=sum(c["merges"] for c in counters),
                corrections=sum(c["corrections"] for c in counters),
                refreshes=sum(c["refreshes"] for c in counters),
            )
        )
    return rows
