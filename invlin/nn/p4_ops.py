"""The arithmetic of P4InvLinear: y = (A + u vᵀ)x + b, its Sherman–Morrison inverse, log|det|.

Names mean one thing throughout: ``a`` = A (n×n, frozen), ``xinv`` = X ≈ A⁻¹, ``u``, ``v``,
``bias`` = b (n,), ``xu`` = Xu, ``c`` = 1 + vᵀXu (the *factor* of the determinant lemma),
``w`` = W = A + u vᵀ, ``m`` = M = X − (Xu)(vᵀX)/c ≈ W⁻¹, ``logabsdet`` = log|det A|.

Each formula has one home, used by every route, form and shape below:

=================  ==========================================  ============================
W                  A + u vᵀ                                     :func:`perturbed_matrix`
forward map        y = W x + b                                  ``_perturbed``
factor             c = 1 + vᵀXu, log|c|                         :func:`factor`
M                  X − (Xu)(vᵀX)/c                              :func:`inverse_matrix`
inverse map        x = M (y − b)                                ``_sherman_morrison``
log|det|           log|det A| + log|c|                          :func:`perturbed_logdet`
penalty            weight·Σ_t P(t), t ∈ {log|c|, log|c·det A|}  :func:`penalty_value`
=================  ==========================================  ============================

(The merge's Sherman–Morrison update of X and determinant-lemma update of log|det A| change
the layer's state and live in :meth:`P4InvLinear.merge <invlin.nn.P4InvLinear.merge>`.)

Routes from the layer to the arithmetic::

  P4InvLinear.forward(x)                        P4InvLinear.inverse(y)
    │ products kept? (ProductCache: CPU,          │ c ≠ 0 checked (one read per value of
    │  or inside cached_products())               │  X, u, v); products kept? (as forward)
    │  miss → forward_products()                  │  miss → factor() + inverse_products()
    ▼                                             ▼
  p4_forward(x, …, products)                    p4_inverse(y, …, products)
    │ _route(inputs)                              │ _route(inputs)
    ├─ PLAIN  (autograd records nothing) ───────► _forward ──► _perturbed
    │                                             _inverse ──► _sherman_morrison
    ├─ EAGER  (autograd records) ───────────────► _Forward / _Inverse: one autograd node each,
    │                                             same forward as PLAIN; closed-form backward
    └─ TRACED (vmap, grad, jacrev, compile) ────► perturbed_linear / sherman_morrison_linear
                                                  (rank-one term on the rows) + factor():
                                                  every value a differentiable op of u and v,
                                                  nothing kept
  P4InvLinear.penalty() ─► p4_penalty ─► penalty_value   (same three routes; the forward's
                                                          kept factor is reused)
  P4InvLinear.merge() / merge_layers(layers)  (no autograd, always eager)
    ─► _plan_merge: Xu, vᵀX and the decision's scalars (off the host: one tensor per layer)
    ─► one read of all the layers' scalars
    ─► _apply_merge: guard on log|c| and perturbed_logdet; A ← W, X ← X − (Xu)(vᵀX)/c
       (in place while an overflow bound holds), log|det A| += log|c|, sign flips when c < 0

Forms of the per-call scalars c, log|c|, log|det| (:func:`on_host`): on the CPU they are host
floats (reading a CPU value waits for nothing, and the scalar arithmetic then costs no tensor
operation) and products are kept between calls; elsewhere — or inside :func:`device_form` —
0-dim tensors (no device wait per call). Shapes: with at least n rows (``_full``) the rank-one
term is folded into W or M (O(n²), then one matrix product); with fewer rows it is applied to
the rows (O(rows·n)).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "Factor",
    "NoGrad",
    "Parts",
    "Products",
    "as_dtype",
    "compiling",
    "device_form",
    "factor",
    "forward_products",
    "inverse_matrix",
    "inverse_products",
    "log_abs",
    "on_host",
    "p4_forward",
    "p4_inverse",
    "p4_penalty",
    "penalty_value",
    "perturbed_linear",
    "perturbed_logdet",
    "perturbed_matrix",
    "sherman_morrison_linear",
    "tracing",
    "transforms_active",
    "widens",
]

Scalar = torch.Tensor | float


class Factor(NamedTuple):
    """c = 1 + vᵀXu with ``xu`` = Xu ``(n,)`` and ``log_c`` = log|c|, in X's dtype; c and log|c|
    are host floats in the host form, else 0-dim tensors."""

    xu: torch.Tensor
    c: Scalar
    log_c: Scalar


class Products(NamedTuple):
    """What one direction of the layer computes once per value of u, v and the state.

    ``matrix``: W = A + u vᵀ (forward) or M = X − (Xu)(vᵀX)/c (inverse) in the compute dtype,
    None when not formed (fewer rows than n); ``factor``: :class:`Factor` in the state dtype;
    ``logdet``: the direction's log|det| (forward +, inverse −) rounded to the compute dtype —
    a host float (rounded by ``_batch``) in the host form, else a 0-dim tensor."""

    matrix: torch.Tensor | None
    factor: Factor
    logdet: Scalar


class Parts(NamedTuple):
    """The layer's tensors one call reads: parameters ``u``, ``v`` ``(n,)`` and ``bias``
    (``(n,)`` or None); state ``a`` = A, ``xinv`` = X ``(n, n)`` and ``logabsdet`` = log|det A|
    ``()`` in the state dtype."""

    u: torch.Tensor
    v: torch.Tensor
    bias: torch.Tensor | None
    a: torch.Tensor
    xinv: torch.Tensor
    logabsdet: torch.Tensor


# -- routes and forms -----------------------------------------------------------------------------
# How an op runs (see _route): plain tensor operations, the one-node autograd.Function, or every
# value as differentiable tensor operations of the inputs, for a tracer to see.
_PLAIN, _EAGER, _TRACED = 0, 1, 2

transforms_active = torch._C._are_functorch_transforms_active
compiling = torch.compiler.is_compiling


def tracing() -> bool:
    """Whether a tracer sees these calls: a functorch transform or torch.compile."""
    return transforms_active() or compiling()


def _route(*tensors: torch.Tensor | None) -> int:
    """_TRACED under a functorch transform or while torch.compile traces, _PLAIN when autograd
    records nothing for these inputs (no Function needed: the forward's operations give the
    same values), else _EAGER."""
    if tracing():
        return _TRACED
    if torch.is_grad_enabled():
        for t in tensors:
            if t is not None and t.requires_grad:
                return _EAGER
    return _PLAIN


_DEVICE_FORM = [0]  # depth of nested device_form() contexts


def on_host(t: torch.Tensor) -> bool:
    """Whether the per-call scalars take the host form for ``t``: a CPU tensor (its values are
    read without waiting for a device) outside :func:`device_form`. The one switch between the
    two forms of the module docstring."""
    return t.is_cpu and not _DEVICE_FORM[0]


@contextlib.contextmanager
def device_form() -> Iterator[None]:
    """Within this context P4InvLinear takes on the CPU the form it takes on other devices:
    0-dim tensor scalars, no products kept outside :func:`~invlin.nn.cached_products`, one
    gathered read per merge. For tests and operation counts; process-wide while active.

    >>> with device_form():
    ...     on_host(torch.zeros(1))
    False
    """
    _DEVICE_FORM[0] += 1
    try:
        yield
    finally:
        _DEVICE_FORM[0] -= 1


@functools.cache
def _apply(fn: type[torch.autograd.Function]) -> Callable[..., Any]:
    """``fn.apply`` through torch's C entry point, without the Python wrapper of
    ``torch.autograd.Function.apply`` (which unwraps dead functorch wrappers and binds
    ``setup_context`` defaults, needless for classic-style Functions outside transforms: the
    _EAGER route only). Falls back to ``fn.apply`` where torch lacks the entry point."""
    raw = getattr(torch._C, "_FunctionBase", None)
    entry = None if raw is None else raw.__dict__.get("apply")
    if entry is None or not hasattr(entry, "__get__"):
        return fn.apply
    return entry.__get__(None, fn)


class NoGrad:
    """``torch.no_grad()`` for the per-call paths: the same switch, without the decorator
    machinery of ``torch.no_grad()``."""

    __slots__ = ("_prev",)

    def __enter__(self) -> None:
        self._prev = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        torch._C._set_grad_enabled(self._prev)


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """t ``(*, n)`` as rows ``(m, n)`` (t itself when it has two dimensions)."""
    return t if t.dim() == 2 else t.reshape(-1, n)


def _full(t: torch.Tensor, n: int) -> bool:
    """Whether t ``(*, n)`` has at least n rows, so the rank-one term is folded into the
    matrix (O(n²)) rather than applied to the rows (O(rows·n))."""
    return t.numel() >= n * n


def as_dtype(t: Any, dtype: torch.dtype) -> Any:
    """Tensor t in ``dtype`` (without a dispatched no-op when it is already); None stays None."""
    return t if t is None or t.dtype == dtype else t.to(dtype)


def _tensor(value: Scalar, dtype: torch.dtype) -> torch.Tensor:
    """``value`` (a 0-dim tensor or a host float) as a 0-dim tensor in ``dtype``."""
    if isinstance(value, torch.Tensor):
        return as_dtype(value, dtype)
    return torch.scalar_tensor(value, dtype=dtype)


@functools.cache  # (promote_types is a dispatched operation)
def widens(src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether every value of the floating-point dtype ``src`` is exactly a value of ``dst``:
    type promotion of the two gives ``dst``."""
    return torch.promote_types(src, dst) == dst


def _widened(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t as it enters an operation with a ``dtype`` tensor when type promotion converts it to
    ``dtype`` exactly (no cast of its own), else t cast to ``dtype``."""
    return t if widens(t.dtype, dtype) else t.to(dtype)


def _into(
    op: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor | float, dtype: torch.dtype
) -> torch.Tensor:
    """``op(a, b).to(dtype)`` for a binary pointwise ``op``: computed in the promoted dtype and
    rounded to ``dtype``, the same bits. Where nothing records or traces it is one kernel
    writing into a ``dtype`` tensor (``out=``), not an operation and a cast."""
    if torch.is_grad_enabled() or tracing() or torch.result_type(a, b) == dtype:
        return op(a, b).to(dtype)
    shape = a.shape if not isinstance(b, torch.Tensor) else torch.broadcast_shapes(a.shape, b.shape)
    return op(a, b, out=torch.empty(shape, dtype=dtype, device=a.device))


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else a if b is None else a + b


def _batch(value: Scalar, like: torch.Tensor, copy: bool) -> torch.Tensor:
    """``value`` (log|det|, one value) over the batch shape ``(*,)`` of ``like`` ``(*, n)``, in
    like's dtype: a host float is rounded once to that dtype (as ``.to(dtype)`` rounds a float64
    tensor) and filled into new memory, one operation; a 0-dim tensor (already in that dtype) is
    expanded, after a copy when ``copy`` (an output must not be a tensor someone else holds)."""
    if not isinstance(value, torch.Tensor):
        return torch.full(like.shape[:-1], value, dtype=like.dtype, device=like.device)
    return (value.clone() if copy else value).expand(like.shape[:-1])


# -- the formulas ---------------------------------------------------------------------------------
def perturbed_matrix(a: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W = A + u vᵀ ``(n, n)`` in A's dtype (u, v cast to it)."""
    return torch.addr(a, as_dtype(u, a.dtype), as_dtype(v, a.dtype))


def log_abs(c: float) -> float:
    """log|c| of a host float (−inf at 0, NaN for NaN), as torch.log(torch.abs(c))."""
    c = abs(c)
    return math.log(c) if c != 0.0 else -math.inf


def factor(u: torch.Tensor, v: torch.Tensor, xinv: torch.Tensor, *, host: bool = False) -> Factor:
    """c = 1 + vᵀXu with Xu and log|c|, in X's dtype (u, v cast to it); differentiable in u and
    v. ``host``: c and log|c| as host floats (c = 1 + vᵀXu summed in float64 on the host)."""
    dt = xinv.dtype
    xu = torch.mv(xinv, as_dtype(u, dt))
    vxu = torch.dot(as_dtype(v, dt), xu)
    if host:
        c = 1.0 + float(vxu)
        return Factor(xu, c, log_abs(c))
    c = 1 + vxu
    return Factor(xu, c, torch.log(torch.abs(c)))


def inverse_matrix(
    xinv: torch.Tensor,
    xu: torch.Tensor,
    v: torch.Tensor,
    c: Scalar,
    vx: torch.Tensor | None = None,
) -> torch.Tensor:
    """M = X − (Xu)(vᵀX)/c ``(n, n)``, the Sherman–Morrison inverse of A + u vᵀ given X ≈ A⁻¹,
    in X's dtype (Xu, v and a tensor c cast to it; a host-float c divides as rounded to it).
    ``vx``: vᵀX when already formed."""
    dt = xinv.dtype
    if vx is None:
        vx = torch.mv(xinv.t(), as_dtype(v, dt))
    c = c if not isinstance(c, torch.Tensor) else as_dtype(c, dt)
    return torch.addr(xinv, as_dtype(xu, dt) / c, vx, alpha=-1)


def perturbed_logdet(logabsdet: torch.Tensor | float, log_c: Scalar, dtype: torch.dtype) -> Scalar:
    """log|det(A + u vᵀ)| = log|det A| + log|c| (the determinant lemma): a host float when log|c|
    is one, else a 0-dim tensor rounded to ``dtype``. The inverse's log|det| is its negation."""
    if isinstance(log_c, torch.Tensor):
        return _into(torch.add, logabsdet, log_c, dtype)
    return float(logabsdet) + log_c


def penalty_value(
    log_c: Scalar,
    logabsdet: torch.Tensor | float,
    bounds: tuple[float, float],
    weight: float,
    dtype: torch.dtype | None = None,
    *,
    slope: bool = False,
) -> tuple[Scalar, Scalar | None]:
    """(weight·Σ_t P(t), its slope weight·Σ_t P′(t) when ``slope``) for
    t ∈ {log|c|, log|c| + log|det A|}, P(t) = relu(lo − t)² + relu(t − hi)², ``bounds`` = (lo, hi).

    Computed as d² with d = t − clamp(t, lo, hi) (one of the two relus is zero), slope 2d: the
    definition's bits in fewer operations. Host floats in: host floats out (the same IEEE
    operations in the same order); tensors in: 0-dim tensors, the value rounded to ``dtype``
    (default: log|c|'s)."""
    lo, hi = bounds
    if not isinstance(log_c, torch.Tensor):
        # as torch.clamp: NaN stays NaN
        d0, d1 = (t - min(max(t, lo), hi) for t in (log_c, log_c + float(logabsdet)))
        return weight * (d0 * d0 + d1 * d1), weight * (2 * (d0 + d1))
    terms = torch.stack([log_c, log_c + logabsdet])
    d = terms - terms.clamp(lo, hi)
    value = _into(torch.mul, d.square().sum(), weight, dtype or d.dtype)
    return value, (weight * (2 * d.sum()) if slope else None)


# -- the maps, on either shape --------------------------------------------------------------------
def _perturbed(
    x: torch.Tensor,
    a: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    w: torch.Tensor | None = None,
    rows: bool = False,
) -> torch.Tensor:
    """y = x Wᵀ + b in x's dtype (A ``a`` and b in it; u, v cast to it); ``w``: W if formed;
    ``rows``: the rank-one term on the rows whatever the shape (see :func:`perturbed_linear`)."""
    n = a.shape[-1]
    if rows or not _full(x, n):  # fewer rows than n: the rank-one term costs less on the output
        dt = x.dtype
        y = F.linear(x, a, bias)
        return torch.addr(_rows(y, n), _rows(x, n) @ as_dtype(v, dt), as_dtype(u, dt)).reshape(
            y.shape
        )
    return F.linear(x, perturbed_matrix(a, u, v) if w is None else w, bias)


def _sherman_morrison(
    y: torch.Tensor,
    xinv: torch.Tensor,
    xu: torch.Tensor,
    v: torch.Tensor,
    c: Scalar,
    bias: torch.Tensor | None,
    m: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
    rows: bool = False,
) -> torch.Tensor:
    """x = M (y − b) in y's dtype (X ``xinv`` and b in it; Xu, v, c cast to it); ``m``: M if
    formed; ``scratch``: a tensor of y's shape and dtype to hold y − b (overwritten); ``rows``:
    the rank-one term on the rows whatever the shape (see :func:`sherman_morrison_linear`)."""
    n = xinv.shape[-1]
    yb = y if bias is None else torch.sub(y, bias, out=scratch) if scratch is not None else y - bias
    if rows or not _full(y, n):  # fewer rows than n: z = X(y − b), then x = z − Xu (vᵀz)/c
        dt = y.dtype
        z = _rows(F.linear(yb, xinv), n)
        k = (z @ as_dtype(v, dt)) / _tensor(c, dt)
        return torch.addr(z, k, as_dtype(xu, dt), alpha=-1).reshape(y.shape)
    return F.linear(yb, inverse_matrix(xinv, xu, v, c) if m is None else m)


# -- products: what a direction computes once per value of u, v and the state ---------------------
def forward_products(a: torch.Tensor, p: Parts, full: bool = True) -> Products:
    """The forward's :class:`Products`: W in the dtype of ``a`` (A in the compute dtype; None
    unless ``full``), the factor from X (host form where :func:`on_host`), log|det(A + u vᵀ)|
    rounded to that dtype. No autograd."""
    with NoGrad():
        w = perturbed_matrix(a, p.u, p.v) if full else None
        f = factor(p.u, p.v, p.xinv, host=on_host(p.xinv))
        return Products(w, f, perturbed_logdet(p.logabsdet, f.log_c, a.dtype))


def inverse_products(xinv_y: torch.Tensor, p: Parts, f: Factor, full: bool = True) -> Products:
    """The inverse's :class:`Products` from the factor ``f`` (state dtype, as the caller
    computed it for its singularity check): M in the dtype of ``xinv_y`` (X in the compute
    dtype; None unless ``full``) and −log|det(A + u vᵀ)| in that dtype. No autograd."""
    with NoGrad():
        m = inverse_matrix(xinv_y, f.xu, p.v, f.c) if full else None
        return Products(m, f, -perturbed_logdet(p.logabsdet, f.log_c, xinv_y.dtype))


def _forward(
    x: torch.Tensor, a: torch.Tensor, p: Parts, products: Products | None
) -> tuple[torch.Tensor, Products]:
    """y and the products it used (made here when not given, or given without W for a full
    batch)."""
    full = _full(x, a.shape[-1])
    if products is None or (full and products.matrix is None):
        products = forward_products(a, p, full)
    return _perturbed(x, a, p.u, p.v, as_dtype(p.bias, x.dtype), products.matrix), products


def _inverse(
    y: torch.Tensor,
    xinv_y: torch.Tensor,
    p: Parts,
    products: Products,
    scratch: torch.Tensor | None,
) -> tuple[torch.Tensor, Products]:
    """x and the products it used (M formed here for a full batch when not given)."""
    if _full(y, xinv_y.shape[-1]) and products.matrix is None:
        products = inverse_products(xinv_y, p, products.factor)
    f, b = products.factor, as_dtype(p.bias, y.dtype)
    return _sherman_morrison(y, xinv_y, f.xu, p.v, f.c, b, products.matrix, scratch), products


# -- gradients ------------------------------------------------------------------------------------
def _log_c_grads(
    k: torch.Tensor | float,
    v: torch.Tensor,
    xinv: torch.Tensor,
    f: Factor,
    wanted: tuple[bool, ...],
    dtypes: tuple[torch.dtype, torch.dtype],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """∂/∂u and ∂/∂v of k·log|c| (k a host float, or 0-dim in X's dtype or one it widens
    exactly): k Xᵀv/c and k Xu/c where ``wanted``, in ``dtypes``."""
    k = (_widened(k, xinv.dtype) if isinstance(k, torch.Tensor) else k) / f.c
    gu = gv = None
    if wanted[0]:
        xv = torch.mv(xinv.t(), as_dtype(v, xinv.dtype))
        gu = _into(torch.mul, xv, k, dtypes[0])
    if wanted[1]:
        gv = _into(torch.mul, f.xu, k, dtypes[1])
    return gu, gv


# -- autograd nodes -------------------------------------------------------------------------------
class _Penalty(torch.autograd.Function):
    """:func:`penalty_value` of the factor of u, v (given or computed) in one node; its backward
    is closed-form: k·Xᵀv/c and k·Xu/c with k the penalty's slope."""

    @staticmethod
    def forward(
        ctx: Any,
        u: torch.Tensor,
        v: torch.Tensor,
        p: Parts,
        bounds: tuple[float, float],
        weight: float,
        kept: Factor | None,
        slope: bool,
    ) -> torch.Tensor:
        xinv, logabsdet = p.xinv, p.logabsdet
        f = ctx.factor = factor(u, v, xinv) if kept is None else kept
        ctx.save_for_backward(u, v, xinv, logabsdet)
        ctx.bounds, ctx.weight = bounds, weight
        ctx.host = None
        if on_host(xinv):  # the scalar arithmetic on host floats
            value, wslope = penalty_value(float(f.log_c), float(logabsdet), bounds, weight)
            ctx.host = (wslope, float(f.c))
            return torch.scalar_tensor(value, dtype=u.dtype)
        # Off the host the slope is kept from here (when recorded): the backward need not
        # rebuild the terms.
        value, ctx.wslope = penalty_value(f.log_c, logabsdet, bounds, weight, u.dtype, slope=slope)
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        u, v, xinv, logabsdet = ctx.saved_tensors
        none = (None,) * 5
        f = ctx.factor
        if torch.is_grad_enabled():  # double backward: every value rebuilt from u and v
            f = factor(u, v, xinv)
            _, wslope = penalty_value(f.log_c, logabsdet, ctx.bounds, ctx.weight, slope=True)
            k: torch.Tensor | float = _widened(grad, xinv.dtype) * wslope
        elif ctx.host is not None:
            wslope, c = ctx.host
            k = float(grad) * wslope
            if k / c == 0.0:  # inside the bounds (the usual case): no gradient, no operations
                return (None, None, *none)
            f = Factor(f.xu, c, f.log_c)
        else:
            k = _widened(grad, xinv.dtype) * ctx.wslope
        wanted, dtypes = ctx.needs_input_grad[:2], (u.dtype, v.dtype)
        return (*_log_c_grads(k, v, xinv, f, wanted, dtypes), *none)


class _Forward(torch.autograd.Function):
    """(y, log|det|) of P4InvLinear.forward in one autograd node: y as :func:`_forward` makes
    it, log|det| spread over x's batch shape inside the node (no autograd-visible expand)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        a: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        p: Parts,
        products: Products | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        kept = products is not None
        y, products = _forward(x, a, p, products)
        ctx.w, ctx.factor = products.matrix, products.factor
        ctx.save_for_backward(x, a, u, v, p.xinv)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y, _batch(products.logdet, x, kept)  # an output must not be the caller's tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, grad_ld: torch.Tensor | None) -> tuple:
        # Those of y: one matrix product for x, O(batch·n) for u, v and b; those of log|c|:
        # k·Xᵀv for u and k·Xu for v, k = ∂L/∂log|c| / c, each added by the addmv that sums
        # y's over the batch. In the host form k is a host float (the addmv's beta).
        x, a, u, v, xinv = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dt, sdt = x.dtype, xinv.dtype
        twice = torch.is_grad_enabled()  # double backward: every value rebuilt from u and v
        host = not twice and on_host(x) and (grad_ld is None or on_host(grad_ld))
        k: float | None = None  # None: already applied to ld_u and ld_v
        ld_u = ld_v = None
        if grad_ld is not None and (needs[2] or needs[3]):
            f = factor(u, v, xinv) if twice else ctx.factor
            if not host:
                ld_u, ld_v = _log_c_grads(grad_ld.sum(), v, xinv, f, needs[2:4], (dt, dt))
            elif (k := float(grad_ld.sum()) / float(f.c)) != 0.0:
                ld_u = torch.mv(xinv.t(), as_dtype(v, sdt)).to(dt) if needs[2] else None
                ld_v = f.xu.to(dt) if needs[3] else None
        gx = gb = None
        if grad is None:
            gu = ld_u if ld_u is None or k is None else ld_u * k
            gv = ld_v if ld_v is None or k is None else ld_v * k
            return gx, None, as_dtype(gu, u.dtype), as_dtype(gv, v.dtype), gb, None, None
        # y = x Wᵀ + b: ∂/∂x = grad·W, ∂/∂u = Σ_b grad_b (v·x_b), ∂/∂v = Σ_b x_b (u·grad_b)
        n, beta = a.shape[-1], 1.0 if k is None else k
        g, xr = _rows(grad, n), _rows(x, n)
        uc, vc = as_dtype(u, dt), as_dtype(v, dt)
        gu = gv = None
        if needs[0]:
            gx = grad @ (perturbed_matrix(a, uc, vc) if twice or ctx.w is None else ctx.w)
        if needs[2]:
            s = torch.mv(xr, vc)
            gu = torch.mv(g.t(), s) if ld_u is None else torch.addmv(ld_u, g.t(), s, beta=beta)
        if needs[3]:
            t = torch.mv(g, uc)
            gv = torch.mv(xr.t(), t) if ld_v is None else torch.addmv(ld_v, xr.t(), t, beta=beta)
        if ctx.bias_dtype is not None and needs[4]:
            gb = as_dtype(g.sum(0), ctx.bias_dtype)
        return gx, None, as_dtype(gu, u.dtype), as_dtype(gv, v.dtype), gb, None, None


class _Inverse(torch.autograd.Function):
    """(x, −log|det|) of P4InvLinear.inverse in one autograd node, given the factor in X's
    dtype (computed by the caller for its singularity check; its gradients reach u and v
    here): x as :func:`_inverse` makes it with X in y's dtype."""

    @staticmethod
    def forward(
        ctx: Any,
        y: torch.Tensor,
        xinv_y: torch.Tensor,
        p: Parts,
        u: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        products: Products,
        scratch: torch.Tensor | None,
        kept: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        x, products = _inverse(y, xinv_y, p, products, scratch)
        ctx.m, ctx.factor = products.matrix, products.factor
        ctx.save_for_backward(y, xinv_y, p.xinv, u, v, bias)
        return x, _batch(products.logdet, y, kept)  # an output must not be a tensor kept

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, grad_ld: torch.Tensor | None) -> tuple:
        y, xinv_y, xinv, u, v, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dt, sdt = y.dtype, xinv.dtype
        f = factor(u, v, xinv) if torch.is_grad_enabled() else ctx.factor  # twice: a graph
        xu, c = f.xu, _tensor(f.c, sdt)
        gy = gb = gxu = gv = gc = None
        if grad is not None:  # those of x = M (y − b) for y, Xu, v, c and b, in y's dtype
            xu_y, v_y, c_y, b_y = (as_dtype(t, dt) for t in (xu, v, c, bias))
            n, m = y.shape[-1], None if torch.is_grad_enabled() else ctx.m
            vx = torch.mv(xinv_y.t(), v_y)
            g, yr = _rows(grad, n), _rows(y if b_y is None else y - b_y, n)
            if needs[0] or (bias is not None and needs[5]):
                gyb = grad @ (inverse_matrix(xinv_y, xu_y, v_y, c_y, vx) if m is None else m)
                gy = gyb if needs[0] else None
                if bias is not None and needs[5]:
                    gb = as_dtype(-_rows(gyb, n).sum(0), bias.dtype)
            if needs[3] or needs[4]:
                # With z = X(y − b), s = vᵀX(y − b) and k = s/c per row: x = z − Xu k.
                s, h = yr @ vx, g @ xu_y  # h = −∂L/∂k per row
                if needs[3]:
                    gxu = as_dtype(-(g.mT @ (s / c_y)), sdt)
                if needs[4]:  # ∂L/∂(vᵀX) = −Σ_b h_b (y − b)_b / c
                    gv = as_dtype(xinv_y @ (-(yr.mT @ h) / c_y), v.dtype)
                gc = as_dtype((h @ s) / (c_y * c_y), sdt)
        if grad_ld is not None and (needs[3] or needs[4]):
            gc = _add(gc, -grad_ld.sum().to(sdt) / c)  # ld = −(log|det A| + log|c|)
        gu = None
        if gc is not None:  # c = 1 + vᵀ(Xu): c reaches Xu through v and v through Xu
            gxu = _add(gxu, gc * v.to(sdt))
            gv = _add(gv, (gc * xu).to(v.dtype)) if needs[4] else gv
        if gxu is not None and needs[3]:
            gu = (gxu @ xinv).to(u.dtype)
        return gy, None, None, gu, gv, gb, None, None, None


# The Functions' entry points, bound once (see _apply).
_FORWARD, _INVERSE, _PENALTY = _apply(_Forward), _apply(_Inverse), _apply(_Penalty)


# -- entry points ---------------------------------------------------------------------------------
def perturbed_linear(
    x: torch.Tensor, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """y = x (A + u vᵀ)ᵀ + b for x ``(*, n)``, A ``(n, n)``, u, v, b ``(n,)``, one dtype (shapes:
    see the module docstring). Recorded or traced, the rank-one term is applied to the rows,
    y = x Aᵀ + b + (x v) uᵀ, in plain differentiable operations: A takes no gradient, so the
    backward costs one matrix product plus O(batch·n) (autograd through W would add an n×n
    weight gradient); double backward and vmap come with them."""
    return _perturbed(x, a, u, v, bias, rows=_route(x, u, v, bias) != _PLAIN)


def sherman_morrison_linear(
    y: torch.Tensor,
    xinv: torch.Tensor,
    xu: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """x = (X − (Xu)(vᵀX)/c)(y − b), the Sherman–Morrison inverse of y = (A + u vᵀ)x + b, for
    X ≈ A⁻¹ ``(n, n)``, Xu, v ``(n,)``, c = 1 + vᵀXu ``()``, y ``(*, n)``. Recorded or traced,
    z = X(y − b) and x = z − Xu (vᵀz)/c on the rows, in plain differentiable operations: X
    takes no gradient, so the backward costs one matrix product plus O(batch·n); double
    backward and vmap come with them."""
    rows = _route(y, xu, v, c, bias) != _PLAIN
    return _sherman_morrison(y, xinv, xu, v, c, bias, rows=rows)


def p4_forward(
    x: torch.Tensor, a: torch.Tensor, p: Parts, *, products: Products | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, log|det|) of P4InvLinear: y = x (A + u vᵀ)ᵀ + b ``(*, n)`` with A ``a`` in x's dtype
    (u, v, b cast to it) and log|det A| + log|c| ``(*,)`` in x's dtype from X and log|det A| in
    the state dtype. ``products``: :func:`forward_products` of these very tensors if kept."""
    u, v, bias = p.u, p.v, p.bias
    route = _route(x, u, v, bias)
    if route == _EAGER:
        return _FORWARD(x, a, u, v, bias, p, products)
    if route == _TRACED:  # every value as a function of u and v, for the transform to see
        dt = x.dtype
        y = perturbed_linear(x, a, u.to(dt), v.to(dt), as_dtype(bias, dt))
        ld = perturbed_logdet(p.logabsdet, factor(u, v, p.xinv).log_c, dt)
        return y, ld.expand(x.shape[:-1])
    kept = products is not None
    y, products = _forward(x, a, p, products)
    return y, _batch(products.logdet, x, kept)


def p4_inverse(
    y: torch.Tensor,
    xinv_y: torch.Tensor,
    p: Parts,
    products: Products | None,
    *,
    scratch: torch.Tensor | None = None,
    kept: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, −log|det|) of P4InvLinear.inverse: x = (A + u vᵀ)⁻¹(y − b) ``(*, n)`` by
    Sherman–Morrison with ``xinv_y`` = X in y's dtype (v, b cast to it), −log|det| ``(*,)``.

    ``products``: :func:`inverse_products` with at least the factor the caller checked (None
    only while traced); ``scratch``: a tensor of y's shape and dtype to hold y − b; ``kept``:
    whether the caller keeps ``products`` (then their log|det| is copied, not returned)."""
    u, v, bias = p.u, p.v, p.bias
    route = _route(y, u, v, bias)
    if route == _EAGER:
        return _INVERSE(y, xinv_y, p, u, v, bias, products, scratch, kept)
    if route == _TRACED:  # the factor as a function of u and v, for the transform to see
        dt = y.dtype
        f = factor(u, v, p.xinv)
        x = _sherman_morrison(y, xinv_y, f.xu, v, f.c, as_dtype(bias, dt), rows=True)
        return x, (-perturbed_logdet(p.logabsdet, f.log_c, dt)).expand(y.shape[:-1])
    x, products = _inverse(y, xinv_y, p, products, scratch)
    return x, _batch(products.logdet, y, kept)


def p4_penalty(
    p: Parts, bounds: tuple[float, float], weight: float, *, kept: Factor | None = None
) -> torch.Tensor:
    """:func:`penalty_value` of c = 1 + vᵀXu, shape ``()`` in u's dtype; ``kept``: the
    :class:`Factor` of these very tensors if the caller kept it."""
    u, v = p.u, p.v
    route = _route(u, v)
    if route == _TRACED:
        log_c = factor(u, v, p.xinv).log_c
        return penalty_value(log_c, p.logabsdet, bounds, weight, u.dtype)[0]
    return _PENALTY(u, v, p, bounds, weight, kept, route == _EAGER)  # PLAIN: nothing recorded
