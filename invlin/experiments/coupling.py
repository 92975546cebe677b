"""RealNVP-style affine-coupling flows: fixed alternating masks, or P4Inv layers as the mixing."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MIXINGS", "AffineCoupling", "coupling_flow", "matched_coupling_flow"]

MIXINGS = ("alternate", "p4")


class AffineCoupling(nn.Module):
    """y_B = x_B · exp(s(x_A)) + t(x_A), y_A = x_A, with s = scale·tanh(·) for stability.

    ``mask`` (bool, shape ``(n,)``) marks the conditioning half A. Convention of invlin layers:
    ``forward(x) -> (y, logabsdet)``, ``inverse(y) -> (x, logabsdet)``; shapes ``(*, n)``, ``(*,)``.
    """

    def __init__(self, features: int, mask: torch.Tensor, hidden: int = 64) -> None:
        super().__init__()
        if mask.shape != (features,) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape ({features},)")
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * features),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(features))

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(xa).chunk(2, dim=-1)
        keep = (~self.mask).to(xa.dtype)
        return self.scale * torch.tanh(s) * keep, t * keep

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x * self.mask.to(x.dtype))
        return x * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(y * self.mask.to(y.dtype))
        return (y - t) * torch.exp(-s), -s.sum(-1)


def coupling_flow(
    features: int,
    layers: int,
    hidden: int = 64,
    *,
    mixing: str = "alternate",
    generator: torch.Generator | None = None,
):
    """``layers`` affine couplings as an ``InvertibleSequential``.

    ``mixing="alternate"`` (RealNVP): the conditioning half alternates between the even and the
    odd features, i.e. a fixed permutation sits between consecutive couplings.
    ``mixing="p4"``: every coupling conditions on the even features and a trainable
    :class:`~invlin.nn.P4InvLinear` before each coupling mixes the features instead (the P4Inv
    paper's use of P4Inv blocks inside coupling flows). The P4 layers start at the reversal
    permutation, so for even ``features`` both flows start as the same function; train them with
    :class:`~invlin.nn.P4Scheduler` and add their penalty to the loss. ``generator`` seeds the
    P4 layers' resets of v.
    """
    from invlin.nn.p4 import P4InvLinear
    from invlin.nn.sequential import InvertibleSequential

    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    idx = torch.arange(features)
    if features == 1:
        masks = [idx < 0] * layers
    elif mixing == "alternate":
        masks = [idx % 2 == k % 2 for k in range(layers)]
    else:
        masks = [idx % 2 == 0] * layers
    blocks: list[nn.Module] = []
    for mask in masks:
        if mixing == "p4":
            blocks.append(P4InvLinear(features, init="reverse", generator=generator))
        blocks.append(AffineCoupling(features, mask, hidden))
    return InvertibleSequential(*blocks)


def _count(features: int, layers: int, hidden: int, mixing: str) -> int:
    h, n = hidden, features
    per = (n * h + h) + (h * h + h) + (h * 2 * n + 2 * n) + n
    return layers * (per + (3 * n if mixing == "p4" else 0))


def matched_coupling_flow(
    features: int,
    layers: int,
    target: int,
    *,
    mixing: str = "alternate",
    generator: torch.Generator | None = None,
):
    """The ``layers``-coupling flow whose hidden width gives the parameter count closest to
    ``target`` (width ≥ 2); returns ``(flow, hidden)``."""
    hidden = min(range(2, 1025), key=lambda h: abs(_count(features, layers, h, mixing) - target))
    return coupling_flow(
        features, layers, hidden=hidden, mixing=mixing, generator=generator
    ), hidden
