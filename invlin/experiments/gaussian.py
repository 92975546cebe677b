"""GaussianFlow: the closed-form full-covariance Gaussian fit, as a flow (a linear reference)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GaussianFlow"]


class GaussianFlow(nn.Module):
    """z = L⁻¹(x − μ) with Σ = L Lᵀ: the density N(μ, Σ) as a flow onto N(0, I).

    The best any single linear flow (an LU-Net block without activations, say) can do is the
    maximum-likelihood Gaussian; :meth:`fit` computes it in closed form. Nothing is trained:
    μ and the Cholesky factor L are buffers. Shapes: x ``(*, n)`` → (z ``(*, n)``, log|det|
    ``(*,)`` = −Σ log L_ii); ``inverse(z)`` returns (x, +Σ log L_ii).
    """

    mean: torch.Tensor
    chol: torch.Tensor

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        mean, cov = torch.as_tensor(mean), torch.as_tensor(cov)
        n = mean.shape[-1] if mean.ndim == 1 else -1
        if mean.ndim != 1 or cov.shape != (n, n):
            raise ValueError(
                f"mean must have shape (n,) and cov (n, n), got {tuple(mean.shape)} "
                f"and {tuple(cov.shape)}"
            )
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError("cov must be symmetric positive definite")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("chol", chol)
        self.statistics = n + n * (n + 1) // 2

    @classmethod
    def fit(cls, x: torch.Tensor) -> GaussianFlow:
        """The maximum-likelihood Gaussian of the rows of ``x`` ``(m, n)`` (covariance with
        divisor m), computed in float64 and stored in x's dtype."""
        if x.ndim != 2 or x.shape[0] <= x.shape[1]:
            raise ValueError(f"x must have shape (m, n) with m > n, got {tuple(x.shape)}")
        xd = x.double()
        mean = xd.mean(0)
        centred = xd - mean
        cov = centred.T @ centred / x.shape[0]
        return cls(mean.to(x.dtype), cov.to(x.dtype))

    def _logdet(self) -> torch.Tensor:
        return torch.log(torch.diagonal(self.chol)).sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.linalg.solve_triangular(
            self.chol, (x - self.mean).unsqueeze(-1), upper=False
        ).squeeze(-1)
        return z, (-self._logdet()).expand(x.shape[:-1])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z @ self.chol.T + self.mean, self._logdet().expand(z.shape[:-1])
