"""The P4Inv map, its Sherman–Morrison inverse and log|c|: fused forwards, O(batch·n) backwards."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "Products",
    "forward_products",
    "inverse_products",
    "log_abs_factor",
    "p4_forward",
    "p4_inverse",
    "p4_penalty",
    "perturbed_linear",
    "sherman_morrison_linear",
]

# How an op runs (see _route): plain tensor operations, the low-overhead autograd.Function, or
# every value as differentiable tensor operations of the inputs, for a tracer to see (functorch
# transforms: vmap, grad, jacrev, ...; torch.compile).
_PLAIN, _EAGER, _TRACED = 0, 1, 2


_transforms_active = torch._C._are_functorch_transforms_active
_compiling = torch.compiler.is_compiling


def _tracing() -> bool:
    """Whether a tracer sees these calls: a functorch transform or torch.compile."""
    return _transforms_active() or _compiling()


def _route(*tensors: torch.Tensor | None) -> int:
    """_TRACED under a functorch transform or while torch.compile traces, _PLAIN when autograd
    records nothing for these inputs, else _EAGER.

    A Function with ``setup_context`` costs about 50 µs of Python per call (``apply`` binds its
    arguments through ``inspect.signature``) against about 15 µs for the classic ``ctx`` style,
    and with nothing to record neither is needed: the forward's tensor operations alone give the
    same values."""
    if _tracing():
        return _TRACED
    if torch.is_grad_enabled():
        for t in tensors:
            if t is not None and t.requires_grad:
                return _EAGER
    return _PLAIN


def _host(t: torch.Tensor) -> bool:
    """Whether t's values can be read on the host without waiting for a device (a CPU tensor).

    The one switch between the two forms of the per-call scalars: host floats where it holds
    (no tensor operation per scalar), 0-dim tensors elsewhere (no device sync per call). Tests
    set it to always-False to run the device form on the CPU."""
    return t.is_cpu


@functools.cache
def _apply(fn: type[torch.autograd.Function]) -> Callable[..., Any]:
    """``fn.apply`` without the Python wrapper of ``torch.autograd.Function.apply`` (about 8 µs
    per call with eight arguments), for the _EAGER route only: the wrapper unwraps dead functorch
    wrappers and binds ``setup_context`` defaults, which calls outside functorch transforms of
    classic-style Functions do not need. Falls back to ``fn.apply`` where torch lacks the C
    entry point."""
    raw = getattr(torch._C, "_FunctionBase", None)
    entry = None if raw is None else raw.__dict__.get("apply")
    if entry is None or not hasattr(entry, "__get__"):
        return fn.apply
    return entry.__get__(None, fn)


class _NoGrad:
    """``torch.no_grad()`` for the per-call paths: the same switch, without the decorator
    machinery that makes ``torch.no_grad()`` cost about 3 µs per use."""

    __slots__ = ("_prev",)

    def __enter__(self) -> None:
        self._prev = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        torch._C._set_grad_enabled(self._prev)


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """t ``(*, n)`` as rows ``(m, n)`` (t itself when it has two dimensions)."""
    return t if t.dim() == 2 else t.reshape(-1, n)


def _to(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t in ``dtype`` (without a dispatched no-op when it is already)."""
    return t if t.dtype == dtype else t.to(dtype)


# -- y = x (A + u vᵀ)ᵀ + b ------------------------------------------------------------------------
def _perturbed(
    x: torch.Tensor, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    n = a.shape[-1]
    if x.numel() < n * n:  # fewer rows than n: the rank-one term costs less on the output
        y = F.linear(x, a, bias)
        return torch.addr(_rows(y, n), _rows(x, n) @ v, u).reshape(y.shape)
    return F.linear(x, torch.addr(a, u, v), bias)


def _perturbed_grads(
    needs: tuple,
    has_bias: bool,
    x: torch.Tensor,
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    grad: torch.Tensor,
    w: torch.Tensor | None = None,
) -> tuple:
    """Gradients for (x, A, u, v, b) of y = x (A + u vᵀ)ᵀ + b (A's is None); ``w`` is
    A + u vᵀ when already formed."""
    n = a.shape[-1]
    g, xr = _rows(grad, n), _rows(x, n)
    gx = gu = gv = gb = None
    if needs[0]:
        gx = grad @ (torch.addr(a, u, v) if w is None else w)  # ∂/∂x of x Wᵀ: grad · W
    if needs[2]:
        gu = torch.mv(g.t(), torch.mv(xr, v))  # Σ_b grad_b (v·x_b)
    if needs[3]:
        gv = torch.mv(xr.t(), torch.mv(g, u))  # Σ_b x_b (u·grad_b)
    if has_bias and needs[4]:
        gb = g.sum(0)
    return gx, None, gu, gv, gb


def _perturbed_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    return _perturbed_grads(ctx.needs_input_grad, ctx.has_bias, *ctx.saved_tensors, grad)


class _PerturbedLinear(torch.autograd.Function):
    """y = x (A + u vᵀ)ᵀ + b; A carries no gradient (functorch-compatible form)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        a: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        return _perturbed(x, a, u, v, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, a, u, v, bias = inputs
        ctx.save_for_backward(x, a, u, v)
        ctx.has_bias = bias is not None

    backward = staticmethod(_perturbed_backward)


class _PerturbedLinearEager(torch.autograd.Function):
    """The same as :class:`_PerturbedLinear` in the classic form (less Python per call)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        a: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        _PerturbedLinear.setup_context(ctx, (x, a, u, v, bias), None)
        return _perturbed(x, a, u, v, bias)

    backward = staticmethod(_perturbed_backward)


# -- x = (X − a wᵀ/c)(y − b) ----------------------------------------------------------------------
def _sherman_morrison(
    y: torch.Tensor,
    xinv: torch.Tensor,
    a: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    bias: torch.Tensor | None,
    m: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """``m``: the matrix X − a (vᵀX)/c when already formed; ``scratch``: a tensor of y's shape
    and dtype to hold y − b (it is overwritten)."""
    n = xinv.shape[-1]
    yb = y if bias is None else torch.sub(y, bias, out=scratch) if scratch is not None else y - bias
    if y.numel() < n * n:  # fewer rows than n: z = X(y − b), then x = z − a (vᵀz)/c
        z = _rows(F.linear(yb, xinv), n)
        return torch.addr(z, (z @ v) / c, a, alpha=-1).reshape(y.shape)
    return F.linear(yb, _inverse_matrix(xinv, a, v, c) if m is None else m)


def _inverse_matrix(
    xinv: torch.Tensor, a: torch.Tensor, v: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """M = X − a (vᵀX)/c, all in one dtype."""
    return torch.addr(xinv, a / c, v @ xinv, alpha=-1)


def _sherman_morrison_grads(
    needs: tuple,
    y: torch.Tensor,
    xinv: torch.Tensor,
    a: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    bias: torch.Tensor | None,
    grad: torch.Tensor,
    m: torch.Tensor | None = None,
) -> tuple:
    """Gradients for (y, X, a, v, c, b) of x = (X − a wᵀ/c)(y − b), w = Xᵀv (X's is None);
    ``m`` is X − a wᵀ/c when already formed."""
    n = xinv.shape[-1]
    w = v @ xinv
    yb = y if bias is None else y - bias
    g, yr = _rows(grad, n), _rows(yb, n)
    # With z = X(y − b), s = w·(y − b) and k = s/c per row: x = z − a k.
    gy = ga = gv = gc = gb = None
    if needs[0] or (bias is not None and needs[5]):
        gyb = grad @ (torch.addr(xinv, a / c, w, alpha=-1) if m is None else m)  # grad · M
        gy = gyb if needs[0] else None
        if bias is not None and needs[5]:
            gb = -_rows(gyb, n).sum(0)
    if needs[2] or needs[3] or needs[4]:
        s = yr @ w
        h = g @ a  # −∂L/∂k per row
        if needs[2]:
            ga = -(g.mT @ (s / c))
        if needs[3]:
            gv = xinv @ (-(yr.mT @ h) / c)  # ∂L/∂w = −Σ_b h_b (y − b)_b / c, w = Xᵀv
        if needs[4]:
            gc = (h @ s) / (c * c)
    return gy, None, ga, gv, gc, gb


def _sherman_morrison_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    y, xinv, a, v, c, bias = ctx.saved_tensors
    return _sherman_morrison_grads(ctx.needs_input_grad, y, xinv, a, v, c, bias, grad)


class _ShermanMorrisonLinear(torch.autograd.Function):
    """x = M (y − b) with M = X − a wᵀ/c, w = Xᵀv: the Sherman–Morrison inverse of A + u vᵀ
    given X ≈ A⁻¹, a = Xu and c = 1 + vᵀa; X carries no gradient, a, v, c and b do
    (functorch-compatible form)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        y: torch.Tensor,
        xinv: torch.Tensor,
        a: torch.Tensor,
        v: torch.Tensor,
        c: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        return _sherman_morrison(y, xinv, a, v, c, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    backward = staticmethod(_sherman_morrison_backward)


class _ShermanMorrisonLinearEager(torch.autograd.Function):
    """The same as :class:`_ShermanMorrisonLinear` in the classic form (less Python per call)."""

    @staticmethod
    def forward(
        ctx: Any,
        y: torch.Tensor,
        xinv: torch.Tensor,
        a: torch.Tensor,
        v: torch.Tensor,
        c: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(y, xinv, a, v, c, bias)
        return _sherman_morrison(y, xinv, a, v, c, bias)

    backward = staticmethod(_sherman_morrison_backward)


# -- log|c|, c = 1 + vᵀXu, and the layer-level fusions that use it ---------------------------------
def _factor(
    u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log|c|, c, a = Xu) in X's dtype."""
    a = xinv @ u.to(xinv.dtype)
    c = 1 + v.to(xinv.dtype) @ a
    return torch.log(torch.abs(c)), c, a


def _xu_c(
    u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """(a = Xu, c = 1 + vᵀa) in X's dtype, no autograd: c a host float where X can be read on
    the host without a wait (:func:`_host`), else a 0-dim tensor. The same operations as
    :func:`_factor`."""
    with _NoGrad():
        xu = torch.mv(xinv, _to(u, xinv.dtype))
        d = torch.dot(_to(v, xinv.dtype), xu)
        return xu, (1.0 + float(d) if _host(xinv) else 1 + d)


def _saved_factor(
    ctx: Any, u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, a) for a backward pass: the forward's values, or — when the backward itself is
    recorded (double backward) — the same values rebuilt from u and v so they carry a graph."""
    if torch.is_grad_enabled():
        _, c, a = _factor(u, v, xinv)
        return c, a
    return ctx.c, ctx.a


def _factor_grads(
    ctx: Any,
    k: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    xinv: torch.Tensor,
    c: torch.Tensor,
    a: torch.Tensor,
    iu: int,
    iv: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """∂/∂u and ∂/∂v of k·log|c| (k 0-dim, in X's dtype or one it widens exactly):
    k Xᵀv/c and k Xu/c, in u's and v's dtypes."""
    k = _widened(k, xinv.dtype) / c
    gu = _into(torch.mul, k, v.to(xinv.dtype) @ xinv, u.dtype) if ctx.needs_input_grad[iu] else None
    gv = _into(torch.mul, k, a, v.dtype) if ctx.needs_input_grad[iv] else None
    return gu, gv


def _widened(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t as it enters an operation with a ``dtype`` tensor when type promotion converts it to
    ``dtype`` exactly (no cast of its own), else t cast to ``dtype``."""
    return t if _promoted(t.dtype, dtype) == dtype else t.to(dtype)


_promoted = functools.cache(torch.promote_types)  # (a dispatched operation when not cached)


def _into(
    op: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor | float, dtype: torch.dtype
) -> torch.Tensor:
    """``op(a, b).to(dtype)`` for a binary pointwise ``op``: computed in the promoted dtype and
    rounded to ``dtype``, the same bits. Where nothing records or traces it is one kernel
    writing into a ``dtype`` tensor (``out=``), not an operation and a cast."""
    if torch.is_grad_enabled() or _tracing() or torch.result_type(a, b) == dtype:
        return op(a, b).to(dtype)
    shape = a.shape if not isinstance(b, torch.Tensor) else torch.broadcast_shapes(a.shape, b.shape)
    return op(a, b, out=torch.empty(shape, dtype=dtype, device=a.device))


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else a if b is None else a + b


# (matrix, a = Xu, c, log|c|, log|det|): W = A + u vᵀ for the forward or M = X − a (vᵀX)/c for
# the inverse in the compute dtype (None when not formed), a, c and log|c| in the state dtype,
# and the direction's log|det| (shape ``()``) in the compute dtype. On the CPU c, log|c| and
# log|det| are host floats (log|det| then rounded to the compute dtype by :func:`_batch`).
Scalar = torch.Tensor | float
Products = tuple[torch.Tensor | None, torch.Tensor, Scalar, Scalar, Scalar]


def _full(t: torch.Tensor, n: int) -> bool:
    """Whether t ``(*, n)`` has at least n rows, so the rank-one term is folded into the
    matrix (O(n²)) rather than applied to the rows (O(rows·n))."""
    return t.numel() >= n * n


def _log_abs(c: float) -> float:
    """log|c| of a host float (−inf at 0, NaN for NaN), as torch.log(torch.abs(c))."""
    c = abs(c)
    return math.log(c) if c != 0.0 else -math.inf


def forward_products(
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    xinv: torch.Tensor,
    logabsdet: torch.Tensor,
    full: bool = True,
) -> Products:
    """The forward's per-parameter products: W = A + u vᵀ in A's dtype (None unless ``full``),
    a = Xu in X's dtype, c = 1 + vᵀa and log|c| in X's dtype, and log|det A + u vᵀ| (in A's
    dtype; see :func:`_batch`). No autograd.

    On the CPU c, log|c| and log|det| are host floats in X's dtype (reading a CPU scalar costs
    no wait, and the scalar arithmetic then needs no tensor operations); elsewhere 0-dim
    tensors."""
    with _NoGrad():
        dt = a.dtype
        w = torch.addr(a, _to(u, dt), _to(v, dt)) if full else None
        xu, c = _xu_c(u, v, xinv)
        if not isinstance(c, torch.Tensor):
            log_c = _log_abs(c)
            return w, xu, c, log_c, float(logabsdet) + log_c
        log_c = torch.log(torch.abs(c))
        return w, xu, c, log_c, _into(torch.add, logabsdet, log_c, dt)


def _tensor(value: torch.Tensor | float, dtype: torch.dtype) -> torch.Tensor:
    """``value`` (a 0-dim tensor or a host float) as a 0-dim tensor in ``dtype``."""
    if isinstance(value, torch.Tensor):
        return _to(value, dtype)
    return torch.scalar_tensor(value, dtype=dtype)


def _batch(value: torch.Tensor | float, like: torch.Tensor, copy: bool) -> torch.Tensor:
    """``value`` (log|det|, one value) over the batch shape ``(*,)`` of ``like`` ``(*, n)``, in
    like's dtype: a host float is rounded once to that dtype (as ``.to(dtype)`` rounds a float64
    tensor) and filled into new memory, one operation; a 0-dim tensor (already in that dtype) is
    expanded, after a copy when ``copy`` (an output must not be a tensor someone else holds)."""
    if not isinstance(value, torch.Tensor):
        return torch.full(like.shape[:-1], value, dtype=like.dtype, device=like.device)
    return (value.clone() if copy else value).expand(like.shape[:-1])


def inverse_products(
    xinv_y: torch.Tensor,
    v: torch.Tensor,
    logabsdet: torch.Tensor,
    a: torch.Tensor,
    c: torch.Tensor,
    full: bool = True,
) -> Products:
    """The inverse's per-parameter products from a = Xu and c (state dtype; c a host float on the
    CPU, see :data:`Products`): M = X − a (vᵀX)/c in the dtype of ``xinv_y`` (X in the compute
    dtype; None unless ``full``) and −log|det A + u vᵀ| in that dtype. No autograd."""
    with _NoGrad():
        dt = xinv_y.dtype
        if not isinstance(c, torch.Tensor):  # a / c divides by c rounded to dt, as below
            m = (
                torch.addr(xinv_y, a.to(dt) / c, torch.mv(xinv_y.t(), _to(v, dt)), alpha=-1)
                if full
                else None
            )
            log_c = _log_abs(c)
            return m, a, c, log_c, -(float(logabsdet) + log_c)
        m = _inverse_matrix(xinv_y, a.to(dt), _to(v, dt), c.to(dt)) if full else None
        log_c = torch.log(torch.abs(c))  # −(l + log|c|) = (−l) − log|c| exactly
        return m, a, c, log_c, _into(torch.sub, -logabsdet, log_c, dt)


def _forward(
    x: torch.Tensor,
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    xinv: torch.Tensor,
    logabsdet: torch.Tensor,
    products: Products | None,
) -> tuple[torch.Tensor, Products]:
    dt, n = x.dtype, a.shape[-1]
    full = _full(x, n)
    if products is None or (full and products[0] is None):
        products = forward_products(a, u, v, xinv, logabsdet, full)
    b = None if bias is None else _to(bias, dt)
    y = F.linear(x, products[0], b) if full else _perturbed(x, a, _to(u, dt), _to(v, dt), b)
    return y, products


def _inverse(
    y: torch.Tensor,
    xinv_y: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    logabsdet: torch.Tensor,
    products: Products,
    scratch: torch.Tensor | None,
) -> tuple[torch.Tensor, Products]:
    dt, n = y.dtype, xinv_y.shape[-1]
    full = _full(y, n)
    if full and products[0] is None:
        products = inverse_products(xinv_y, v, logabsdet, products[1], products[2])
    m, a, c = products[:3]
    b = None if bias is None else _to(bias, dt)
    if full:  # M applied to y − b: a, v and c are in M already
        yb = y if b is None else torch.sub(y, b, out=scratch) if scratch is not None else y - b
        return F.linear(yb, m), products
    return _sherman_morrison(y, xinv_y, a.to(dt), v.to(dt), _tensor(c, dt), b, m, scratch), products


class _LogAbsFactor(torch.autograd.Function):
    """log|c| with ∂/∂u = Xᵀv/c and ∂/∂v = Xu/c; X carries no gradient."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor) -> torch.Tensor:
        log_c, ctx.c, ctx.a = _factor(u, v, xinv)
        ctx.save_for_backward(u, v, xinv)
        return log_c

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        u, v, xinv = ctx.saved_tensors
        c, a = _saved_factor(ctx, u, v, xinv)
        return (*_factor_grads(ctx, grad, u, v, xinv, c, a, 0, 1), None)


def _penalty_excess(
    log_c: torch.Tensor, logabsdet: torch.Tensor, lo: float, hi: float
) -> torch.Tensor:
    """d = t − clamp(t, lo, hi) for t = (log|c|, log|c| + log|det A|), as a tensor: the distance
    beyond the bounds, relu(t − hi) − relu(lo − t) with one of the two zero, so the penalty
    weight·Σ(relu(lo − t)² + relu(t − hi)²) is weight·Σd² and its slope weight·2Σd (the same
    bits, in two operations fewer than the two relus)."""
    terms = torch.stack([log_c, log_c + logabsdet])
    return terms - terms.clamp(lo, hi)


def _penalty_value(
    d: torch.Tensor, weight: float, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """weight·Σd², rounded to ``dtype`` (default: d's)."""
    return _into(torch.mul, d.square().sum(), weight, dtype or d.dtype)


def _penalty_wslope(d: torch.Tensor, weight: float) -> torch.Tensor:
    return weight * (2 * d.sum())  # weight·Σ P′(t)


def _penalty_host(
    log_c: float, logabsdet: float, lo: float, hi: float, weight: float
) -> tuple[float, float]:
    """(penalty, weight·Σ P′(t)) on host floats: the IEEE operations of :func:`_penalty_value`
    and :func:`_penalty_wslope`, in the same order (so the same bits)."""
    total = slope = 0.0
    for i, t in enumerate((log_c, log_c + logabsdet)):
        d = t - min(max(t, lo), hi)  # as torch.clamp: NaN stays NaN
        total, slope = (d * d, d) if i == 0 else (total + d * d, slope + d)
    return weight * total, weight * (2 * slope)


class _Penalty(torch.autograd.Function):
    """weight·[P(log|c|) + P(log|c| + log|det A|)], P(t) = relu(lo − t)² + relu(t − hi)².

    On the CPU the scalar arithmetic runs on host floats (no device to wait for): a handful of
    tensor operations fewer per call, the same values."""

    @staticmethod
    def forward(
        ctx: Any,
        u: torch.Tensor,
        v: torch.Tensor,
        xinv: torch.Tensor,
        logabsdet: torch.Tensor,
        lo: float,
        hi: float,
        weight: float,
        factor: tuple | None,
    ) -> torch.Tensor:
        log_c, ctx.c, ctx.a = _factor(u, v, xinv) if factor is None else factor
        ctx.save_for_backward(u, v, xinv, logabsdet)
        ctx.bounds = (lo, hi, weight)
        ctx.host = None
        if _host(xinv):
            value, wslope = _penalty_host(float(log_c), float(logabsdet), lo, hi, weight)
            ctx.host = (wslope, float(ctx.c))
            return torch.scalar_tensor(value, dtype=u.dtype)
        # Off the host the slope is kept from here: the backward need not rebuild the terms.
        d = _penalty_excess(log_c, logabsdet, lo, hi)
        ctx.wslope = _penalty_wslope(d, weight)
        return _penalty_value(d, weight, u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        u, v, xinv, logabsdet = ctx.saved_tensors
        lo, hi, weight = ctx.bounds
        none = (None,) * 6
        twice = torch.is_grad_enabled()  # double backward: every value rebuilt from u and v
        if ctx.host is None and not twice:
            k = _widened(grad, xinv.dtype) * ctx.wslope
            return (*_factor_grads(ctx, k, u, v, xinv, ctx.c, ctx.a, 0, 1), *none)
        if ctx.host is not None and not twice:
            wslope, c = ctx.host
            k = float(grad) * wslope / c  # k = ∂L/∂log|c| / c
            if k == 0.0:  # inside the bounds (the usual case): no gradient, and no operations
                return (None, None, *none)
            gu = (
                (torch.mv(xinv.t(), _to(v, xinv.dtype)) * k).to(u.dtype)
                if ctx.needs_input_grad[0]
                else None
            )
            gv = (ctx.a * k).to(v.dtype) if ctx.needs_input_grad[1] else None
            return (gu, gv, *none)
        c, a = _saved_factor(ctx, u, v, xinv)
        k = _widened(grad, xinv.dtype) * _penalty_wslope(
            _penalty_excess(torch.log(torch.abs(c)), logabsdet, lo, hi), weight
        )
        return (*_factor_grads(ctx, k, u, v, xinv, c, a, 0, 1), *none)


class _Forward(torch.autograd.Function):
    """(y, log|det|) of P4InvLinear.forward in one autograd node: y as in
    :func:`perturbed_linear`, log|det| = log|det A| + log|c| in x's dtype, spread over x's
    batch shape inside the node (see :func:`_batch`; no autograd-visible expand per call)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        a: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        xinv: torch.Tensor,
        logabsdet: torch.Tensor,
        products: Products | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        kept = products is not None
        y, (ctx.w, ctx.a, ctx.c, _, ld) = _forward(x, a, u, v, bias, xinv, logabsdet, products)
        ctx.save_for_backward(x, a, u, v, xinv)
        ctx.bias_dtype = None if bias is None else bias.dtype
        # an output must not be the caller's tensor
        return y, _batch(ld, x, kept)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, grad_ld: torch.Tensor | None) -> tuple:
        x, a, u, v, xinv = ctx.saved_tensors
        twice = torch.is_grad_enabled()  # double backward: every value rebuilt from u and v
        if not twice and (grad_ld is None or _host(grad_ld)) and _host(x):
            return (*_forward_grads_host(ctx, x, a, u, v, xinv, grad, grad_ld), None, None, None)
        needs = ctx.needs_input_grad
        gx = gu = gv = gb = None
        if grad is not None:
            dt = x.dtype
            gx, _, gu, gv, gb = _perturbed_grads(
                needs,
                ctx.bias_dtype is not None,
                x,
                a,
                _to(u, dt),
                _to(v, dt),
                grad,
                None if twice else ctx.w,
            )
            gu = None if gu is None else _to(gu, u.dtype)
            gv = None if gv is None else _to(gv, v.dtype)
            gb = None if gb is None else _to(gb, ctx.bias_dtype)
        if grad_ld is not None and (needs[2] or needs[3]):
            c, xu = _saved_factor(ctx, u, v, xinv)
            gu_ld, gv_ld = _factor_grads(ctx, grad_ld.sum(), u, v, xinv, c, xu, 2, 3)
            gu, gv = _add(gu, gu_ld), _add(gv, gv_ld)
        return gx, None, gu, gv, gb, None, None, None


def _forward_grads_host(
    ctx: Any,
    x: torch.Tensor,
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    xinv: torch.Tensor,
    grad: torch.Tensor | None,
    grad_ld: torch.Tensor | None,
) -> tuple:
    """Gradients for (x, A, u, v, b) of :class:`_Forward` on the CPU when the backward is not
    itself recorded: those of y (one matrix product for x, O(batch·n) for u, v and b) plus
    those of log|c|, k·Xᵀv and k·Xu with k = ∂L/∂log|c| / c read on the host, each added by
    the same ``addmv`` that sums over the batch."""
    needs = ctx.needs_input_grad
    dt, sdt, n = x.dtype, xinv.dtype, a.shape[-1]
    k = (
        0.0
        if grad_ld is None or not (needs[2] or needs[3])
        else float(grad_ld.sum()) / float(ctx.c)
    )
    ld_u = torch.mv(xinv.t(), _to(v, sdt)) if needs[2] and k != 0.0 else None  # Xᵀv
    ld_v = ctx.a if needs[3] and k != 0.0 else None  # Xu
    gx = gu = gv = gb = None
    if grad is not None:
        g, xr = _rows(grad, n), _rows(x, n)
        u_dt, v_dt = _to(u, dt), _to(v, dt)
        if needs[0]:
            w = torch.addr(a, u_dt, v_dt) if ctx.w is None else ctx.w
            gx = torch.mm(grad, w) if grad.dim() == 2 else grad @ w
        if needs[2]:
            s = torch.mv(xr, v_dt)
            gu = torch.mv(g.t(), s) if ld_u is None else torch.addmv(ld_u.to(dt), g.t(), s, beta=k)
        if needs[3]:
            t = torch.mv(g, u_dt)
            gv = (
                torch.mv(xr.t(), t) if ld_v is None else torch.addmv(ld_v.to(dt), xr.t(), t, beta=k)
            )
        if ctx.bias_dtype is not None and needs[4]:
            gb = _to(g.sum(0), ctx.bias_dtype)
    else:
        gu = None if ld_u is None else ld_u * k
        gv = None if ld_v is None else ld_v * k
    return (
        gx,
        None,
        None if gu is None else _to(gu, u.dtype),
        None if gv is None else _to(gv, v.dtype),
        gb,
    )


class _Inverse(torch.autograd.Function):
    """(x, −log|det|) of P4InvLinear.inverse in one autograd node, given a = Xu and c = 1 + vᵀa
    in X's dtype (computed by the caller for its singularity check; their gradients reach u and
    v here): x as in :func:`sherman_morrison_linear` with X in y's dtype."""

    @staticmethod
    def forward(
        ctx: Any,
        y: torch.Tensor,
        xinv_y: torch.Tensor,
        xinv: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        logabsdet: torch.Tensor,
        products: Products,
        scratch: torch.Tensor | None,
        kept: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        x, (ctx.m, ctx.a, ctx.c, _, ld) = _inverse(y, xinv_y, v, bias, logabsdet, products, scratch)
        ctx.save_for_backward(y, xinv_y, xinv, u, v, bias)
        # an output must not be a tensor the caller keeps
        return x, _batch(ld, y, kept)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, grad_ld: torch.Tensor | None) -> tuple:
        y, xinv_y, xinv, u, v, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dt, sdt = y.dtype, xinv.dtype
        c, a = _saved_factor(ctx, u, v, xinv)
        c = _tensor(c, sdt)
        gy = gb = ga = gv = gc = None
        if grad is not None:
            # The Sherman–Morrison map's gradients for (y, a, v, c, b) in y's dtype.
            gy, _, ga, gv, gc, gb = _sherman_morrison_grads(
                (needs[0], False, needs[3], needs[4], needs[3] or needs[4], needs[5]),
                y,
                xinv_y,
                a.to(dt),
                v.to(dt),
                c.to(dt),
                None if bias is None else bias.to(dt),
                grad,
                None if torch.is_grad_enabled() else ctx.m,
            )
            gb = None if gb is None else gb.to(bias.dtype)
            ga = None if ga is None else ga.to(sdt)
            gc = None if gc is None else gc.to(sdt)
            gv = None if gv is None else gv.to(v.dtype)
        if grad_ld is not None and (needs[3] or needs[4]):
            gc = _add(gc, -grad_ld.sum().to(sdt) / c)  # ld = −(log|det A| + log|c|)
        gu = None
        if gc is not None:  # c = 1 + vᵀa: c reaches a through v and v through a
            ga = _add(ga, gc * v.to(sdt))
            gv = _add(gv, (gc * a).to(v.dtype)) if needs[4] else gv
        if ga is not None and needs[3]:
            gu = (ga @ xinv).to(u.dtype)  # a = Xu
        return gy, None, None, gu, gv, gb, None, None, None, None


# The Functions' entry points, bound once (see _apply).
_FORWARD, _INVERSE = _apply(_Forward), _apply(_Inverse)
_LOG_ABS_FACTOR, _PENALTY = _apply(_LogAbsFactor), _apply(_Penalty)


def perturbed_linear(
    x: torch.Tensor, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """y = x (A + u vᵀ)ᵀ + b as ONE matrix product with the rank-one term folded into the
    weight (torch.addr, O(n²)); x ``(*, n)``, A ``(n, n)``, u, v, b ``(n,)``, one dtype. With
    fewer rows than n the term is added to the output instead (O(rows·n) < O(n²)).

    The backward pass costs one matrix product (for x) plus O(batch·n) for u, v and b, where
    autograd through the folded weight would cost a second, n×n weight gradient; it is built
    from differentiable operations, so double backward works. With autograd recording nothing
    for these inputs no autograd.Function is entered at all.
    """
    route = _route(x, u, v, bias)
    if route == _PLAIN:
        return _perturbed(x, a, u, v, bias)
    fn = _PerturbedLinearEager if route == _EAGER else _PerturbedLinear
    return fn.apply(x, a, u, v, bias)


def sherman_morrison_linear(
    y: torch.Tensor,
    xinv: torch.Tensor,
    a: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """x = (X − a (vᵀX)/c)(y − b), the Sherman–Morrison inverse of y = (A + u vᵀ)x + b for
    X ≈ A⁻¹ ``(n, n)``, a = Xu ``(n,)``, v ``(n,)``, c = 1 + vᵀa ``()`` and y ``(*, n)``.

    The rank-one correction is folded into the matrix (torch.addr, O(n²)) and applied by ONE
    matrix product (with fewer rows than n it is applied to X(y − b) instead); the backward
    pass costs one matrix product (for y) plus O(batch·n + n²) for a, v, c and b, and supports
    double backward.
    """
    route = _route(y, a, v, c, bias)
    if route == _PLAIN:
        return _sherman_morrison(y, xinv, a, v, c, bias)
    fn = _ShermanMorrisonLinearEager if route == _EAGER else _ShermanMorrisonLinear
    return fn.apply(y, xinv, a, v, c, bias)


def log_abs_factor(u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor) -> torch.Tensor:
    """log|c|, c = 1 + vᵀXu, in X's dtype (shape ``()``) for X ``(n, n)`` and u, v ``(n,)``;
    differentiable in u and v (X carries no gradient), double backward included.

    The same two O(n²) products as the plain expression, in one autograd node: the gradients
    Xᵀv/c and Xu/c cost one more matrix–vector product in the backward pass."""
    if _route(u, v) == _EAGER:
        return _LOG_ABS_FACTOR(u, v, xinv)
    return _factor(u, v, xinv)[0]


def p4_forward(
    x: torch.Tensor,
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    xinv: torch.Tensor,
    logabsdet: torch.Tensor,
    *,
    products: Products | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, log|det|) of P4InvLinear: y = :func:`perturbed_linear` with A ``a`` in x's dtype and
    u, v, b (parameters of any dtype) cast to it, and log|det| = log|det A| + log|1 + vᵀXu| of
    x's batch shape ``(*,)`` (one value for every row) in x's dtype, from u and v as given and X,
    log|det A| ``logabsdet`` in the state dtype. One autograd node when autograd records.

    ``products``: :func:`forward_products` of these very tensors, when the caller kept them from
    an earlier call (the values are then not recomputed; the results are the same bits)."""
    route = _route(x, u, v, bias)
    if route == _EAGER:
        return _FORWARD(x, a, u, v, bias, xinv, logabsdet, products)
    if route == _TRACED:  # every value as a function of u and v, for the transform to see
        dt = x.dtype
        y = perturbed_linear(x, a, u.to(dt), v.to(dt), None if bias is None else bias.to(dt))
        return y, (logabsdet + _factor(u, v, xinv)[0]).to(dt).expand(x.shape[:-1])
    kept = products is not None
    y, products = _forward(x, a, u, v, bias, xinv, logabsdet, products)
    return y, _batch(products[4], x, kept)


def p4_inverse(
    y: torch.Tensor,
    xinv_y: torch.Tensor,
    xinv: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    logabsdet: torch.Tensor,
    products: Products,
    *,
    scratch: torch.Tensor | None = None,
    kept: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, −log|det|) of P4InvLinear.inverse: x by :func:`sherman_morrison_linear` with
    ``xinv_y`` = X in y's dtype and v, b cast to it, −log|det| of y's batch shape ``(*,)`` (one
    value for every row) in y's dtype.

    ``products``: :func:`inverse_products` of these tensors — at least a = Xu and c = 1 + vᵀa in
    the state dtype, as the caller computed them for its singularity check (M and log|det| may be
    None/anything when ``full`` was False; they are formed here as needed). The gradients of a
    and c are taken here. ``scratch``: a tensor of y's shape and dtype to hold y − b (saves
    allocating one per call). ``kept``: whether the caller keeps ``products`` (then a tensor
    log|det| in them is copied, not returned; False saves that copy). One autograd node when
    autograd records."""
    route = _route(y, u, v, bias)
    if route == _EAGER:
        return _INVERSE(y, xinv_y, xinv, u, v, bias, logabsdet, products, scratch, kept)
    dt = y.dtype
    if route == _TRACED:  # a and c as functions of u and v, for the transform to see
        _, c, a = _factor(u, v, xinv)
        x = sherman_morrison_linear(
            y, xinv_y, a.to(dt), v.to(dt), c.to(dt), None if bias is None else bias.to(dt)
        )
        return x, (-(logabsdet + torch.log(torch.abs(c)))).to(dt).expand(y.shape[:-1])
    x, products = _inverse(y, xinv_y, v, bias, logabsdet, products, scratch)
    return x, _batch(products[4], y, kept)


def p4_penalty(
    u: torch.Tensor,
    v: torch.Tensor,
    xinv: torch.Tensor,
    logabsdet: torch.Tensor,
    bounds: tuple[float, float],
    weight: float,
    *,
    factor: tuple | None = None,
) -> torch.Tensor:
    """weight·[P(log|c|) + P(log|c| + log|det A|)], P(t) = relu(lo − t)² + relu(t − hi)² for
    ``bounds`` = (lo, hi); shape ``()`` in u's dtype. One autograd node when autograd records
    (its backward is closed-form, rebuilt from differentiable operations for double backward).

    ``factor``: (log|c|, c, Xu) in X's dtype for these very tensors when the caller kept them
    (see :data:`Products`), else they are computed."""
    lo, hi = bounds
    route = _route(u, v)
    if route == _EAGER:
        return _PENALTY(u, v, xinv, logabsdet, lo, hi, weight, factor)
    if route == _TRACED or factor is None:
        factor = _factor(u, v, xinv)
    if route == _PLAIN and _host(xinv):
        value, _ = _penalty_host(float(factor[0]), float(logabsdet), lo, hi, weight)
        return torch.scalar_tensor(value, dtype=u.dtype)
    return _penalty_value(_penalty_excess(factor[0], logabsdet, lo, hi), weight, u.dtype)
