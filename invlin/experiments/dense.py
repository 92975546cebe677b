"""DenseLinear: an unconstrained trained matrix, factored every call — the control for P4Inv."""

from __future__ import annotations

import torch
from torch import nn

from invlin._validation import positive_int

__all__ = ["DenseLinear"]


class DenseLinear(nn.Module):
    """y = x Wᵀ + b with W trained directly; log|det W| and the inverse by LU on every call.

    The control experiment for :class:`~invlin.nn.P4InvLinear`: the same map, parameterised
    without P4 (gradient steps on all n² entries, O(n³) per call, no tracked inverse, nothing
    keeping W away from singular). Starts at ``init`` (an invertible ``(n, n)`` matrix) or at a
    random orthogonal W drawn with ``generator``. Shapes: x ``(*, n)`` → (y ``(*, n)``,
    log|det| ``(*,)``); ``inverse(y)`` returns (x, −log|det|).
    """

    def __init__(
        self,
        features: int,
        init: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        features = positive_int(features, "features")
        if init is None:
            g = torch.randn(features, features, dtype=torch.float64, generator=generator)
            q, r = torch.linalg.qr(g)
            init = q * torch.sign(torch.diagonal(r))
        init = torch.as_tensor(init)
        if init.shape != (features, features) or not bool(torch.isfinite(init).all()):
            raise ValueError(f"init must be a finite ({features}, {features}) matrix")
        self.weight = nn.Parameter(init.detach().to(torch.get_default_dtype()).clone())
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.linalg.slogdet(self.weight)[1]
        return nn.functional.linear(x, self.weight, self.bias), ld.expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.linalg.slogdet(self.weight)[1]
        x = torch.linalg.solve(self.weight, (y - self.bias).unsqueeze(-1)).squeeze(-1)
        return x, -ld.expand(y.shape[:-1])
