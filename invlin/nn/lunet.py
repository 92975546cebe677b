"""LU-Net: blocks of LULinear and leaky softplus, with its likelihood and dequantisation."""

from __future__ import annotations

import math

import torch

from invlin._validation import positive_int
from invlin.nn.activations import LeakySoftplus
from invlin.nn.lu import LULinear
from invlin.nn.sequential import InvertibleSequential

__all__ = ["LUNet", "dequantize"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class LUNet(InvertibleSequential):
    """LU-Net flow x ↦ z: ``blocks`` × (LULinear → LeakySoftplus), the last without activation.

    Densities are under a standard normal base N(0, I_n) in nats, with the correct constant
    ½·log 2π per dimension: log p(x) = −½‖z‖² − ½·n·log 2π + log|det ∂z/∂x|.

    Args:
        features: n, the size of the last dimension of x.
        blocks: number of LU layers (≥ 1); the LU-Net paper used 3 + 1 on MNIST.
        alpha: slope parameter of the leaky softplus activations, in (0, 1).
        init: initialisation of every :class:`LULinear` (``"identity"`` or ``"paper"``).

    Discrete data: dequantise with :func:`dequantize` and pass its log-Jacobian on, i.e.
    ``y, ld = dequantize(x_int, bins=256)`` then ``net.bits_per_dim(y, ld)``; that equals
    ``net.bits_per_dim(y) + log2(bins)`` and is the (upper-bound) bits/dim of the discrete data.

    >>> net = LUNet(4, blocks=2)
    >>> x = torch.randn(8, 4)
    >>> z, ld = net(x)
    >>> bool(torch.allclose(net.inverse(z)[0], x, atol=1e-4))
    True
    """

    def __init__(
        self,
        features: int,
        blocks: int = 4,
        alpha: float = 0.1,
        *,
        init: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        blocks = positive_int(blocks, "blocks")
        layers: list[torch.nn.Module] = []
        for i in range(blocks):
            layers.append(
                LULinear(features, init=init, device=device, dtype=dtype, generator=generator)
            )
            if i < blocks - 1:
                layers.append(LeakySoftplus(alpha))
        super().__init__(*layers)
        self.features = features
        self.blocks = blocks

    def extra_repr(self) -> str:
        return f"features={self.features}, blocks={self.blocks}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats, shape (*,), x's dtype (16-bit formats accumulated in float32)."""
        z, ld = self(x)
        acc = torch.float32 if z.dtype in _LOW_PRECISION else z.dtype
        z, ld = z.to(acc), ld.to(acc)
        lp = -0.5 * (z * z).sum(-1) - 0.5 * self.features * _LOG_2PI + ld
        return lp.to(x.dtype)

    def nll(self, x: torch.Tensor, logdet: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats over all leading dims of x (*, n); shape ().

        ``logdet`` (shape (*,) or ()), e.g. from :func:`dequantize`, is added to log p(x) before
        averaging: it turns the density of the dequantised y into that of the data.
        """
        lp = self.log_prob(x)
        if logdet is not None:
            if not isinstance(logdet, torch.Tensor) or logdet.shape not in (lp.shape, ()):
                raise ValueError(f"logdet must be a tensor of shape {tuple(lp.shape)} or ()")
            lp = lp + logdet.to(lp.dtype)
        return -lp.mean()

    def bits_per_dim(self, x: torch.Tensor, logdet: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`nll` / (n·ln 2): bits per dimension, shape ()."""
        return self.nll(x, logdet) / (self.features * math.log(2.0))


def dequantize(
    x: torch.Tensor,
    *,
    bins: int = 256,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform dequantisation y = (x + u)/bins, u ~ U[0, 1)ⁿ, of integer data x in [0, bins − 1].

    Args:
        x: tensor of shape (*, D) holding integers in [0, bins − 1] (integer dtype, or a floating
            dtype with integral values).
        bins: number of levels (256 for 8-bit data).
        generator: torch generator for u (on x's device).
        dtype: floating dtype of y; default x's dtype if floating, else the default dtype.

    Returns:
        (y, logdet): y of shape (*, D) in the open interval (0, 1) (values that rounding put on
        0 or 1 are clamped to the smallest normal float and the largest float below 1), and logdet
        = −D·log(bins) of shape (*,), the log-Jacobian of v ↦ v/bins from the integer-plus-noise
        space to y.

    Usage: ``net.nll(y, logdet)`` or ``net.bits_per_dim(y, logdet)`` give the dequantised
    (upper-bound) NLL of the discrete data; without ``logdet`` the result is the density of y on
    the unit cube, which is log2(bins) bits/dim too low.

    >>> y, ld = dequantize(torch.tensor([[0, 255]]), generator=torch.Generator().manual_seed(0))
    >>> bool(((y > 0) & (y < 1)).all()), round(float(ld[0]), 4) == round(-2 * math.log(256), 4)
    (True, True)
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    bins = positive_int(bins, "bins")
    if x.ndim < 1 or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"x must be a real tensor of shape (*, D), got {x.dtype} {tuple(x.shape)}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    if not torch.empty(0, dtype=dtype).is_floating_point():
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if x.is_floating_point() and not bool(torch.all(x == torch.round(x))):
        raise ValueError("x must hold integer values")
    if bool(((x < 0) | (x > bins - 1)).any()):
        raise ValueError(f"x must lie in [0, bins - 1] = [0, {bins - 1}]")
    work = torch.promote_types(dtype, torch.float32)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=work)
    y = ((x.to(work) + u) / bins).to(dtype)
    info = torch.finfo(dtype)
    y = y.clamp(min=info.tiny, max=1.0 - info.eps / 2)
    d = x.shape[-1]
    logdet = torch.full(x.shape[:-1], -d * math.log(bins), device=x.device, dtype=dtype)
    return y, logdet
