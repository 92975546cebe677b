"""The P4Inv map and its Sherman–Morrison inverse, one matrix product each, O(batch·n) backward."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["perturbed_linear", "sherman_morrison_linear"]


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.reshape(-1, n)


class _PerturbedLinear(torch.autograd.Function):
    """y = x (A + u vᵀ)ᵀ + b; A carries no gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        n = a.shape[-1]
        if x.numel() < n * n:  # fewer rows than n: the rank-one term costs less on the output
            y = F.linear(x, a, bias)
            return torch.addr(_rows(y, n), _rows(x, n) @ v, u).reshape(y.shape)
        return F.linear(x, torch.addr(a, u, v), bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, a, u, v, bias = inputs
        ctx.save_for_backward(x, a, u, v)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, a, u, v = ctx.saved_tensors
        n = a.shape[-1]
        g, xr = _rows(grad, n), _rows(x, n)
        gx = gu = gv = gb = None
        if ctx.needs_input_grad[0]:
            gx = grad @ torch.addr(a, u, v)  # ∂/∂x of x Wᵀ: grad · W
        if ctx.needs_input_grad[2]:
            gu = g.mT @ (xr @ v)  # Σ_b grad_b (v·x_b)
        if ctx.needs_input_grad[3]:
            gv = xr.mT @ (g @ u)  # Σ_b x_b (u·grad_b)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            gb = g.sum(0)
        return gx, None, gu, gv, gb


class _ShermanMorrisonLinear(torch.autograd.Function):
    """x = M (y − b) with M = X − a wᵀ/c, w = Xᵀv: the Sherman–Morrison inverse of A + u vᵀ
    given X ≈ A⁻¹, a = Xu and c = 1 + vᵀa; X carries no gradient, a, v, c and b do."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: torch.Tensor, xinv: torch.Tensor, a: torch.Tensor, v: torch.Tensor,
                c: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        n = xinv.shape[-1]
        yb = y if bias is None else y - bias
        if y.numel() < n * n:  # fewer rows than n: z = X(y − b), then x = z − a (vᵀz)/c
            z = _rows(F.linear(yb, xinv), n)
            return torch.addr(z, (z @ v) / c, a, alpha=-1).reshape(y.shape)
        return F.linear(yb, torch.addr(xinv, a / c, v @ xinv, alpha=-1))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        y, xinv, a, v, c, bias = inputs
        ctx.save_for_backward(y, xinv, a, v, c, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        y, xinv, a, v, c, bias = ctx.saved_tensors
        n = xinv.shape[-1]
        w = v @ xinv
        yb = y if bias is None else y - bias
        g, yr = _rows(grad, n), _rows(yb, n)
        # With z = X(y − b), s = w·(y − b) and k = s/c per row: x = z − a k.
        gy = ga = gv = gc = gb = None
        if ctx.needs_input_grad[0] or (bias is not None and ctx.needs_input_grad[5]):
            gyb = grad @ torch.addr(xinv, a / c, w, alpha=-1)  # grad · M
            gy = gyb if ctx.needs_input_grad[0] else None
            if bias is not None and ctx.needs_input_grad[5]:
                gb = -_rows(gyb, n).sum(0)
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            s = yr @ w
            h = g @ a  # −∂L/∂k per row
            if ctx.needs_input_grad[2]:
                ga = -(g.mT @ (s / c))
            if ctx.needs_input_grad[3]:
                gv = xinv @ (-(yr.mT @ h) / c)  # ∂L/∂w = −Σ_b h_b (y − b)_b / c, w = Xᵀv
            if ctx.needs_input_grad[4]:
                gc = (h @ s) / (c * c)
        return gy, None, ga, gv, gc, gb


def perturbed_linear(x: torch.Tensor, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """y = x (A + u vᵀ)ᵀ + b as ONE matrix product with the rank-one term folded into the
    weight (torch.addr, O(n²)); x ``(*, n)``, A ``(n, n)``, u, v, b ``(n,)``, one dtype. With
    fewer rows than n the term is added to the output instead (O(rows·n) < O(n²)).

    The backward pass costs one matrix product (for x) plus O(batch·n) for u, v and b, where
    autograd through the folded weight would cost a second, n×n weight gradient; it is built
    from differentiable operations, so double backward works.
    """
    return _PerturbedLinear.apply(x, a, u, v, bias)


def sherman_morrison_linear(y: torch.Tensor, xinv: torch.Tensor, a: torch.Tensor,
                            v: torch.Tensor, c: torch.Tensor,
                            bias: torch.Tensor | None) -> torch.Tensor:
    """x = (X − a (vᵀX)/c)(y − b), the Sherman–Morrison inverse of y = (A + u vᵀ)x + b for
    X ≈ A⁻¹ ``(n, n)``, a = Xu ``(n,)``, v ``(n,)``, c = 1 + vᵀa ``()`` and y ``(*, n)``.

    The rank-one correction is folded into the matrix (torch.addr, O(n²)) and applied by ONE
    matrix product (with fewer rows than n it is applied to X(y − b) instead); the backward
    pass costs one matrix product (for y) plus O(batch·n + n²) for a, v, c and b, and supports
    double backward.
    """
    return _ShermanMorrisonLinear.apply(y, xinv, a, v, c, bias)
