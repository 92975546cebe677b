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
    "ClampedCouplingScale",
    "clamped_coupling_both_ways",
    "clamped_coupling_scale",
    "ConstantMap",
    "ZeroedCoordinate",
    "constant_map",
    "scaled_coordinates",
    "zeroed_coordinate",
    "BatchMeanLogdet",
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
    "batch_mean_logdet",
    "correct_linear",
    "detached_bias",
    "deviceless_eye",
    "ill_conditioned_inverse",
    "low_precision_eval_cache",
    "missing_factor_logdet",
    "non_finite_at_edges",
    "removed_torch_api",
    "stale_cache",
    "stale_transform_cache",
    "wrong_dims_logdet",
    "wrong_sign_logdet",
    "wrong_sign_transform",
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


_ALL_BUT_LOGDET = ("round_trip", "logdet_consistency", "batch_shape", "dtype_device", "modes",
                   "cache", "edges", "conditioning", "gradients")

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
#: * non-finite at edges: only the edges check draws |x| up to 1e4;
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
    wrong_sign_logdet: {d: ("fail", ("logdet_autograd", "logdet_oracle", "conditioning"))
                        for d in ("float64", "float32")},
    missing_factor_logdet: {d: ("fail", ("logdet_autograd", "logdet_oracle"))
                            for d in ("float64", "float32")},
    wrong_dims_logdet: {d: ("fail", ("batch_shape",)) for d in ("float64", "float32")},
    batch_mean_logdet: {d: ("fail", ("logdet_autograd", "batch_shape"))
                        for d in ("float64", "float32")},
    low_precision_eval_cache: {"float64": ("fail", ("modes",)), "float32": ("fail", ())},
    ill_conditioned_inverse: {d: ("fail", ("conditioning",)) for d in ("float64", "float32")},
    non_finite_at_edges: {d: ("fail", ("edges",)) for d in ("float64", "float32")},
    deviceless_eye: {"float64": ("error", ("dtype_device", "modes", "cache")),
                     "float32": ("fail", ())},
    stale_cache: {d: ("fail", ("cache",)) for d in ("float64", "float32")},
    stale_transform_cache: {d: ("fail", ("cache",)) for d in ("float64", "float32")},
    removed_torch_api: {d: ("error", _ALL_BUT_LOGDET) for d in ("float64", "float32")},
    detached_bias: {d: ("fail", ("gradients",)) for d in ("float64", "float32")},
    wrong_sign_transform: {d: ("fail", ("logdet_autograd", "cache"))
                           for d in ("float64", "float32")},
}
