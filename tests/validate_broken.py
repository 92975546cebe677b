"""Small deliberately broken layers, one per bug class flow libraries have shipped (not tests).

Every layer follows invlin's convention (``forward(x) -> (y, log|det ∂y/∂x|)``, ``inverse(y) ->
(x, log|det ∂x/∂y|)``, x of shape ``(*batch, n)``) and is correct except for its one bug;
:class:`CorrectLinear` is the unbroken control. Each factory takes ``features`` (as the
validator calls it) and returns the layer wrapped in an adapter that also exposes the layer's
matrix where it has one. :data:`BROKEN` maps each factory to the checks meant to catch it, per
dtype, on a machine without CUDA (see the tests in ``test_validate_checks.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform, constraints

from invlin.nn import BentIdentity
from invlin.validate.adapters import GenericAdapter
from invlin.validate.protocol import Adapter, Unsupported

__all__ = [
    "BROKEN",
    "BatchMeanLogdet",
    "ClampedCouplingScale",
    "ConstantMap",
    "CorrectLinear",
    "DetachedBias",
    "DevicelessEye",
    "IllConditionedInverse",
    "LowPrecisionEvalCache",
    "MatrixAdapter",
    "MissingFactorLogdet",
    "NonFiniteAtEdges",
    "RemovedTorchAPI",
    "StaleCache",
    "StaleTransformCache",
    "WrongDimsLogdet",
    "WrongSignLogdet",
    "WrongSignTransform",
    "ZeroInitShiftCoupling",
    "ZeroedCoordinate",
    "batch_mean_logdet",
    "clamped_coupling_both_ways",
    "clamped_coupling_scale",
    "constant_map",
    "correct_linear",
    "detached_bias",
    "deviceless_eye",
    "ill_conditioned_inverse",
    "low_precision_eval_cache",
    "missing_factor_logdet",
    "non_finite_at_edges",
    "removed_torch_api",
    "scaled_coordinates",
    "stale_cache",
    "stale_transform_cache",
    "wrong_dims_logdet",
    "wrong_sign_logdet",
    "wrong_sign_transform",
    "zero_init_coupling_twin",
    "zero_init_shift_coupling",
    "zeroed_coordinate",
]


class MatrixAdapter(GenericAdapter):
    """invlin's convention plus the layer's own ``matrix()`` and, when it has one,
    ``set_matrix(w)``."""

    def matrix(self) -> torch.Tensor:
        return self.layer.matrix()  # type: ignore[attr-defined]

    def set_matrix(self, w: torch.Tensor) -> None:
        setter = getattr(self.layer, "set_matrix", None)
        if setter is None:
            raise Unsupported(f"{self.name} has no settable matrix")
        setter(w)


# -- linear layers -----------------------------------------------------------------------------
class CorrectLinear(nn.Module):
    """y = x Wᵀ + b with a dense trainable W (κ ≈ 1.3, log|det W| ≈ n·log 1.3): no bug."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        q, _ = torch.linalg.qr(torch.randn(features, features, generator=g, dtype=torch.float64))
        w = 1.3 * (torch.eye(features, dtype=torch.float64) + 0.1 * q)
        self.features = features
        self.weight = nn.Parameter(w.float())
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def logabsdet(self) -> torch.Tensor:
        return torch.linalg.slogdet(self.weight).logabsdet

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        """Rows of W⁻¹ applied to the rows of ``r`` (B, n)."""
        return torch.linalg.solve(self.weight, r.mT).mT

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.linear(x, self.weight, self.bias)
        return y, self.logabsdet().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = (y - self.bias).reshape(-1, self.features)
        x = self.solve(r).reshape(y.shape)
        return x, (-self.logabsdet()).expand(y.shape[:-1])

    def matrix(self) -> torch.Tensor:
        return self.weight.detach()

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        self.weight.copy_(w)


class WrongSignLogdet(CorrectLinear):
    """Bug: log|det| with the wrong sign, in both directions (so they stay consistent)."""

    def logabsdet(self) -> torch.Tensor:
        return -torch.linalg.slogdet(self.weight).logabsdet


class IllConditionedInverse(CorrectLinear):
    """Bug: the inverse solves the normal equations WᵀW x = Wᵀ(y − b): error ≈ κ²ε."""

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        w = self.weight
        return torch.linalg.solve(w.mT @ w, (r @ w).mT).mT


class DevicelessEye(CorrectLinear):
    """Bug: in eval mode the inverse uses W⁻¹ from ``torch.linalg.solve(W, torch.eye(n))``
    with no ``device=``/``dtype=`` (nflows #38): CUDA sees two devices, float64 two dtypes.
    The cache itself is kept fresh (keyed on the parameter's version, dtype and device)."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return super().inverse(y)
        w = self.weight
        key = (w._version, w.dtype, w.device)
        if getattr(self, "_key", None) != key:
            self._inv = torch.linalg.solve(w, torch.eye(self.features))
            self._key = key
        x = (y - self.bias) @ self._inv.mT
        return x, (-self.logabsdet()).expand(y.shape[:-1])


class StaleCache(CorrectLinear):
    """Bug: in eval mode the inverse caches W⁻¹ keyed on dtype and device only, so a parameter
    update leaves it stale (the class of pyro #2384)."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return super().inverse(y)
        w = self.weight
        key = (w.dtype, w.device)
        if getattr(self, "_key", None) != key:
            eye = torch.eye(self.features, dtype=w.dtype, device=w.device)
            self._inv = torch.linalg.solve(w.detach(), eye)
            self._key = key
        x = (y - self.bias) @ self._inv.mT
        return x, (-self.logabsdet()).expand(y.shape[:-1])


class LowPrecisionEvalCache(CorrectLinear):
    """Bug: in eval mode the inverse uses W⁻¹ inverted in float32 whatever the layer's dtype
    (cache kept fresh otherwise): in float64, eval mode is only float32-accurate."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return super().inverse(y)
        w = self.weight
        key = (w._version, w.dtype, w.device)
        if getattr(self, "_key", None) != key:
            self._inv = torch.linalg.inv(w.detach().float()).to(w.dtype)
            self._key = key
        x = (y - self.bias) @ self._inv.mT
        return x, (-self.logabsdet()).expand(y.shape[:-1])


class RemovedTorchAPI(CorrectLinear):
    """Bug: the inverse calls ``torch.trtrs``, removed from torch (normflows shipped this)."""

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        return torch.trtrs(r.mT, self.weight)[0].mT  # type: ignore[attr-defined]


# -- elementwise layers ------------------------------------------------------------------------
class MissingFactorLogdet(nn.Module):
    """y = c·exp(s) ⊙ x + b. Bug: log|det| = Σ s, missing n·log|c| (FrEIA #167 missed H·W)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.2 * torch.randn(features, generator=g))
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def _factor(self) -> torch.Tensor:
        return self.scale * torch.exp(self.log_scale)

    def _logdet(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self._factor() + self.bias, self._logdet(x)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.bias) / self._factor(), -self._logdet(y)

    def matrix(self) -> torch.Tensor:
        return torch.diag(self._factor().detach())


class WrongDimsLogdet(nn.Module):
    """y = exp(s) ⊙ x + b. Bug: the elementwise log-derivatives are summed over every axis but
    the first (FrEIA #176): right for (B, n) batches, wrong for (B₁, B₂, n)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def _logdet(self, x: torch.Tensor) -> torch.Tensor:
        logd = self.log_scale.expand(x.shape)
        return logd.sum(dim=tuple(range(1, x.ndim)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.log_scale) + self.bias, self._logdet(x)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.bias) * torch.exp(-self.log_scale), -self._logdet(y)


class BatchMeanLogdet(nn.Module):
    """The bent identity (elementwise, closed-form inverse). Bug: the log|det| of every sample
    is the batch mean of the per-sample values (right shape, samples see each other)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.act = BentIdentity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, ld = self.act(x)
        return y, ld.mean().expand(ld.shape)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, ld = self.act.inverse(y)
        return x, ld.mean().expand(ld.shape)


class NonFiniteAtEdges(nn.Module):
    """y = σ(x + b). Bug: log|det| = Σ log(σ(x + b)·σ(−x − b)) — accurate for moderate x, but
    the product underflows to 0 (log → −inf) once |x| exceeds ~100 in float32, ~700 in float64
    (the class of nflows #23, distrax #7); the stable form is −softplus(t) − softplus(−t)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.full((features,), 0.1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x + self.shift
        y = torch.sigmoid(t)
        return y, torch.log(y * torch.sigmoid(-t)).sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.log(y) - torch.log1p(-y)
        return t - self.shift, -(F.logsigmoid(t) + F.logsigmoid(-t)).sum(-1)


class StaleTransformCache(Transform, nn.Module):
    """y = exp(s) ⊙ x as a torch ``Transform`` module with ``cache_size=1`` (as pyro's
    ``TransformModule`` layers are built). Bug: torch answers a call on the very tensor it saw
    last from its cache, even after ``s`` was updated in place (pyro #2384)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    __hash__ = nn.Module.__hash__

    def __init__(self, features: int) -> None:
        super().__init__(cache_size=1)
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.exp(self.log_scale)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])


class DetachedBias(nn.Module):
    """y = exp(s) ⊙ x + b. Bug: b enters as ``b.detach()``, so no gradient ever reaches it (an
    optimizer never moves it); every value is right."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * torch.exp(self.log_scale) + self.bias.detach()
        return y, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (y - self.bias.detach()) * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).expand(y.shape[:-1])


class WrongSignTransform(StaleTransformCache):
    """y = exp(s) ⊙ x as a torch ``Transform`` module with ``cache_size=1``, as pyro builds its
    layers. Bugs: log|det| = −Σ s (wrong sign), and torch's cache goes stale after an in-place
    update of s (pyro #2384). Once called, the transform holds non-leaf tensors in its cache,
    which ``copy.deepcopy`` refuses: a reproduction must copy it before calling it."""

    __hash__ = nn.Module.__hash__

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.log_scale.sum().expand(x.shape[:-1])


# -- factories ---------------------------------------------------------------------------------
class ConstantMap(nn.Module):
    """Bug: y = 0·x + w, log|det| reported as 0 — every input goes to one point (not
    invertible; every value check has only singular Jacobians to look at)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0 * x + self.w, x.new_zeros(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0 * y + self.w, y.new_zeros(y.shape[:-1])


class ZeroedCoordinate(nn.Module):
    """Bug: an elementwise scaling y = s ⊙ x whose first output coordinate is forced to zero
    (the log|det| still sums all n log|s|); ``zero=False`` is the correct twin."""

    def __init__(self, features: int, zero: bool = True) -> None:
        super().__init__()
        self.log_s = nn.Parameter(torch.linspace(-0.5, 0.5, features))
        self.zero = zero

    def _mask(self, t: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(t.shape[-1], dtype=t.dtype, device=t.device)
        if self.zero:
            mask[0] = 0
        return mask

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * self.log_s.exp() * self._mask(x)
        return y, self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y * (-self.log_s).exp(), (-self.log_s.sum()).expand(y.shape[:-1])


class ClampedCouplingScale(nn.Module):
    """Affine coupling y_a = x_a, y_b = x_b·exp(s) + t with s, t linear in x_a.

    Bug: the forward clamps s to [−1, 1] and the inverse does not, so the two are inverses
    only where |s| ≤ 1 — a logic defect whose region a dtype's search may or may not reach.
    ``clamp_inverse=True`` is the correct twin (both clamp; still a bijection)."""

    def __init__(self, features: int, clamp_inverse: bool = False) -> None:
        super().__init__()
        self.k = max(1, features // 2)
        m = features - self.k
        g = torch.Generator().manual_seed(features)
        self.ws = nn.Parameter(0.4 * torch.randn(m, self.k, generator=g))
        self.wt = nn.Parameter(0.4 * torch.randn(m, self.k, generator=g))
        self.clamp_inverse = clamp_inverse

    def _scale(self, xa: torch.Tensor, clamp: bool) -> tuple[torch.Tensor, torch.Tensor]:
        s = F.linear(xa, self.ws)
        return (s.clamp(-1.0, 1.0) if clamp else s), F.linear(xa, self.wt)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[..., : self.k], x[..., self.k :]
        s, t = self._scale(xa, True)
        return torch.cat([xa, xb * s.exp() + t], -1), s.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ya, yb = y[..., : self.k], y[..., self.k :]
        s, t = self._scale(ya, self.clamp_inverse)
        return torch.cat([ya, (yb - t) * (-s).exp()], -1), -s.sum(-1)


class ZeroInitShiftCoupling(nn.Module):
    """Additive coupling y_b = x_b + t(x_a), t linear and zero-initialised (as flows start at
    the identity). Bug: the inverse adds t again (x_b = y_b + t) — invisible while t = 0, so
    only a layer moved off its initialisation shows it. ``sign=-1.0`` is the correct twin."""

    def __init__(self, features: int, sign: float = 1.0) -> None:
        super().__init__()
        self.k = max(1, features // 2)
        self.t = nn.Parameter(torch.zeros(features - self.k, self.k))
        self.sign = sign

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[..., : self.k], x[..., self.k :]
        return torch.cat([xa, xb + F.linear(xa, self.t)], -1), x.new_zeros(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ya, yb = y[..., : self.k], y[..., self.k :]
        xb = yb + self.sign * F.linear(ya, self.t)
        return torch.cat([ya, xb], -1), y.new_zeros(y.shape[:-1])


def _matrix(layer: nn.Module, features: int) -> Adapter:
    return MatrixAdapter(layer, features, name=type(layer).__name__)


def correct_linear(features: int) -> Adapter:
    return _matrix(CorrectLinear(features), features)


def wrong_sign_logdet(features: int) -> Adapter:
    return _matrix(WrongSignLogdet(features), features)


def ill_conditioned_inverse(features: int) -> Adapter:
    return _matrix(IllConditionedInverse(features), features)


def deviceless_eye(features: int) -> Adapter:
    return _matrix(DevicelessEye(features), features)


def stale_cache(features: int) -> Adapter:
    return _matrix(StaleCache(features), features)


def low_precision_eval_cache(features: int) -> Adapter:
    return _matrix(LowPrecisionEvalCache(features), features)


def batch_mean_logdet(features: int) -> nn.Module:
    return BatchMeanLogdet(features)


def removed_torch_api(features: int) -> Adapter:
    return _matrix(RemovedTorchAPI(features), features)


def stale_transform_cache(features: int) -> nn.Module:
    return StaleTransformCache(features)


def detached_bias(features: int) -> nn.Module:
    return DetachedBias(features)


def wrong_sign_transform(features: int) -> nn.Module:
    return WrongSignTransform(features)


def missing_factor_logdet(features: int) -> Adapter:
    return _matrix(MissingFactorLogdet(features), features)


def wrong_dims_logdet(features: int) -> nn.Module:
    return WrongDimsLogdet(features)


def non_finite_at_edges(features: int) -> nn.Module:
    return NonFiniteAtEdges(features)


def constant_map(features: int) -> nn.Module:
    return ConstantMap(features)


def zeroed_coordinate(features: int) -> nn.Module:
    return ZeroedCoordinate(features)


def scaled_coordinates(features: int) -> nn.Module:
    """The correct twin of :func:`zeroed_coordinate`."""
    return ZeroedCoordinate(features, zero=False)


def clamped_coupling_scale(features: int) -> nn.Module:
    return ClampedCouplingScale(features)


def clamped_coupling_both_ways(features: int) -> nn.Module:
    """The correct twin of :func:`clamped_coupling_scale`."""
    return ClampedCouplingScale(features, clamp_inverse=True)


def zero_init_shift_coupling(features: int) -> nn.Module:
    return ZeroInitShiftCoupling(features)


def zero_init_coupling_twin(features: int) -> nn.Module:
    """The correct twin of :func:`zero_init_shift_coupling`."""
    return ZeroInitShiftCoupling(features, sign=-1.0)


_ALL_BUT_LOGDET = (
    "composition",
    "persistence",
    "invertibility",
    "round_trip",
    "logdet_consistency",
    "batch_shape",
    "dtype_device",
    "modes",
    "cache",
    "edges",
    "conditioning",
    "gradients",
)

#: factory → {dtype: (status, checks)}: the checks that must fail ("fail") or raise ("error")
#: in that dtype; every other check must pass or be skipped. Why each set:
#: * wrong sign: every comparison of log|det| with a truth (autograd, oracle, and the oracle's
#:   value at ill-conditioned matrices); forward and inverse are wrong alike, so consistency
#:   passes;
#: * missing factor: autograd and oracle; no settable matrix, so no conditioning;
#: * wrong dims: only a (B₁, B₂, n) batch shows it: the batch-shape check;
#: * batch-mean log|det|: autograd (per sample) and the batch-shape check's single samples;
#:   forward and inverse average alike, so consistency passes;
#: * ill-conditioned inverse: only the conditioning check sets κ up to 10⁶ (10⁴ in float32);
#: * non-finite at edges: log|det| = −inf from |x| ≈ 100 on (float32), 700 (float64): edges and,
#:   since the value checks draw up to 1e4 and beyond too, both log|det| checks (the round trip
#:   passes: its values are right, and where y rounds to 1 the Jacobian is singular);
#: * deviceless eye: the eval-mode inverse, exercised by dtype_device, modes and cache; it
#:   raises in float64 (two dtypes) and is correct in float32 on the CPU;
#: * float32 eval-mode inverse: only the modes check compares eval with train (float64 only);
#: * stale cache (own eval-mode cache, or torch's ``cache_size=1``): the parameter update of
#:   the cache check;
#: * removed API: every check that calls the inverse raises AttributeError;
#: * detached bias: only the gradients check looks at gradients;
#: * wrong-sign Transform: autograd (no matrix, so no oracle) and, being a ``cache_size=1``
#:   transform, the cache check's parameter update.
BROKEN: dict = {
    # not invertible: every row's Jacobian is singular, so no κ-scaled bound exists and the
    # value checks judge nothing ("insufficient"); the invertibility check fails them
    constant_map: {d: ("fail", ("invertibility",)) for d in ("float64", "float32")},
    zeroed_coordinate: {d: ("fail", ("invertibility",)) for d in ("float64", "float32")},
    # wrong only once t ≠ 0: the validator's perturbation of the parameters exposes it
    zero_init_shift_coupling: {d: ("fail", ("round_trip",)) for d in ("float64", "float32")},
    wrong_sign_logdet: {
        d: ("fail", ("logdet_autograd", "logdet_oracle", "conditioning"))
        for d in ("float64", "float32")
    },
    missing_factor_logdet: {
        d: ("fail", ("logdet_autograd", "logdet_oracle")) for d in ("float64", "float32")
    },
    wrong_dims_logdet: {d: ("fail", ("batch_shape",)) for d in ("float64", "float32")},
    batch_mean_logdet: {
        d: ("fail", ("logdet_autograd", "batch_shape")) for d in ("float64", "float32")
    },
    low_precision_eval_cache: {"float64": ("fail", ("modes",)), "float32": ("fail", ())},
    ill_conditioned_inverse: {d: ("fail", ("conditioning",)) for d in ("float64", "float32")},
    non_finite_at_edges: {
        d: ("fail", ("logdet_autograd", "logdet_consistency", "edges"))
        for d in ("float64", "float32")
    },
    deviceless_eye: {
        "float64": ("error", ("dtype_device", "modes", "cache")),
        "float32": ("fail", ()),
    },
    stale_cache: {d: ("fail", ("cache",)) for d in ("float64", "float32")},
    stale_transform_cache: {d: ("fail", ("cache",)) for d in ("float64", "float32")},
    removed_torch_api: {d: ("error", _ALL_BUT_LOGDET) for d in ("float64", "float32")},
    detached_bias: {d: ("fail", ("gradients",)) for d in ("float64", "float32")},
    wrong_sign_transform: {
        d: ("fail", ("logdet_autograd", "cache")) for d in ("float64", "float32")
    },
}


# -- batch composition (issue 18, item 4): only a large or recomposed batch shows these --------
class BlockedCoupling(nn.Module):
    """Affine coupling y_a = x_a, y_b = x_b ⊙ exp(s) + t with s = tanh(x_a W_s + c_s),
    t = x_a W_t + c_t, log|det| = Σ s, evaluated in blocks of 16 rows as a memory-bounded
    implementation would (the conditioner once for the whole batch, the rest block by block).
    Correct: each block's log|det| is read from its own rows."""

    block = 16

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.k = max(1, features // 2)
        nb = features - self.k
        self.ws = nn.Parameter(0.5 * torch.randn(self.k, nb, generator=g))
        self.cs = nn.Parameter(0.1 * torch.randn(nb, generator=g))
        self.wt = nn.Parameter(0.5 * torch.randn(self.k, nb, generator=g))
        self.ct = nn.Parameter(0.1 * torch.randn(nb, generator=g))

    def _rows(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """Indices of the block's rows in the whole batch."""
        return torch.arange(start, stop, device=device)

    def _map(self, v: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
        flat = v.reshape(-1, v.shape[-1])
        va = flat[:, : self.k]
        s = torch.tanh(va @ self.ws + self.cs)
        t = va @ self.wt + self.ct
        outs, lds = [], []
        for start in range(0, flat.shape[0], self.block):
            stop = min(start + self.block, flat.shape[0])
            vb = flat[start:stop, self.k :]
            if sign > 0:
                outs.append(vb * s[start:stop].exp() + t[start:stop])
            else:
                outs.append((vb - t[start:stop]) * (-s[start:stop]).exp())
            lds.append(sign * s[self._rows(start, stop, v.device)].sum(-1))
        out = torch.cat([va, torch.cat(outs)], -1).reshape(v.shape)
        return out, torch.cat(lds).reshape(v.shape[:-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, 1.0)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(y, -1.0)


class WrongRowsBlockedLogdet(BlockedCoupling):
    """Bug: the block's log|det| is indexed with block-local row numbers (0 … 15) as if they
    were global ones, so from row 16 on every row gets the log|det| of a row of the first
    block (y and x stay right). Batches of up to 16 rows — every batch the other checks
    draw — are right."""

    def _rows(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        return torch.arange(stop - start, device=device)


class LargeBatchCentering(nn.Module):
    """y = exp(s) ⊙ x + b, log|det| = Σ s. Bug: in batches of more than 64 rows the layer
    first subtracts half the batch median of each feature, y = exp(s) ⊙ (x − ½·med(x)) + b —
    robust batch statistics switched on only where the batch is "large enough" for them (as
    batch-norm flows use batch statistics), so a row's output depends on the other rows in big
    batches only. The inverse undoes it (med(z) = ½·med(x) for z = x − ½·med(x), the median
    being an element, so no cancellation): round trips hold in every batch. Its correct twin
    (``limit=math.inf``) never centres."""

    def __init__(self, features: int, limit: float = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))
        self.limit = limit

    def _median(self, v: torch.Tensor) -> torch.Tensor | None:
        flat = v.reshape(-1, v.shape[-1])
        return flat.median(0).values if flat.shape[0] > self.limit else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self._median(x)
        if m is not None:
            x = x - 0.5 * m
        return x * self.log_scale.exp() + self.bias, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (y - self.bias) * (-self.log_scale).exp()
        m = self._median(z)
        if m is not None:
            z = z + m  # x = z + ½·med(x) = z + med(z)
        return z, (-self.log_scale.sum()).expand(y.shape[:-1])


def blocked_coupling(features: int) -> nn.Module:
    """The correct twin of :func:`wrong_rows_blocked_logdet`."""
    return BlockedCoupling(features)


def wrong_rows_blocked_logdet(features: int) -> nn.Module:
    return WrongRowsBlockedLogdet(features)


def large_batch_centering(features: int) -> nn.Module:
    return LargeBatchCentering(features)


def never_centering(features: int) -> nn.Module:
    """The correct twin of :func:`large_batch_centering`."""
    return LargeBatchCentering(features, limit=float("inf"))


__all__ += [
    "BlockedCoupling",
    "LargeBatchCentering",
    "WrongRowsBlockedLogdet",
    "blocked_coupling",
    "large_batch_centering",
    "never_centering",
    "wrong_rows_blocked_logdet",
]

#: * wrong rows of a blocked log|det|, large-batch centring: only batches of more than 16 /
#:   64 rows show them: the batch-shape check (every row of 130 recomputed in other chunks)
#:   and logdet_autograd, whose wide batches (up to 128 rows) compare each row's log|det| with
#:   the Jacobian of the whole batch (for the centring, the median row's carries the batch).
BROKEN.update(
    {
        f: {d: ("fail", ("logdet_autograd", "batch_shape")) for d in ("float64", "float32")}
        for f in (wrong_rows_blocked_logdet, large_batch_centering)
    }
)


# -- gradients against central differences (issue 18, item 3): values all exact ---------------
class SoftplusScale(nn.Module):
    """y = x ⊙ softplus(ρ) + b, log|det| = Σ log softplus(ρ): no bug (the correct twin of
    :class:`NoGradLogdet`)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.raw_scale = nn.Parameter(0.5 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def _log_scale(self) -> torch.Tensor:
        return torch.log(F.softplus(self.raw_scale))

    def _logdet(self, v: torch.Tensor) -> torch.Tensor:
        return self._log_scale().sum().expand(v.shape[:-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * F.softplus(self.raw_scale) + self.bias, self._logdet(x)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.bias) / F.softplus(self.raw_scale), -self._logdet(y)


class NoGradLogdet(SoftplusScale):
    """Bug: log|det| computed under ``torch.no_grad()`` (to "save memory"): every value is
    exact, but a likelihood's gradient misses ∂log|det|/∂ρ = σ(ρ)/softplus(ρ) per feature."""

    def _logdet(self, v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super()._logdet(v)


class _AffineFunction(torch.autograd.Function):
    """y = x ⊙ exp(s) + b with a hand-written backward that reuses the saved output:
    ∂y/∂s = y − b. ``omit`` drops the −b term (∂y/∂s taken as y, right only for b = 0)."""

    @staticmethod
    def forward(ctx, x, log_scale, bias, omit):  # type: ignore[override]
        y = x * torch.exp(log_scale) + bias
        ctx.save_for_backward(y, log_scale, bias)
        ctx.omit = omit
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        y, log_scale, bias = ctx.saved_tensors
        n = y.shape[-1]
        dy_ds = y if ctx.omit else y - bias
        grad_s = (g * dy_ds).reshape(-1, n).sum(0)
        return g * torch.exp(log_scale), grad_s, g.reshape(-1, n).sum(0), None


class CustomBackwardAffine(nn.Module):
    """y = exp(s) ⊙ x + b through a custom autograd Function, log|det| = Σ s: no bug (the
    correct twin of :class:`OmittedTermBackward`)."""

    omit = False

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.5 + 0.1 * torch.randn(features, generator=g))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = _AffineFunction.apply(x, self.log_scale, self.bias, self.omit)
        return y, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (y - self.bias) * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).expand(y.shape[:-1])


class OmittedTermBackward(CustomBackwardAffine):
    """Bug: the custom backward forms ∂y/∂s from the saved output y instead of y − b, so
    ∂y/∂s misses the −b term (a memory-saving backward written for a bias-free layer); the
    forward values, the inverse and every log|det| are exact."""

    omit = True


def softplus_scale(features: int) -> nn.Module:
    """The correct twin of :func:`no_grad_logdet`."""
    return SoftplusScale(features)


def no_grad_logdet(features: int) -> nn.Module:
    return NoGradLogdet(features)


def custom_backward_affine(features: int) -> nn.Module:
    """The correct twin of :func:`omitted_term_backward`."""
    return CustomBackwardAffine(features)


def omitted_term_backward(features: int) -> nn.Module:
    return OmittedTermBackward(features)


__all__ += [
    "CustomBackwardAffine",
    "NoGradLogdet",
    "OmittedTermBackward",
    "SoftplusScale",
    "custom_backward_affine",
    "no_grad_logdet",
    "omitted_term_backward",
    "softplus_scale",
]

#: * log|det| under no_grad, a custom backward missing a term: every value is exact, so only
#:   the gradients check (autograd against central differences of a float64 copy) sees them.
BROKEN.update(
    {
        no_grad_logdet: {d: ("fail", ("gradients",)) for d in ("float64", "float32")},
        omitted_term_backward: {d: ("fail", ("gradients",)) for d in ("float64", "float32")},
    }
)


# -- value checks on wide inputs (issue 18: large inputs, per-coordinate bounds, NaN) ----------
class IntervalAdapter(GenericAdapter):
    """invlin's convention plus the layer's ``domain_`` and ``codomain_`` intervals."""

    def domain(self) -> tuple[float, float] | None:
        return getattr(self.layer, "domain_", None)

    def codomain(self) -> tuple[float, float] | None:
        return getattr(self.layer, "codomain_", None)


_LOG2 = 0.6931471805599453  # log 2


def _logcosh(y: torch.Tensor) -> torch.Tensor:
    a = y.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - _LOG2


class Asinh(nn.Module):
    """y = asinh(x) elementwise, x = sinh(y), log|det| = −½Σ log1p(x²): no bug (the correct
    twin of :class:`AsinhWrongBranch`)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.asinh(x), -0.5 * torch.log1p(x * x).sum(-1)

    def _sinh(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sinh(y)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sinh(y), _logcosh(y).sum(-1)


class AsinhWrongBranch(Asinh):
    """Bug: the inverse switches to the asymptotic branch sign(u)·e^|u|/2 of sinh above
    |u| = 3, relative error e^(−2|u|): 2.5e-3 at |x| = 10, still 1e-8 at |x| = 1e4. Inputs up
    to 8 never reach it (asinh 8 = 2.78)."""

    def _sinh(self, y: torch.Tensor) -> torch.Tensor:
        return torch.where(y.abs() <= 3, torch.sinh(y), torch.sign(y) * torch.exp(y.abs()) / 2)


class Sigmoid(nn.Module):
    """y = σ(x) on R → (0, 1), log|det| = Σ log σ(x) + log σ(−x) (stable), x = log y − log1p(−y):
    no bug (the correct twin of :class:`ClippedSigmoidLogdet`)."""

    codomain_ = (0.0, 1.0)

    def _clip(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def _logdet(self, t: torch.Tensor) -> torch.Tensor:
        t = self._clip(t)
        return (F.logsigmoid(t) + F.logsigmoid(-t)).sum(-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(x), self._logdet(x)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.log(y) - torch.log1p(-y)
        return x, -self._logdet(x)


class ClippedSigmoidLogdet(Sigmoid):
    """Bug: log|det| is taken at the pre-activation clipped to [−17, 17] (a clipped sigmoid,
    as guards against log 0 are written): off by about |x| − 17 beyond, in both directions
    alike (so forward and inverse agree) and finite everywhere (so edges passes)."""

    def _clip(self, t: torch.Tensor) -> torch.Tensor:
        return t.clamp(-17.0, 17.0)


class Softplus(nn.Module):
    """y = softplus(x) = max(x, 0) + log1p(e^−|x|) on R → (0, ∞), log|det| = Σ log σ(x),
    x = y + log(−expm1(−y)): no bug (the correct twin of :class:`UnstableSoftplusInverse`).
    torch's own ``F.softplus`` is not used: it returns x itself above x = 20, a relative error
    of e^−20 ≈ 2e-9 that a float64 round trip sees."""

    codomain_ = (0.0, float("inf"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Two clamped branches: autograd gives σ(0) = ½ at x = 0 and no 0·∞ in either branch.
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        y = torch.where(x > 0, xp + torch.log1p(torch.exp(-xp)), torch.log1p(torch.exp(xn)))
        return y, F.logsigmoid(x).sum(-1)

    def _solve(self, y: torch.Tensor) -> torch.Tensor:
        return y + torch.log(-torch.expm1(-y))

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._solve(y), -torch.log(-torch.expm1(-y)).sum(-1)


class UnstableSoftplusInverse(Softplus):
    """Bug: below y = 15 the inverse is log(eʸ − 1): eʸ − 1 cancels for small y, so x loses
    log₂(1/y) bits — most of float32's from x ≈ −8 on, every digit (x = −inf) below
    x ≈ −16.6 (eʸ rounds to 1). The row-wise bound of a diagonal map let it through
    (κ₁ = max σ(xᵢ)/min σ(xᵢ) ≈ 3000 for entries ±8)."""

    def _solve(self, y: torch.Tensor) -> torch.Tensor:
        return torch.where(y > 15, super()._solve(y), torch.log(torch.exp(y) - 1))


class ElementwiseAffine(nn.Module):
    """y = eˢ ⊙ x + b with scales e^(0, 1.5, −1.5, …) (κ₁ = e³): no bug (the correct twin of
    :class:`UlpErrorAffine`)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        pattern = torch.tensor([0.0, 1.5, -1.5, 0.75, -0.75])
        self.log_scale = nn.Parameter(pattern.repeat(features // 5 + 1)[:features])
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def _factor(self, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.log_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.log_scale) + self.bias, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.bias) * self._factor(y), (-self.log_scale.sum()).expand(y.shape[:-1])


class UlpErrorAffine(ElementwiseAffine):
    """Bug: the inverse of coordinate 0 errs by 370 units of roundoff of the dtype (a factor
    1 + 370u). Judged per coordinate that is 185 times the allowance ε(|x₀| + |y₀/J₀₀|) ≈ 2ε|x₀|
    (ratio ≈ 185 against 30); judged over the row with κ₁ = e³ it stayed below 30."""

    def _factor(self, y: torch.Tensor) -> torch.Tensor:
        bump = torch.ones_like(self.log_scale)
        bump[0] = 1 + 370 * torch.finfo(y.dtype).eps / 2
        return torch.exp(-self.log_scale) * bump


class AllNaN(nn.Module):
    """Bug: every output is NaN (y, x and both log|det|), still with an autograd graph."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * float("nan"), (x * float("nan")).sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y * float("nan"), (y * float("nan")).sum(-1)


def _interval(layer: nn.Module, features: int) -> Adapter:
    return IntervalAdapter(layer, features, name=type(layer).__name__)


def asinh(features: int) -> Adapter:
    """The correct twin of :func:`asinh_wrong_branch`."""
    return _interval(Asinh(), features)


def asinh_wrong_branch(features: int) -> Adapter:
    return _interval(AsinhWrongBranch(), features)


def sigmoid(features: int) -> Adapter:
    """The correct twin of :func:`clipped_sigmoid_logdet`."""
    return _interval(Sigmoid(), features)


def clipped_sigmoid_logdet(features: int) -> Adapter:
    return _interval(ClippedSigmoidLogdet(), features)


def softplus(features: int) -> Adapter:
    """The correct twin of :func:`unstable_softplus_inverse`."""
    return _interval(Softplus(), features)


def unstable_softplus_inverse(features: int) -> Adapter:
    return _interval(UnstableSoftplusInverse(), features)


def elementwise_affine(features: int) -> Adapter:
    """The correct twin of :func:`ulp_error_affine`."""
    return _interval(ElementwiseAffine(features), features)


def ulp_error_affine(features: int) -> Adapter:
    return _interval(UlpErrorAffine(features), features)


def all_nan(features: int) -> nn.Module:
    return AllNaN()


#: The correct twins of the layers below: they pass every check in both dtypes.
VALUE_TWINS: tuple = (asinh, sigmoid, softplus, elementwise_affine)

__all__ += [
    "VALUE_TWINS",
    "AllNaN",
    "Asinh",
    "AsinhWrongBranch",
    "ClippedSigmoidLogdet",
    "ElementwiseAffine",
    "IntervalAdapter",
    "Sigmoid",
    "Softplus",
    "UlpErrorAffine",
    "UnstableSoftplusInverse",
    "all_nan",
    "asinh",
    "asinh_wrong_branch",
    "clipped_sigmoid_logdet",
    "elementwise_affine",
    "sigmoid",
    "softplus",
    "ulp_error_affine",
    "unstable_softplus_inverse",
]

#: * wrong asymptotic branch of the inverse above |u| = 3 (|x| ≳ 10): only the round trip on
#:   large inputs; the inverse's log|det| is computed from y, so consistency holds;
#: * log|det| at a pre-activation clipped to ±17: autograd on large inputs (finite, consistent);
#: * log(eʸ − 1) as the softplus inverse: the round trip, judged per coordinate, on inputs below
#:   about −8 (float64 loses digits there too, ε₆₄/y of them), and edges where eʸ rounds to 1
#:   (x = −inf below x ≈ −16.6 in float32, −37 in float64);
#: * a 370-ulp error in one coordinate of an elementwise inverse: the per-coordinate round trip.
BROKEN.update(
    {
        asinh_wrong_branch: {d: ("fail", ("round_trip",)) for d in ("float64", "float32")},
        clipped_sigmoid_logdet: {d: ("fail", ("logdet_autograd",)) for d in ("float64", "float32")},
        unstable_softplus_inverse: {
            d: ("fail", ("round_trip", "edges")) for d in ("float64", "float32")
        },
        ulp_error_affine: {d: ("fail", ("round_trip",)) for d in ("float64", "float32")},
    }
)
#: * NaN everywhere (with a graph): every value check alone, edges, and the invertibility check
#:   (its Jacobian is NaN); the checks that need a judged row are "insufficient", not failed.
BROKEN[all_nan] = {
    d: ("fail", ("invertibility", "round_trip", "logdet_autograd", "logdet_consistency", "edges"))
    for d in ("float64", "float32")
}


# -- one broken layer per check that had none of its own (issue 21, item 6) --------------------
class InverseLogdetSameSign(CorrectLinear):
    """Bug: the inverse returns the forward's log|det| (+log|det W|) instead of its negation;
    each direction has the right magnitude, so only forward-vs-inverse consistency sees it."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = super().inverse(y)
        return x, self.logabsdet().expand(y.shape[:-1])


class Float32Logdet(CorrectLinear):
    """Bug: the forward log|det| is computed in float32 whatever the layer's dtype (an output
    of the wrong dtype in float64; values right to float32 accuracy)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = super().forward(x)
        return y, self.logabsdet().float().expand(x.shape[:-1])


def inverse_logdet_same_sign(features: int) -> Adapter:
    return _matrix(InverseLogdetSameSign(features), features)


def float32_logdet(features: int) -> Adapter:
    return _matrix(Float32Logdet(features), features)


__all__ += [
    "Float32Logdet",
    "InverseLogdetSameSign",
    "float32_logdet",
    "inverse_logdet_same_sign",
]


class FirstBatchAxisLogdet(CorrectLinear):
    """Bug: the log|det| is expanded to the first batch axis only (code written for (B, n)
    batches): right for 1- and 2-D inputs, the wrong shape for (B₁, B₂, n)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = super().forward(x)
        return y, self.logabsdet().expand(x.shape[:-1][:1])


class Unmovable(CorrectLinear):
    """Bug: ``.to()`` raises, so the layer cannot be moved to a dtype or device; every check
    meets the exception before its search starts."""

    def to(self, *args: object, **kwargs: object) -> nn.Module:
        raise RuntimeError("this layer cannot be moved")


def first_batch_axis_logdet(features: int) -> Adapter:
    return _matrix(FirstBatchAxisLogdet(features), features)


def unmovable(features: int) -> Adapter:
    return _matrix(Unmovable(features), features)


__all__ += [
    "FirstBatchAxisLogdet",
    "Unmovable",
    "first_batch_axis_logdet",
    "unmovable",
]


# -- whole flows as distributions (issue 19, item 2: the distribution checks) -------------------
_LOG_2PI = 1.8378770664093453  # log(2π)
_dists = torch.distributions


class AffineFlow:
    """A correct flow x = loc(c) + scale ⊙ z, z ~ N(0, I_n), loc(c) = loc + W c for a context c
    of ``context_features`` M (0: unconditional): ``log_prob(x, context)``,
    ``rsample(shape, context)``, ``rsample_and_log_prob(shape, context)`` (the density along
    the sampling path) and, unconditional, ``transforms`` (its one affine map)."""

    def __init__(self, features: int, context_features: int = 0) -> None:
        g = torch.Generator().manual_seed(1000 + features)
        self.context_features = context_features
        self.loc = 0.5 * torch.randn(features, generator=g)
        self.scale = 0.5 + torch.rand(features, generator=g)
        self.weight = torch.randn(features, max(context_features, 1), generator=g)

    def _loc(self, context: torch.Tensor | None) -> torch.Tensor:
        if context is None or not self.context_features:
            return self.loc
        return self.loc + context @ self.weight.T

    def _sampling(self, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) the sampler uses."""
        return self._loc(context), self.scale

    def _density(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        z = (x - loc) / scale
        return (-0.5 * z * z - 0.5 * _LOG_2PI - torch.log(scale)).sum(-1)

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._density(x, self._loc(context), self.scale)

    def rsample(self, shape: tuple[int, ...], context: torch.Tensor | None = None) -> torch.Tensor:
        return self.rsample_and_log_prob(shape, context)[0]

    def rsample_and_log_prob(
        self, shape: tuple[int, ...], context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self._sampling(context)
        z = torch.randn(*shape, self.loc.shape[0], dtype=self.loc.dtype)
        x = loc + scale * z
        return x, self._density(x, loc, scale)

    @property
    def transforms(self) -> list[Transform]:
        if self.context_features:
            return []
        return [_dists.AffineTransform(self.loc, self.scale, event_dim=1)]


class ScaleMismatchFlow(AffineFlow):
    """Samples with 1.5 × the scale its ``log_prob`` assumes (and returns the sampler's own
    density along the sampling path)."""

    def _sampling(self, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._loc(context), 1.5 * self.scale


class UnnormalisedFlow(AffineFlow):
    """Correct samples, but the density everywhere (log_prob and the sampling path's) is
    e^0.1 ≈ 1.105 times too large: ∫p ≠ 1."""

    def _density(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return super()._density(x, loc, scale) + 0.1


class ContextIgnoredFlow(AffineFlow):
    """Conditional: sampling honours the context, ``log_prob`` ignores it (uses c = 0) — the
    nflows issue 24 bug class (log_prob disagreeing with sample_and_log_prob given a context)."""

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._density(x, self.loc, self.scale)


def affine_flow(features: int) -> AffineFlow:
    return AffineFlow(features)


def conditional_affine_flow(features: int, context_features: int = 2) -> AffineFlow:
    return AffineFlow(features, context_features)


def affine_transformed_distribution(features: int) -> torch.distributions.Distribution:
    """torch's TransformedDistribution: a standard normal through an affine map."""
    flow = AffineFlow(features)
    base = _dists.Independent(_dists.Normal(torch.zeros(features), torch.ones(features)), 1)
    return _dists.TransformedDistribution(base, flow.transforms)


def scale_mismatch_flow(features: int) -> AffineFlow:
    return ScaleMismatchFlow(features)


def unnormalised_flow(features: int) -> AffineFlow:
    return UnnormalisedFlow(features)


def context_ignored_flow(features: int, context_features: int = 2) -> AffineFlow:
    return ContextIgnoredFlow(features, context_features)


#: The broken flows and the distribution checks meant to catch each (both dtypes, the CPU).
BROKEN_FLOWS: dict = {
    scale_mismatch_flow: ("dist_consistency", "dist_samples"),
    unnormalised_flow: ("dist_normalisation",),
    context_ignored_flow: ("dist_consistency", "dist_samples"),
}
#: Their correct twins: they pass every distribution check (or skip dist_consistency when the
#: distribution returns no density along its sampling path).
FLOW_TWINS: tuple = (affine_flow, conditional_affine_flow, affine_transformed_distribution)

__all__ += [
    "BROKEN_FLOWS",
    "FLOW_TWINS",
    "AffineFlow",
    "ContextIgnoredFlow",
    "ScaleMismatchFlow",
    "UnnormalisedFlow",
    "affine_flow",
    "affine_transformed_distribution",
    "conditional_affine_flow",
    "context_ignored_flow",
    "scale_mismatch_flow",
    "unnormalised_flow",
]


# -- composition, save/load and compile (issue 19, parts 3-5) ----------------------------------
class SingleSampleLogdet(CorrectLinear):
    """Bug: the input goes through ``torch.atleast_2d`` and only y is reshaped back, so a single
    sample x of shape (n,) gets a log|det| of shape (1,) instead of (); every batch is right."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.atleast_2d(x)
        y, _ = super().forward(rows)
        return y.reshape(x.shape), self.logabsdet().expand(rows.shape[:-1])


class ScaleTransform(Transform, nn.Module):
    """y = x ⊙ exp(s) + b as a torch ``Transform`` module with torch's default ``cache_size=0``:
    no bug (the correct twin of the transforms below)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    __hash__ = nn.Module.__hash__

    def __init__(self, features: int) -> None:
        super().__init__(cache_size=0)
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.exp(self.log_scale) + self.bias

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.bias) * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])


class EventDimKeptTransform(ScaleTransform):
    """Bug: declares event_dim 1 (``real_vector``) but returns the elementwise log|det| of shape
    (*batch, n), as an event_dim 0 transform would: every log|det| has the wrong shape, and a
    ``TransformedDistribution`` adds it to a batch-shaped log_prob by broadcasting."""

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.expand(x.shape)


class DetachingCacheTransform(ScaleTransform):
    """Bug: with ``cache_size=1`` it caches ``x.detach()``, so ``t.inv(t(x))`` answers from the
    cache with an x cut from the graph and log_prob's gradient with respect to x is lost (the
    cache × gradient class of torch issue 59822 and pyro issue 1885). Built with
    ``cache_size=0``, so only a copy with ``cache_size=1`` shows it."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._cache_size == 0:
            return self._call(x)
        y = self._call(x)
        self._cached_x_y = x.detach(), y
        return y


class ElementwiseScaleTransform(ScaleTransform):
    """y = x ⊙ exp(s) + b declared elementwise (event_dim 0), log|det| of x's shape: no bug."""

    domain = constraints.real
    codomain = constraints.real

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.expand(x.shape)


class UnexpandedLogdetTransform(ElementwiseScaleTransform):
    """Bug: the elementwise log|det| is returned unexpanded, shape (n,): a sum or a
    ``TransformedDistribution`` broadcasts it, but ``StackTransform`` stacks the parts' values
    as they are ((2, n), not (2, *batch, n)) and ``IndependentTransform`` sums the batch away."""

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale


class _Strong:
    """A picklable strong reference: ``_Strong(obj)() is obj``."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __call__(self) -> object:
        return self.obj


class OwnInverse(Transform):
    """The inverse of a :class:`ScaleTransform` reached through ``ref()``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, ref: object) -> None:
        super().__init__()
        self.ref = ref

    @property
    def inv(self) -> Transform:
        return self.ref()

    def _call(self, y: torch.Tensor) -> torch.Tensor:
        return self.ref()._inverse(y)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self.ref()._call(x)

    def log_abs_det_jacobian(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self.ref().log_abs_det_jacobian(x, y)


class WeakInverseTransform(ScaleTransform):
    """Bug: ``t.inv`` holds the transform by a weak reference (to avoid a reference cycle), so
    ``pickle.dumps(t.inv)`` raises TypeError: the inverse object cannot be saved."""

    @property
    def inv(self) -> Transform:
        import weakref

        return OwnInverse(weakref.ref(self))


class HeldInverseTransform(ScaleTransform):
    """``t.inv`` holds the transform by a picklable strong reference: a pickled ``t.inv`` still
    works (the correct twin of :class:`WeakInverseTransform`; torch's own inverse class loses
    its transform when pickled, torch PR 191370)."""

    @property
    def inv(self) -> Transform:
        return OwnInverse(_Strong(self))


class PickleDropsBuffer(CorrectLinear):
    """y = W x + b + o, with o a non-persistent buffer (drawn from a seed at construction).
    Bug: ``__getstate__`` treats the non-persistent buffers as caches and saves zeros, so a
    pickled or ``torch.save``-d layer loses o (deep copies, by ``__deepcopy__``, keep it)."""

    def __init__(self, features: int, *, drop: bool = True) -> None:
        super().__init__(features)
        g = torch.Generator().manual_seed(features + 1)
        offset = 0.5 * torch.randn(features, generator=g)
        self.register_buffer("offset", offset, persistent=False)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, ladj = super().forward(x)
        return y + self.offset, ladj

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().inverse(y - self.offset)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.drop:
            gone = self._non_persistent_buffers_set
            state["_buffers"] = {
                k: torch.zeros_like(v) if k in gone else v for k, v in self._buffers.items()
            }
        return state

    def __deepcopy__(self, memo: dict) -> PickleDropsBuffer:
        import copy

        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new


class CompileFrozenWeight(CorrectLinear):
    """Bug: keeps a copy of W made at construction for the compiled path
    (``torch.compiler.is_compiling()``): eager is always right, a compiled layer uses the W it
    was built with and follows no parameter update (nor the validator's move off init)."""

    def __init__(self, features: int, *, frozen: bool = True) -> None:
        super().__init__(features)
        self.register_buffer("compiled_weight", self.weight.detach().clone(), persistent=False)
        self.frozen = frozen

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen and torch.compiler.is_compiling():
            return F.linear(x, self.compiled_weight, self.bias), self.logabsdet().expand(
                x.shape[:-1]
            )
        return super().forward(x)


def single_sample_logdet(features: int) -> Adapter:
    return _matrix(SingleSampleLogdet(features), features)


def scale_transform(features: int) -> nn.Module:
    return ScaleTransform(features)


def event_dim_kept_transform(features: int) -> nn.Module:
    return EventDimKeptTransform(features)


def detaching_cache_transform(features: int) -> nn.Module:
    return DetachingCacheTransform(features)


def elementwise_scale_transform(features: int) -> nn.Module:
    return ElementwiseScaleTransform(features)


def unexpanded_logdet_transform(features: int) -> nn.Module:
    return UnexpandedLogdetTransform(features)


def weak_inverse_transform(features: int) -> nn.Module:
    return WeakInverseTransform(features)


def held_inverse_transform(features: int) -> nn.Module:
    return HeldInverseTransform(features)


def pickle_drops_buffer(features: int) -> Adapter:
    return _matrix(PickleDropsBuffer(features), features)


def pickle_keeps_buffer(features: int) -> Adapter:
    """The correct twin of :func:`pickle_drops_buffer`."""
    return _matrix(PickleDropsBuffer(features, drop=False), features)


def compile_frozen_weight(features: int) -> Adapter:
    return _matrix(CompileFrozenWeight(features), features)


def compile_follows_weight(features: int) -> Adapter:
    """The correct twin of :func:`compile_frozen_weight`."""
    return _matrix(CompileFrozenWeight(features, frozen=False), features)


#: The twins of this block in the default run (``compile`` is opt-in: see
#: ``test_validate_compose.py``). The event_dim twin's log|det| has the wrong shape everywhere,
#: so every check that compares it with a batch-shaped value fails too.
BROKEN.update(
    {
        single_sample_logdet: {d: ("fail", ("composition",)) for d in ("float64", "float32")},
        event_dim_kept_transform: {
            d: (
                "fail",
                (
                    "logdet_autograd",
                    "logdet_consistency",
                    "batch_shape",
                    "gradients",
                    "composition",
                ),
            )
            for d in ("float64", "float32")
        },
        unexpanded_logdet_transform: {
            d: ("fail", ("composition",)) for d in ("float64", "float32")
        },
        pickle_drops_buffer: {d: ("fail", ("persistence",)) for d in ("float64", "float32")},
        weak_inverse_transform: {d: ("fail", ("persistence",)) for d in ("float64", "float32")},
        detaching_cache_transform: {d: ("fail", ("persistence",)) for d in ("float64", "float32")},
    }
)

__all__ += [
    "CompileFrozenWeight",
    "DetachingCacheTransform",
    "ElementwiseScaleTransform",
    "EventDimKeptTransform",
    "HeldInverseTransform",
    "OwnInverse",
    "PickleDropsBuffer",
    "ScaleTransform",
    "SingleSampleLogdet",
    "UnexpandedLogdetTransform",
    "WeakInverseTransform",
    "compile_follows_weight",
    "compile_frozen_weight",
    "detaching_cache_transform",
    "elementwise_scale_transform",
    "event_dim_kept_transform",
    "held_inverse_transform",
    "pickle_drops_buffer",
    "pickle_keeps_buffer",
    "scale_transform",
    "single_sample_logdet",
    "unexpanded_logdet_transform",
    "weak_inverse_transform",
]


# -- conditional layers (issue 19, context): an inverse that ignores or misreads its context ----
class ConditionalAffine(nn.Module):
    """Correct twin: y = x·exp(s(c)) + t(c) with s(c) = tanh(c A), t(c) = c B, for a context
    c of shape (*batch, M) or (M,); log|det| = Σ s. Invlin's convention with ``context=``."""

    def __init__(self, features: int, context_features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.a = nn.Parameter(0.5 * torch.randn(context_features, features, generator=g))
        self.b = nn.Parameter(torch.randn(context_features, features, generator=g))

    def params(self, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if context is None:
            raise ValueError(f"{type(self).__name__} needs a context")
        return torch.tanh(context @ self.a), context @ self.b

    def inverse_params(self, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.params(context)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        s, t = self.params(context)
        return x * torch.exp(s) + t, s.sum(-1).expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None):
        s, t = self.inverse_params(context)
        return (y - t) * torch.exp(-s), (-s.sum(-1)).expand(y.shape[:-1])


class ContextIgnoringInverse(ConditionalAffine):
    """The inverse ignores the context (uses c = 0)."""

    def inverse_params(self, context):
        return self.params(torch.zeros_like(context))


class ReversedContextInverse(ConditionalAffine):
    """The inverse reads the context's features in reverse order."""

    def inverse_params(self, context):
        return self.params(context.flip(-1))


class FirstRowContextInverse(ConditionalAffine):
    """The inverse applies the first row's context to every row (right for one broadcast
    context, wrong for one context per row)."""

    def inverse_params(self, context):
        first = context.reshape(-1, context.shape[-1])[0]
        return self.params(first)


class ContextCachedInverse(ConditionalAffine):
    """The inverse returns the last forward's input for the same y, whatever the context (a
    cache keyed on y alone)."""

    def forward(self, x, context=None):
        y, ld = super().forward(x, context)
        self._last = (y.detach().clone(), x.detach().clone())
        return y, ld

    def inverse(self, y, context=None):
        last = getattr(self, "_last", None)
        if last is not None and last[0].shape == y.shape and torch.equal(last[0], y.detach()):
            s, _ = self.params(context)
            return last[1].clone(), (-s.sum(-1)).expand(y.shape[:-1])
        return super().inverse(y, context)


class ContextFreeLayer(ConditionalAffine):
    """Accepts a context and ignores it in both directions (not conditional at all)."""

    def params(self, context):
        if context is None:
            raise ValueError("ContextFreeLayer needs a context")
        return torch.tanh(self.a.sum(0)), self.b.sum(0)


def conditional_affine(features: int, context_features: int) -> ConditionalAffine:
    return ConditionalAffine(features, context_features)


def context_ignoring_inverse(features: int, context_features: int) -> ConditionalAffine:
    return ContextIgnoringInverse(features, context_features)


def reversed_context_inverse(features: int, context_features: int) -> ConditionalAffine:
    return ReversedContextInverse(features, context_features)


def first_row_context_inverse(features: int, context_features: int) -> ConditionalAffine:
    return FirstRowContextInverse(features, context_features)


def context_cached_inverse(features: int, context_features: int) -> ConditionalAffine:
    return ContextCachedInverse(features, context_features)


def context_free_layer(features: int, context_features: int) -> ConditionalAffine:
    return ContextFreeLayer(features, context_features)


#: The broken conditional layers and the checks meant to catch each (both dtypes, with
#: context_features > 0); ``conditional_affine`` is their correct twin.
BROKEN_CONDITIONAL: dict = {
    context_ignoring_inverse: ("context", "round_trip"),
    reversed_context_inverse: ("context", "round_trip"),
    first_row_context_inverse: ("context",),
    context_cached_inverse: ("context",),
    context_free_layer: ("context",),  # built for M > 0 contexts, ignores them all
}

__all__ += [
    "BROKEN_CONDITIONAL",
    "ConditionalAffine",
    "ContextCachedInverse",
    "ContextFreeLayer",
    "ContextIgnoringInverse",
    "FirstRowContextInverse",
    "ReversedContextInverse",
    "conditional_affine",
    "context_cached_inverse",
    "context_free_layer",
    "context_ignoring_inverse",
    "first_row_context_inverse",
    "reversed_context_inverse",
]


# -- a reference Jacobian that reverse-mode autograd gets wrong (issue 19, validator false alarm) --
# sbi's MAF at |x| ~ 1e47: the vector-Jacobian products through huge intermediates cancel, so the
# float64 reverse-mode Jacobian is wrong while forward mode and the layer's log|det| are right.
# Modelled by a diagonal affine map whose backward is exact in real arithmetic but cancels in
# floating point: (g·d + g·x) − g·x loses ε|x|/d of g·d, harmless for |x| ≲ 1, wrong for
# |x| ≳ 30·d·n. Its forward-mode rule (jvp) is exact.
class _CancellingScale(torch.autograd.Function):
    """y = d ⊙ x; backward (g·d + g·x) − g·x (cancels for large |x|), jvp d ⊙ ẋ (exact)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, d)
        ctx.save_for_forward(d)
        return x * d

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x, d = ctx.saved_tensors
        return (g * d + g * x) - g * x, None

    @staticmethod
    def jvp(ctx, dx: torch.Tensor, _dd: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        (d,) = ctx.saved_tensors
        return dx * d


class _CancellingScaleReverseOnly(_CancellingScale):
    """As :class:`_CancellingScale` without a forward-mode rule (no second estimate exists)."""

    jvp = torch.autograd.Function.jvp


class _VanishingScale(_CancellingScale):
    """y = d ⊙ x; backward (g·d + g·C) − g·C with C = 1e20: exact in real arithmetic, exactly 0
    in floating point at every ordinary input (a reverse-mode Jacobian that looks singular)."""

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        _, d = ctx.saved_tensors
        return (g * d + g * 1e20) - g * 1e20, None


class CancellingBackward(nn.Module):
    """y = d ⊙ x + b, log|det| = Σ log dᵢ, matrix diag(d) — correct; only the reverse-mode
    derivative of the float64 reference is inaccurate (for |xᵢ| ≳ 10³): the validator must not
    blame the layer."""

    scale_fn: type[torch.autograd.Function] = _CancellingScale

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(features)
        self.log_scale = nn.Parameter(0.3 * torch.randn(features, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(features, generator=g))

    def logdet(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])

    def matrix(self) -> torch.Tensor:
        return torch.diag(self.log_scale.detach().exp())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.scale_fn.apply(x, self.log_scale.exp().to(x.dtype)) + self.bias
        return y, self.logdet(x)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (y - self.bias) * torch.exp(-self.log_scale)
        return x, -self.logdet(x)


class CancellingBackwardWrongLogdet(CancellingBackward):
    """Bug: log|det| off by 0.5 where some |xᵢ| > 10³ — exactly where the reference's reverse
    mode is unreliable, so the failure must stand on the forward-mode estimate."""

    def logdet(self, x: torch.Tensor) -> torch.Tensor:
        far = (x.detach().abs() > 1e3).any(dim=-1)
        return super().logdet(x) + 0.5 * far.to(x.dtype)


class CancellingBackwardNoForwardAD(CancellingBackward):
    """As :class:`CancellingBackward` without forward-mode AD: no second estimate, so the
    check keeps failing it (its old behaviour), saying why."""

    scale_fn = _CancellingScaleReverseOnly


class VanishingBackward(CancellingBackward):
    """Correct layer whose float64 reverse-mode Jacobian is exactly zero (forward mode exact):
    the invertibility check must not call it singular."""

    scale_fn = _VanishingScale


class _VanishingScaleReverseOnly(_VanishingScale):
    jvp = torch.autograd.Function.jvp


class VanishingBackwardNoForwardAD(VanishingBackward):
    """No forward-mode AD: nothing contradicts the zero Jacobian, so the check fails it."""

    scale_fn = _VanishingScaleReverseOnly


class ExactBackward(CancellingBackward):
    """The correct twin: y = d ⊙ x + b by plain autograd, both modes exact."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.log_scale.exp().to(x.dtype) + self.bias, self.logdet(x)


def cancelling_backward(features: int) -> Adapter:
    return _matrix(CancellingBackward(features), features)


def cancelling_backward_wrong_logdet(features: int) -> Adapter:
    return _matrix(CancellingBackwardWrongLogdet(features), features)


def cancelling_backward_no_forward_ad(features: int) -> Adapter:
    return _matrix(CancellingBackwardNoForwardAD(features), features)


def vanishing_backward(features: int) -> Adapter:
    return _matrix(VanishingBackward(features), features)


def vanishing_backward_no_forward_ad(features: int) -> Adapter:
    return _matrix(VanishingBackwardNoForwardAD(features), features)


def exact_backward(features: int) -> Adapter:
    return _matrix(ExactBackward(features), features)


__all__ += [
    "CancellingBackward",
    "CancellingBackwardNoForwardAD",
    "CancellingBackwardWrongLogdet",
    "ExactBackward",
    "VanishingBackward",
    "VanishingBackwardNoForwardAD",
    "cancelling_backward",
    "cancelling_backward_no_forward_ad",
    "cancelling_backward_wrong_logdet",
    "exact_backward",
    "vanishing_backward",
    "vanishing_backward_no_forward_ad",
]
