"""Maximum-likelihood training and evaluation of invlin flows under a standard normal base."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["count_parameters", "fit", "mean_nll", "nll_per_sample"]

_LOG_2PI = math.log(2.0 * math.pi)


def nll_per_sample(flow: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """−log p(x) in nats for x of shape ``(batch, n)`` → ``(batch,)``; flow maps data → noise."""
    z, logdet = flow(x)
    return 0.5 * z.pow(2).sum(-1) + 0.5 * x.shape[-1] * _LOG_2PI - logdet


@torch.no_grad()
def mean_nll(flow: nn.Module, x: torch.Tensor, batch: int = 4096) -> float:
    """Mean −log p over the rows of ``x`` (nats), evaluated in chunks of ``batch``."""
    total = 0.0
    for chunk in torch.split(x, batch):
        total += float(nll_per_sample(flow, chunk).sum())
    return total / x.shape[0]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def fit(
    flow: nn.Module,
    sample: Callable[[int], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    batch: int = 512,
    extra_loss: Callable[[], torch.Tensor] | None = None,
    after_step: Callable[[], object] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Minimise the mean NLL of ``sample(batch)`` for ``steps`` steps; returns the loss trace.

    ``extra_loss`` (e.g. the P4Inv penalty) is added to the loss; ``after_step`` runs after every
    optimizer step (e.g. ``P4Scheduler.step``). A non-finite loss stops training with a
    ValueError naming the step.
    """
    opt = optimizer
    trace: list[float] = []
    for step in range(steps):
        x = sample(batch)
        loss = nll_per_sample(flow, x).mean()
        total = loss + extra_loss() if extra_loss is not None else loss
        if not torch.isfinite(total):
            raise ValueError(f"training diverged at step {step}: loss = {float(total)}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if after_step is not None:
            after_step()
        trace.append(float(loss.detach()))
        if progress is not None:
            progress(step, trace[-1])
    return trace
