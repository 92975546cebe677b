"""The RealNVP-style affine-coupling baseline the experiments compare against."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AffineCoupling", "coupling_flow", "matched_coupling_flow"]


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
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * features))
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


def coupling_flow(features: int, layers: int, hidden: int = 64):
    """``layers`` affine couplings with alternating masks, as an ``InvertibleSequential``."""
    from invlin.nn.sequential import InvertibleSequential

    idx = torch.arange(features)
    blocks = [AffineCoupling(features, (idx % 2 == k % 2) if features > 1 else idx < 0, hidden)
              for k in range(layers)]
    return InvertibleSequential(*blocks)


def matched_coupling_flow(features: int, layers: int, target: int):
    """The ``layers``-coupling flow whose hidden width gives the parameter count closest to
    ``target`` (width ≥ 2); returns ``(flow, hidden)``."""
    def count(h: int) -> int:
        per = (features * h + h) + (h * h + h) + (h * 2 * features + 2 * features) + features
        return layers * per

    hidden = min(range(2, 1025), key=lambda h: abs(count(h) - target))
    return coupling_flow(features, layers, hidden=hidden), hidden
