"""P4InvLinear: an invertible linear layer trained through rank-one perturbations (P4Inv).

The layer holds the state and decides what to keep; the arithmetic and the routes from
``forward``, ``inverse``, ``penalty`` and ``merge`` to it are in :mod:`invlin.nn.p4_ops` (its
module docstring draws them). :func:`merge_layers` merges many layers with one read of their
decisions (what :class:`~invlin.nn.P4Scheduler` uses)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from invlin._validation import is_real, positive_int
from invlin.nn import p4_state
from invlin.nn.monitor import DriftMonitor, DriftReading, probe_drift
from invlin.nn.p4_cache import ProductCache, Snapshot
from invlin.nn.p4_ops import (
    NoGrad,
    Parts,
    Products,
    as_dtype,
    compiling,
    factor,
    forward_products,
    inverse_products,
    log_abs,
    on_host,
    p4_forward,
    p4_inverse,
    p4_penalty,
    perturbed_logdet,
    perturbed_matrix,
    transforms_active,
    widens,
)
from invlin.reference.rank_one import Guard

__all__ = ["MergePlan", "MergeReading", "P4InvLinear", "merge_layers"]


def _singular(
    c: float | torch.Tensor, operands: dict[str, torch.Tensor] | None = None
) -> ValueError:
    """The error for c = 1 + vᵀA⁻¹u zero or not finite, naming its real cause: the first of
    ``operands`` (name → tensor, e.g. u, v, weight_inverse) holding a NaN or ±inf; else a c that
    overflowed from finite operands; else a singular A + u vᵀ (c = 0)."""
    value = float(c.detach() if isinstance(c, torch.Tensor) else c)
    if math.isfinite(value):
        return ValueError(f"A + u vᵀ is singular: c = 1 + vᵀA⁻¹u = {value}")
    for name, t in (operands or {}).items():
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            where = first[0] if len(first) == 1 else first
            return ValueError(
                f"{name} holds non-finite values (first at index {where}), so "
                f"c = 1 + vᵀA⁻¹u = {value} and whether A + u vᵀ is singular "
                f"cannot be decided"
            )
    names = ", ".join(operands) if operands else "its operands"
    return ValueError(
        f"c = 1 + vᵀA⁻¹u = {value} is not finite although {names} are (the "
        f"products overflow): A + u vᵀ cannot be inverted or checked for "
        f"singularity in this dtype"
    )


def _require_finite_nonzero(
    c: torch.Tensor | float, operands: Callable[[], dict[str, torch.Tensor]]
) -> None:
    """Raise ValueError unless c (a host float or a 0-dim tensor: one read, on a GPU one wait)
    is finite and nonzero; ``operands()`` (name → tensor) is searched for the cause only on
    failure."""
    tensor = isinstance(c, torch.Tensor)
    if not (bool(torch.isfinite(c) & (c != 0)) if tensor else math.isfinite(c) and c != 0.0):
        raise _singular(c, operands())


# The check of an inverse traced by torch.compile, run eagerly (a graph break: c is read).
_require_nonsingular_traced = torch.compiler.disable(_require_finite_nonzero)


@dataclass(slots=True)
class MergePlan:
    """The first half of a merge (see :func:`merge_layers`): the O(n²) products and the
    scalars the decision needs, ``values`` — host floats in the host form, else one tensor
    (read for many layers in one transfer) — in the order :meth:`MergeReading.of` reads them."""

    force: bool
    values: torch.Tensor | list[float]
    u: torch.Tensor  # u, v in the state dtype
    v: torch.Tensor
    a: torch.Tensor
    xinv: torch.Tensor
    logabsdet: torch.Tensor
    xu: torch.Tensor  # Xu
    vx: torch.Tensor  # vᵀX
    bounds: tuple[float | torch.Tensor, float | torch.Tensor]  # max|A|, max|X|
    exact: bool  # u, v widen exactly into the state dtype: finite iff max|u|, max|v| are


class MergeReading(NamedTuple):
    """A merge plan's values as read on the host."""

    max_u: float
    max_v: float
    max_xu: float
    max_vx: float
    vxu: float  # vᵀXu
    logabsdet: float
    finite: bool  # u and v hold no NaN or ±inf
    max_a: float
    max_x: float

    @staticmethod
    def of(plan: MergePlan, values: list[float]) -> MergeReading:
        """The reading of ``plan``'s ``values``: four maxima, vᵀXu, log|det A|, then the
        finiteness flag unless ``exact``, then max|A| and max|X| where they were tensors."""
        max_u, max_v, max_xu, max_vx, vxu, ld, *rest = values
        more = iter(rest)
        finite = math.isfinite(max_u) and math.isfinite(max_v) if plan.exact else bool(next(more))
        max_a, max_x = (next(more) if isinstance(m, torch.Tensor) else m for m in plan.bounds)
        return MergeReading(max_u, max_v, max_xu, max_vx, vxu, ld, finite, max_a, max_x)


class _Cast(NamedTuple):
    """A state buffer cast to a compute dtype, valid while the snapshot of the buffer holds."""

    made_from: Snapshot
    cast: torch.Tensor


class _Bound(NamedTuple):
    """Bounds on max|A| and max|X| proven by the last in-place merge, valid while the snapshot
    of (A, X) holds."""

    state: Snapshot
    max_a: float
    max_x: float


_STATE = p4_state.STATE
_COUNTERS = ("merges", "refusals", "nonfinite_resets", "corrections", "refreshes")
# inverse() keeps one buffer for y − b between calls when y has at most this many elements
# (16 MiB in float32): glibc returns freed memory above its trim threshold to the system, so a
# fresh batch-sized temporary per call would fault its pages in again.
_SPARE_LIMIT = 1 << 22


@functools.cache
def _overflow_constants(dtype: torch.dtype) -> tuple[float, float]:
    """(a quarter of the largest finite value, 1 + 4ε) of ``dtype``, for the merge's bound."""
    info = torch.finfo(dtype)
    return info.max / 4, 1 + 4 * info.eps


class P4InvLinear(nn.Module):
    """y = (A + u vᵀ) x + b with A frozen and A⁻¹, sign(det A), log|det A| tracked (P4Inv).

    Only ``u``, ``v`` and ``bias`` are trained; :meth:`merge` folds u vᵀ into A by Sherman–Morrison
    and the determinant lemma (O(n²)), so no inverse or determinant is computed from scratch. The
    tracked state (buffers ``weight`` = A, ``weight_inverse`` = X ≈ A⁻¹, ``logabsdet``, ``sign``)
    is held in ``state_dtype`` (float64 by default) whatever ``.to(dtype)`` does to the
    parameters; forward and inverse run in the input's dtype.

    Args:
        features: n, the size of the last input dimension.
        bias: whether to learn a bias b (shape ``(n,)``).
        init: ``"identity"``, ``"reverse"`` (the reversal permutation, det = (−1)^⌊n/2⌋),
            ``"orthogonal"`` (random, det = ±1), or an invertible ``(n, n)`` matrix.
        guard: merge bounds (default :meth:`Guard.p4`: the P4Inv reference code's).
        monitor: drift monitor run after merges: ``"default"`` (:meth:`DriftMonitor.default`: an
            O(n²) probe every 8 merges, a correction or LU refresh when it reads drift), a
            :class:`DriftMonitor`, or ``None`` (off: nothing checks the tracked inverse).
        state_dtype: dtype of the tracked state (``None``: follow the parameters).
        penalty_bounds: (min, max) of log|c| and log|c·det| for :meth:`penalty`.
        generator: torch generator for v's resets and the monitor's probes.

    Shapes: ``forward(x)`` with x ``(*, n)`` returns (y ``(*, n)``, log|det| ``(*,)``);
    ``inverse(y)`` returns (x, log|det ∂x/∂y|) with the negated log|det|.

    Speed and torch.compile: see :mod:`invlin.nn.p4_ops` (routes and forms) and
    :class:`~invlin.nn.p4_cache.ProductCache` (W and M kept between calls on the CPU, or inside
    :func:`~invlin.nn.cached_products`). Traced, forward and :meth:`penalty` compile into one
    graph (``fullgraph=True``); ``inverse`` breaks it once, to read c for its singularity check.

    Changing A by hand: an in-place op under ``torch.no_grad()`` (``layer.weight.copy_(w)``),
    then :meth:`refresh` (``inverse`` refuses to answer from X before it); writes through
    ``.data`` bypass the version counters, so cached casts and products would not see them.
    Loading and unpickling check the state (see :mod:`invlin.nn.p4_state`).

    >>> layer = P4InvLinear(3, init="reverse")
    >>> y, ld = layer(torch.ones(2, 3))
    >>> y.shape, ld.shape, int(layer.sign)
    (torch.Size([2, 3]), torch.Size([2]), -1)
    """

    weight: torch.Tensor
    weight_inverse: torch.Tensor
    logabsdet: torch.Tensor
    sign: torch.Tensor

    def __init__(
        self,
        features: int,
        bias: bool = True,
        init: str | torch.Tensor | Any = "identity",
        *,
        guard: Guard | None = None,
        monitor: DriftMonitor | Literal["default"] | None = "default",
        state_dtype: torch.dtype | None = torch.float64,
        penalty_bounds: tuple[float, float] = (-2.0, 15.0),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.features = positive_int(features, "features")
        if not (
            isinstance(penalty_bounds, (tuple, list))
            and len(penalty_bounds) == 2
            and all(is_real(b) and math.isfinite(b) for b in penalty_bounds)
            and penalty_bounds[0] < penalty_bounds[1]
        ):
            raise ValueError(
                f"penalty_bounds must be two finite numbers (min, max) with "
                f"min < max, got {penalty_bounds!r}"
            )
        self.guard = Guard.p4(*penalty_bounds) if guard is None else guard
        if not isinstance(self.guard, Guard):
            raise ValueError(f"guard must be an invlin Guard, got {type(guard).__name__}")
        if isinstance(monitor, str) and monitor == "default":
            monitor = DriftMonitor.default()
        elif monitor is not None and not isinstance(monitor, DriftMonitor):
            raise ValueError(f"monitor must be a DriftMonitor, 'default' or None, got {monitor!r}")
        for name, dt in (("state_dtype", state_dtype), ("dtype", dtype)):
            if dt is not None and not (isinstance(dt, torch.dtype) and dt.is_floating_point):
                raise ValueError(
                    f"{name} must be a real floating-point torch dtype "
                    f"(e.g. torch.float64), got {dt!r}"
                )
        self.monitor = monitor
        self.penalty_bounds = (float(penalty_bounds[0]), float(penalty_bounds[1]))
        self.generator = generator
        self.state_dtype = state_dtype
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        sdt = state_dtype or factory["dtype"]
        a = self._initial_matrix(init, features, device, sdt, generator)
        self.register_buffer("weight", a)
        self.register_buffer("weight_inverse", torch.empty_like(a))
        self.register_buffer("logabsdet", torch.zeros((), dtype=sdt, device=a.device))
        self.register_buffer("sign", torch.ones((), dtype=sdt, device=a.device))
        self._state_from_lu()
        self.u = nn.Parameter(torch.zeros(features, **factory))
        self.v = nn.Parameter(torch.empty(features, **factory))
        self.bias = nn.Parameter(torch.zeros(features, **factory)) if bias else None
        with torch.no_grad():
            self.v.normal_(generator=generator)
        for name in _COUNTERS:
            setattr(self, name, 0)
        self.last_reading: DriftReading | None = None
        # the largest κ₁ the monitor read since sign and log|det| were computed from A (LU)
        self.kappa_peak: float | None = None
        self._forget()

    def _forget(self) -> None:
        """Drop what the layer keeps between calls (after a move or a dtype change)."""
        self._cache: dict[str, _Cast] = {}  # state casts to the compute dtype, see _cast
        self._checked: Snapshot | None = None  # (X, u, v) whose c was checked
        self._bound: _Bound | None = None  # see _max_abs_state
        self._products = ProductCache()  # Products while u, v and the state are unchanged
        self._spare: dict[tuple, torch.Tensor] = {}  # a buffer for y − b, reused by inverse

    # -- construction ----------------------------------------------------------------------------
    @staticmethod
    def _initial_matrix(
        init: Any, n: int, device: Any, dtype: torch.dtype, generator: torch.Generator | None
    ) -> torch.Tensor:
        if isinstance(init, str):
            if init == "identity":
                return torch.eye(n, dtype=dtype, device=device)
            if init == "reverse":
                return torch.eye(n, dtype=dtype, device=device).flip(0).contiguous()
            if init == "orthogonal":
                gen_device = generator.device if generator is not None else "cpu"
                g = torch.randn(n, n, dtype=torch.float64, device=gen_device, generator=generator)
                q, r = torch.linalg.qr(g)
                q = q * torch.sign(torch.diagonal(r))
                return q.to(device=device, dtype=dtype).contiguous()
            raise ValueError(
                f"init must be 'identity', 'reverse', 'orthogonal' or a matrix, got {init!r}"
            )
        a = torch.as_tensor(init)
        if a.ndim != 2 or a.shape != (n, n):
            raise ValueError(f"init must be a ({n}, {n}) matrix, got shape {tuple(a.shape)}")
        if not a.is_floating_point() and a.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"init must be a real matrix, got dtype {a.dtype}")
        a = a.detach().to(device=device if device is not None else a.device, dtype=dtype)
        a = a.clone(memory_format=torch.contiguous_format)
        if not torch.isfinite(a).all():
            raise ValueError("init must be finite")
        return a

    def _state_from_lu(self) -> None:
        """Recompute X, sign and log|det| from A by LU (O(n³), :func:`p4_state.lu_state`); A must
        be finite and invertible (else ValueError naming ``weight``, state untouched)."""
        inv, sign, logabsdet = p4_state.lu_state(self.weight)
        with torch.no_grad():
            self.weight_inverse.copy_(inv)
            self.sign.copy_(sign)
            self.logabsdet.copy_(logabsdet)
        self._watch_state()

    def _watch_state(self) -> None:
        """Record A as consistent with X for :class:`p4_state.InverseWatch` (after a load or LU)."""
        self.__dict__["_watch"] = p4_state.InverseWatch(self.weight, self.logabsdet)

    def _load_from_state_dict(
        self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool, *args: Any
    ) -> None:
        # Checked before anything is copied: a refused state leaves this layer as it was.
        assign = bool(local_metadata.get("assign_to_params_buffers", False))
        incoming = p4_state.incoming_state(
            self._buffers, self._parameters, state_dict, prefix, assign=assign
        )
        missing = strict and any(prefix + k not in state_dict for k in _STATE)
        recompute = () if missing else p4_state.settle(incoming, prefix=prefix)  # torch reports
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)
        self.kappa_peak = None  # the loaded state's history is not known
        p4_state.repair(self._buffers, recompute, prefix)
        self._watch_state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling (``pickle``, ``torch.load`` of a module, ``copy.deepcopy``) checks the
        tracked state as ``load_state_dict`` does (:func:`p4_state.settle`)."""
        super().__setstate__(state)
        recompute = p4_state.settle(
            self._buffers,
            where="unpickling",
            merges=int(self.__dict__.get("merges", 0)),
            kappa_peak=self.__dict__.get("kappa_peak"),
        )
        p4_state.repair(self._buffers, recompute)
        self._watch_state()

    # -- dtype/device handling: the tracked state keeps its dtype ---------------------------------
    def _apply(self, fn, recurse=True):  # type: ignore[override]
        w = self._buffers["weight"]
        target = fn(torch.empty(0, dtype=w.dtype, device=w.device)).dtype
        p4_state.refuse_complex_target(target, "the target dtype of this conversion")
        kept = {k: self._buffers[k] for k in _STATE}
        super()._apply(fn, recurse)
        sdt = self.state_dtype
        for k, old in kept.items():
            moved = fn(torch.empty(0, dtype=old.dtype, device=old.device))
            target = sdt if sdt is not None else moved.dtype
            self._buffers[k] = old.to(device=moved.device, dtype=target)
        self._forget()
        return self

    # -- cached casts of the state to the compute dtype -------------------------------------------
    def _cast(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        buf = self._buffers[name]
        if name == "weight_inverse" and not (compiling() or transforms_active()):
            b = self._buffers
            self._watch.check(b["weight"], b["logabsdet"])  # A written by hand: X is stale
        if buf.dtype == dtype:
            return buf
        if compiling():  # traced: a cast in the graph (the compiler fuses it)
            return buf.to(dtype)
        hit = self._cache.get(name)
        # any change of the buffer, in place or by replacement, or a move makes a new cast
        if hit is not None and hit.cast.dtype == dtype and hit.made_from.holds(buf):
            return hit.cast
        cast = buf.to(dtype)
        self._cache[name] = _Cast(Snapshot.of(buf), cast)
        return cast

    def _parts(self) -> Parts:
        """The call's tensors, read from the module's dicts directly (not through
        ``nn.Module.__getattr__``, which runs on every per-call attribute access)."""
        p, b = self._parameters, self._buffers
        return Parts(
            p["u"], p["v"], p.get("bias"), b["weight"], b["weight_inverse"], b["logabsdet"]
        )

    def _check(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.features:
            raise ValueError(f"{name} must have shape (*, {self.features}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")

    def factor(self) -> torch.Tensor:
        """c = 1 + vᵀA⁻¹u in the state dtype (differentiable in u and v); shape ``()``."""
        return factor(self.u, self.v, self.weight_inverse).c

    def log_abs_det(self) -> torch.Tensor:
        """log|det(A + u vᵀ)| = log|det A| + log|c| (state dtype, differentiable); shape ``()``."""
        log_c = factor(self.u, self.v, self.weight_inverse).log_c
        return perturbed_logdet(self.logabsdet, log_c, self.logabsdet.dtype)

    @property
    def products_cached(self) -> tuple[Products, ...]:
        """The :class:`~invlin.nn.p4_ops.Products` this layer keeps between calls now (read-only;
        at most one per direction and compute dtype, see :class:`ProductCache`)."""
        return self._products.products()

    # -- the map -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y = x (A + u vᵀ)ᵀ + b for x of shape ``(*, n)``; returns (y, log|det|) with log|det|
        of shape ``(*,)`` in x's dtype (one matrix product plus O(batch·n) rank-one terms)."""
        self._check(x, "x")
        parts = self._parts()
        u, v, _, a_state, xinv, logabsdet = parts
        a = self._cast("weight", x.dtype)
        products = None
        cache = self._products
        if x.numel() >= self.features**2 and cache.usable(x, a):
            # A + u vᵀ is formed (O(n²)) once per value of u, v and the state, then applied by
            # one matrix product per call; u, v, b get their gradients in O(batch·n).
            made_from = (a_state, xinv, logabsdet, u, v)
            products = cache.get("forward", x.dtype, made_from)
            if products is None:
                products = forward_products(a, parts)
                cache.put("forward", x.dtype, made_from, products)
        return p4_forward(x, a, parts, products=products)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = (A + u vᵀ)⁻¹ (y − b) by Sherman–Morrison with the tracked A⁻¹, y of shape
        ``(*, n)``; returns (x, log|det ∂x/∂y|) with the latter of shape ``(*,)``.

        Raises ValueError when 1 + vᵀA⁻¹u = 0 (the perturbed matrix is singular)."""
        self._check(y, "y")
        parts = self._parts()
        u, v, bias, _, xinv, logabsdet = parts
        xinv_y = self._cast("weight_inverse", y.dtype)
        if compiling():  # every value in the graph; the singularity check breaks it (a read)
            with NoGrad():
                c = factor(u, v, xinv).c
            _require_nonsingular_traced(c, self._factor_operands)
            return p4_inverse(y, xinv_y, parts, None)
        full = y.numel() >= self.features**2
        cache = self._products
        if not cache.usable(y, xinv_y):  # products nobody keeps: their log|det| is returned
            products = self._inverse_products(xinv_y, parts, full)
            return p4_inverse(y, xinv_y, parts, products, kept=False)
        made_from = (xinv, logabsdet, u, v)
        products = cache.get("inverse", y.dtype, made_from)
        if products is None:
            products = self._inverse_products(xinv_y, parts, full)
            if full:
                cache.put("inverse", y.dtype, made_from, products)
        if bias is None or y.numel() > _SPARE_LIMIT:
            return p4_inverse(y, xinv_y, parts, products)
        key = (y.shape, y.dtype)
        # popped (atomic): a concurrent call cannot share it; only this shape's is kept
        scratch = self._spare.pop(key, None)
        if scratch is None:
            scratch = torch.empty(y.shape, dtype=y.dtype, device=y.device)
        x, ld = p4_inverse(y, xinv_y, parts, products, scratch=scratch)
        self._spare.clear()  # (filled in place: no Module.__setattr__ per call)
        self._spare[key] = scratch
        return x, ld

    def _inverse_products(self, xinv_y: torch.Tensor, p: Parts, full: bool) -> Products:
        """The inverse's products (see :func:`inverse_products`) after the singularity check:
        the factor from the state's X, M = X − Xu (vᵀX)/c in X's compute-dtype copy ``xinv_y``
        when ``full``."""
        with NoGrad():  # p4_inverse takes the factor's gradients
            f = factor(p.u, p.v, p.xinv, host=on_host(p.xinv))
        self._require_nonsingular(f.c)
        return inverse_products(xinv_y, p, f, full)

    def _require_nonsingular(self, c: torch.Tensor | float) -> None:
        """Raise ValueError unless c = 1 + vᵀA⁻¹u (a host float or a 0-dim tensor) is finite and
        nonzero. Reading a tensor c on the host is a device sync, so the outcome is remembered
        for these very X, u and v at their current versions: calls with unchanged parameters
        skip it."""
        remember = isinstance(c, torch.Tensor) and not transforms_active()  # wrapped: no pointers
        ts = (self.weight_inverse, self.u, self.v) if remember else ()
        if remember and self._checked is not None and self._checked.holds(*ts):
            return
        _require_finite_nonzero(c, self._factor_operands)
        if isinstance(c, torch.Tensor):
            self._checked = Snapshot.of(*ts) if remember else None

    def _factor_operands(self) -> dict[str, torch.Tensor]:
        """The tensors c = 1 + vᵀA⁻¹u is computed from, by name (for error messages)."""
        return {"u": self.u, "v": self.v, "weight_inverse": self.weight_inverse}

    def penalty(self, weight: float = 0.1) -> torch.Tensor:
        """weight·[P(log|c|) + P(log|c·det A|)], P(t) = relu(min − t)² + relu(t − max)².

        Keeps c and det away from the singular set (P4Inv); add it to the loss. Shape ``()``.
        ``weight`` ≥ 0 (finite).
        """
        if not (weight.__class__ is float or is_real(weight)) or not 0.0 <= weight < math.inf:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        p = self._parts()
        kept = None
        if self._products.usable(p.u, p.xinv):  # c from this step's forward
            kept = self._products.get("forward", None, (p.a, p.xinv, p.logabsdet, p.u, p.v))
        return p4_penalty(
            p, self.penalty_bounds, weight, kept=None if kept is None else kept.factor
        )

    # -- merging and drift control ----------------------------------------------------------------
    def reset_perturbation(self) -> None:
        """u ← 0, v ~ N(0, I) (in place, so optimizer references stay valid)."""
        with NoGrad():
            self._reset_perturbation()

    def _reset_perturbation(self) -> None:
        p = self._parameters
        p["u"].zero_()
        p["v"].normal_(generator=self.generator)

    def _max_abs_state(self) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """max|A| and max|X|: as floats when bounded by the last in-place merge for these very
        buffers at their current data pointers and versions (any in-place change of A or X
        bumps its version; writes through ``.data`` do not and must not be used on the state),
        else as tensors to be read in the merge's one device-to-host transfer."""
        a, x = self.weight, self.weight_inverse
        b = self._bound
        if b is not None and b.state.holds(a, x):
            return b.max_a, b.max_x
        inf = float("inf")
        return torch.linalg.vector_norm(a, inf), torch.linalg.vector_norm(x, inf)

    def _merged_max(self, r: MergeReading, alpha: float) -> tuple[float, float] | None:
        """Upper bounds on max|A + u vᵀ| and max|X + α (Xu)(vᵀX)| as computed by torch.addr, or
        None when they cannot be shown to stay below a quarter of the dtype's largest value
        (then the merge computes out of place and checks the entries).

        Every partial product of the rank-one terms is bounded (whatever order a kernel
        multiplies in) and each rounding widens a bound by at most (1 + ε); 4ε covers the
        three roundings of an entry. NaN anywhere makes a comparison false: no bound."""
        limit, grow = _overflow_constants(self.weight.dtype)
        k, mu, mv, mxu, mvx = abs(alpha), r.max_u, r.max_v, r.max_xu, r.max_vx
        parts = (mu, mv, mu * mv, k, mxu, mvx, k * mxu, k * mvx, mxu * mvx, k * mxu * mvx)
        if not all(p < limit for p in parts):
            return None
        new_a = (r.max_a + mu * mv) * grow
        new_x = (r.max_x + k * mxu * mvx) * grow
        if not (new_a < limit and new_x < limit):
            return None
        return new_a, new_x

    def merge(self, force: bool = False) -> bool:
        """Fold u vᵀ into A, A⁻¹, sign and log|det|, then reset the perturbation.

        Refused (returns False, state untouched, perturbation kept) when the guard rejects
        c = 1 + vᵀA⁻¹u or the new log|det| — ``force=True`` skips the bounds but never merges a
        zero or non-finite c. Non-finite u or v: no merge, perturbation reset, state untouched.
        Runs the drift monitor after a successful merge. (Many layers at once:
        :func:`merge_layers`.)
        """
        with NoGrad():
            plan = self._plan_merge(force)
            return self._apply_merge(plan, _read_values([plan])[0])

    def _plan_merge(self, force: bool) -> MergePlan:
        """The first half of a merge (no autograd, changes nothing): the :class:`MergePlan`, Xu
        and vᵀX with the decision's scalars, off the host gathered into one tensor."""
        u_p, v_p, _, a, x, logabsdet = self._parts()
        sdt = a.dtype
        u, v = as_dtype(u_p, sdt), as_dtype(v_p, sdt)
        xu = torch.mv(x, u)
        vx = v @ x
        bounds = self._max_abs_state()
        norms = torch.linalg.vector_norm(torch.stack((u, v, xu, vx)), math.inf, dim=1)
        vxu = torch.dot(v, xu)
        # u, v are finite iff max|u|, max|v| are (NaN and inf reach the max) when the state
        # dtype holds their values exactly; else they are checked as they are.
        exact = widens(u_p.dtype, sdt) and widens(v_p.dtype, sdt)
        extra = [m for m in bounds if isinstance(m, torch.Tensor)]
        if not exact:
            extra.insert(0, (torch.isfinite(u_p).all() & torch.isfinite(v_p).all()).to(sdt))
        if on_host(x):  # reading a CPU value waits for nothing: no gathering op
            values = [*norms.tolist(), float(vxu), float(logabsdet), *map(float, extra)]
        else:
            values = torch.cat(
                [norms, vxu.reshape(1), logabsdet.reshape(1), *(m.reshape(1) for m in extra)]
            )
        return MergePlan(force, values, u, v, a, x, logabsdet, xu, vx, bounds, exact)

    def _apply_merge(self, plan: MergePlan, values: list[float]) -> bool:
        """The second half of a merge: decide on the values read, then fold u vᵀ in
        (Sherman–Morrison for X, the determinant lemma for sign and log|det|) or refuse."""
        # Counters and the bound are plain attributes: written through __dict__, as
        # Module.__setattr__ would after its checks for parameters, buffers and modules.
        d = self.__dict__
        r = MergeReading.of(plan, values)
        if not r.finite:
            d["nonfinite_resets"] += 1
            d["refusals"] += 1
            self._reset_perturbation()
            return False
        c = 1.0 + r.vxu  # on the host in float64 (for a float64 state: torch's own sum)
        log_c = log_abs(c) if math.isfinite(c) else math.nan
        new_ld = perturbed_logdet(r.logabsdet, log_c, plan.a.dtype)
        guard = Guard.off() if plan.force else self.guard
        if guard.reason(log_c, new_ld) is not None:
            d["refusals"] += 1
            return False
        alpha = -1.0 / c  # X ← X − (Xu)(vᵀX)/c
        a, x, u, v, xu, vx = plan.a, plan.xinv, plan.u, plan.v, plan.xu, plan.vx
        new_max = self._merged_max(r, alpha)
        if new_max is not None:
            # Proven finite: update A and X in place (each read and written once, no copies).
            a.addr_(u, v)
            x.addr_(xu, vx, alpha=alpha)
            d["_bound"] = _Bound(Snapshot.of(a, x), *new_max)
        else:
            new_a = perturbed_matrix(a, u, v)
            new_x = torch.addr(x, xu, vx, alpha=alpha)
            # A NaN or ±inf entry makes a sum non-finite, so finite sums prove finite entries;
            # only when a sum is not finite (e.g. it overflowed) are the entries checked one by
            # one.
            if not bool(torch.isfinite(torch.stack([new_a.sum(), new_x.sum()])).all()) and not (
                bool(torch.isfinite(new_a).all()) and bool(torch.isfinite(new_x).all())
            ):
                d["refusals"] += 1
                return False
            a.copy_(new_a)
            x.copy_(new_x)
        plan.logabsdet.add_(log_c)  # log|det(A + u vᵀ)| = log|det A| + log|c|
        if c < 0:
            self._buffers["sign"].neg_()
        d["merges"] += 1
        self._reset_perturbation()
        if self.monitor is not None and self.merges % self.monitor.every == 0:
            self.check_drift()
        return True

    @torch.no_grad()
    def probe(self) -> DriftReading:
        """An O(n²) drift reading of the tracked inverse (see :func:`probe_drift`)."""
        reading = probe_drift(
            self.weight,
            self.weight_inverse,
            probes=self.monitor.probes if self.monitor else 4,
            generator=self.generator,
        )
        self.last_reading = reading
        return reading

    @torch.no_grad()
    def check_drift(self) -> str:
        """Probe the tracked inverse and correct or refresh it as the monitor decides.

        Returns the action taken: ``"none"``, ``"correct"`` or ``"refresh"``. Keeps in
        :attr:`kappa_peak` the largest κ₁ read since the last refresh (see :class:`DriftMonitor`:
        a refresh also follows a fall of κ₁ by ``max_kappa_drop``)."""
        monitor = self.monitor or DriftMonitor()
        reading = self.probe()
        if reading.kappa is not None:
            self.kappa_peak = max(reading.kappa, self.kappa_peak or 0.0)
        action = monitor.decide(reading, self.kappa_peak)
        if action == "correct":
            if not self.correct(order=monitor.order):
                action = "refresh"
        if action == "refresh":
            self.refresh()
        return action

    @torch.no_grad()
    def correct(self, order: int = 2) -> bool:
        """One hyperpower step X ← (I + R + … + R^{order−1})X, R = I − XA (O(n³) once).

        Applied only when ‖R‖₁ < 1 (else returns False and changes nothing). The left residual
        I − XA is the one the drift probes and the LAPACK inverse ratio measure (and the one
        inverse∘forward sees); iterating on the right residual I − AX instead leaves I − XA at
        about κ·nε after one step, i.e. a ratio ≈ 10⁻³κ that further steps do not lower."""
        positive_int(order, "order", minimum=2)
        a, x = self.weight, self.weight_inverse
        eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
        r = eye - x @ a
        if not float(torch.linalg.matrix_norm(r, ord=1)) < 1.0:
            return False
        s = eye + r
        for _ in range(order - 2):
            s = eye + r @ s
        new_x = s @ x
        if not bool(torch.isfinite(new_x).all()):
            return False
        self.weight_inverse.copy_(new_x)
        self.corrections += 1
        return True

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute A⁻¹, sign and log|det| from A by LU (O(n³)); a non-finite or singular A
        raises ValueError naming ``weight`` and leaves the state as it was."""
        self._state_from_lu()
        self.refreshes += 1
        self.kappa_peak = None

    @property
    def counters(self) -> dict[str, int]:
        """Merges, refusals (of which non-finite resets), corrections and refreshes so far."""
        return {name: getattr(self, name) for name in _COUNTERS}

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, bias={self.bias is not None}, "
            f"state_dtype={self.weight.dtype}"
        )


def _read_values(plans: Sequence[MergePlan]) -> list[list[float]]:
    """The host values of merge plans: those gathered off the CPU are read in one transfer per
    device and dtype (a GPU waits once for all the layers, not once per layer); those made in
    the host form are already host floats."""
    out = [plan.values for plan in plans]
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        if isinstance(plan.values, torch.Tensor):
            groups.setdefault((plan.values.device, plan.values.dtype), []).append(i)
    for members in groups.values():
        tensors = [plans[i].values for i in members]
        flat = (tensors[0] if len(tensors) == 1 else torch.cat(tensors)).tolist()
        start = 0
        for i, t in zip(members, tensors, strict=True):
            out[i] = flat[start : start + t.numel()]
            start += t.numel()
    return out  # type: ignore[return-value]


def merge_layers(layers: Sequence[P4InvLinear], force: bool = False) -> list[bool]:
    """:meth:`P4InvLinear.merge` for each of ``layers``, in order; returns whether each merged.

    The layers are independent, so every plan is made first and their values are read on the
    host together (off the CPU: one device wait for all, not one per layer), then each merge is
    decided and applied. A layer whose class overrides ``merge`` is merged by it."""
    with NoGrad():
        plans = [
            layer._plan_merge(force) if type(layer).merge is P4InvLinear.merge else None
            for layer in layers
        ]
        read = iter(_read_values([p for p in plans if p is not None]))
        return [
            layer.merge(force=force) if plan is None else layer._apply_merge(plan, next(read))
            for layer, plan in zip(layers, plans, strict=True)
        ]
