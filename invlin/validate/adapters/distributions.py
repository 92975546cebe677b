"""Adapter for ``torch.distributions.Transform`` (and pyro's transforms): ``t(x)``, ``t.inv(y)``."""

from __future__ import annotations

import math

import torch
from torch.distributions import Transform, constraints

from invlin.validate.adapters._common import move_tensors, square, sum_event
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.registry import builtin, lazy

__all__ = [
    "PLUGIN",
    "DistributionsAdapter",
    "constraint_interval",
    "detect",
    "is_conditional_transform",
    "transform_library",
]


def transform_library(layer: object) -> str:
    """ "pyro", "zuko" or "torch" from the module that defines ``type(layer)``."""
    module = type(layer).__module__ or ""
    for name in ("pyro", "zuko"):
        if module == name or module.startswith(name + "."):
            return name
    return "torch"


def constraint_interval(c: constraints.Constraint) -> tuple[float, float] | None:
    """The interval of a (possibly ``independent``-wrapped) bounded constraint, else ``None``."""
    while hasattr(c, "base_constraint"):
        c = c.base_constraint  # type: ignore[attr-defined]
    lo = getattr(c, "lower_bound", None)
    hi = getattr(c, "upper_bound", None)
    if lo is None and hi is None:
        return None
    try:
        lo_f = -math.inf if lo is None else float(lo)
        hi_f = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):  # tensor-valued (batched) bounds: not one interval
        return None
    return (lo_f, hi_f)


def is_conditional_transform(layer: object) -> bool:
    """Whether ``layer`` is a pyro ``ConditionalTransform`` (``condition(context)`` gives the
    transform); found by class name, without importing pyro."""
    names = {c.__name__ for c in type(layer).__mro__}
    return "ConditionalTransform" in names and callable(getattr(layer, "condition", None))


class DistributionsAdapter(Adapter):
    """A ``torch.distributions.Transform`` (pyro ``TransformModule`` included), or a pyro
    ``ConditionalTransform`` evaluated as ``layer.condition(context)``.

    ``forward``: ``y = t(x)``, ``ladj = t.log_abs_det_jacobian(x, y)``; ``inverse``:
    ``x = t.inv(y)``, ``ladj = t.inv.log_abs_det_jacobian(y, x)`` — torch's inverse transform
    negates the forward value itself, the adapter does not. torch broadcasts over any batch
    shape, so nothing is reshaped. An elementwise transform (``domain.event_dim == 0``) returns
    an elementwise log|det| of shape ``(*batch, features)``: the adapter sums it over the last
    axis (a documented normalisation; any other shape is passed on for the shape check).

    Caching: with ``cache_size=1`` torch returns the cached ``x`` when ``t.inv`` is called on
    the very tensor ``t`` returned (an identity test on the object); pass a clone to make the
    layer really invert.
    """

    def __init__(
        self,
        layer: object,
        features: int,
        *,
        name: str | None = None,
        context_features: int = 0,
    ) -> None:
        super().__init__(layer, features, name=name, context_features=context_features)
        # a library adapter built on this one declares its own name; this one names the
        # layer's package (torch or pyro)
        if "library" not in type(self).__dict__:
            self.library = transform_library(layer)

    def transform(self, context: torch.Tensor | None = None) -> Transform:
        """The torch ``Transform`` to evaluate: the layer itself, or — a pyro
        ``ConditionalTransform`` — ``layer.condition(context)`` (``(*batch, M)`` or ``(M,)``,
        which pyro's conditioner networks broadcast; none given: the bound one,
        :meth:`~invlin.validate.protocol.Adapter.whole_context`). Raises ``TypeError`` when a
        context is given to a plain transform or none to a conditional one."""
        layer = self.layer
        if context is None:
            context = self.whole_context()
        if is_conditional_transform(layer):
            if context is None:
                raise TypeError(
                    f"{self.name} is a conditional transform: it needs a context "
                    "(build and validate it with context_features > 0)"
                )
            return layer.condition(context)  # type: ignore[attr-defined]
        if context is not None:
            raise TypeError(f"{self.name} is not conditional (no condition(context))")
        return layer  # type: ignore[return-value]

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.transform(self.context_for(x, context))
        y = t(x)
        ld = t.log_abs_det_jacobian(x, y)
        return y, sum_event(_as_tensor(ld, y), x, t.domain.event_dim)

    def inverse(
        self, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ti = self.transform(self.context_for(y, context)).inv
        x = ti(y)
        ld = ti.log_abs_det_jacobian(y, x)
        return x, sum_event(_as_tensor(ld, x), y, ti.domain.event_dim)

    def to(self, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
        """Move an ``nn.Module`` transform, or the tensor attributes of a plain one."""
        if self.module is not None:
            self.module.to(dtype=dtype, device=device)
        else:
            move_tensors(self.layer, dtype=dtype, device=device, seen=set())
        return self

    def domain(self) -> tuple[float, float] | None:
        return constraint_interval(self._constraints().domain)

    def codomain(self) -> tuple[float, float] | None:
        return constraint_interval(self._constraints().codomain)

    def _constraints(self) -> object:
        """What carries ``domain``/``codomain``: the transform, or a conditional layer itself
        (pyro declares them on the class; they do not depend on the context)."""
        if is_conditional_transform(self.layer) and hasattr(self.layer, "domain"):
            return self.layer
        return self.transform()

    # -- linear layers (pyro) --------------------------------------------------------------
    def matrix(self) -> torch.Tensor | None:
        """W in float64 for pyro's ``Householder``, ``MatrixExponential`` and
        ``LowerCholeskyAffine``; ``None`` otherwise.

        ``MatrixExponential`` applies the truncated series Σ_{k≤K} Mᵏ/k! (K = its
        ``iterations``, 8 by default, as its docstring says), not exp(M): W is that series —
        the matrix the layer really applies — so the oracle judges the log|det| the layer
        returns (tr M = log det exp(M)) against the map it computes."""
        names = {c.__name__ for c in type(self.layer).__mro__}
        layer = self.layer
        n = self.features
        if "ConditionedHouseholder" in names:
            u = layer.u_unnormed  # type: ignore[attr-defined]
            u = (u() if callable(u) else u).detach().to(torch.float64)
            u = u / torch.linalg.norm(u, dim=-1, keepdim=True)
            w = torch.eye(n, dtype=torch.float64, device=u.device)
            for k in range(u.shape[-2]):
                w = w - 2.0 * torch.outer(u[k], u[k] @ w)
            return w
        if "ConditionedMatrixExponential" in names:
            m = layer.weights  # type: ignore[attr-defined]
            m = (m() if callable(m) else m).detach().to(torch.float64)
            term = torch.eye(n, dtype=torch.float64, device=m.device)
            w = term.clone()
            for k in range(int(layer.iterations)):  # type: ignore[attr-defined]
                term = m @ term / (k + 1)
                w = w + term
            return w
        if "LowerCholeskyAffine" in names:
            return layer.scale_tril.detach().to(torch.float64)  # type: ignore[attr-defined]
        return None

    @torch.no_grad()
    def set_matrix(self, w: torch.Tensor) -> None:
        """``LowerCholeskyAffine`` only, for a lower-triangular ``w`` (see :meth:`admissible`)."""
        names = {c.__name__ for c in type(self.layer).__mro__}
        if "LowerCholeskyAffine" not in names:
            raise Unsupported(f"{self.name} has no settable matrix")
        w = square(w, self.features).to(torch.float64)
        if not torch.equal(w, torch.tril(w)):
            raise Unsupported(
                "LowerCholeskyAffine holds a lower-triangular matrix only; pass admissible(w)"
            )
        ref = self.layer.scale_tril  # type: ignore[attr-defined]
        self.layer.scale_tril = w.to(ref)  # type: ignore[attr-defined]

    def admissible(self, w: torch.Tensor) -> torch.Tensor:
        """The lower factor L of w = L Q with diag(L) > 0: w's singular values, triangular."""
        w = square(w, self.features).to(torch.float64)
        _, r = torch.linalg.qr(w.mT)
        lower = r.mT
        return lower * torch.sign(torch.diagonal(lower))


def _as_tensor(ld: object, like: torch.Tensor) -> torch.Tensor:
    """A Python number becomes a 0-d tensor (its shape is then reported, not broadcast)."""
    if isinstance(ld, torch.Tensor):
        return ld
    return torch.as_tensor(ld, dtype=like.dtype, device=like.device)


# -- plug-in -----------------------------------------------------------------------------------
def detect(layer: object) -> type[Adapter] | None:
    """:class:`DistributionsAdapter` for any ``torch.distributions.Transform`` (pyro's
    included) and any pyro ``ConditionalTransform``; zuko's are taken first by the zuko
    plug-in."""
    conditional = is_conditional_transform(layer)
    return DistributionsAdapter if isinstance(layer, Transform) or conditional else None


PLUGIN = builtin(
    "pyro",
    detect=detect,
    convention=Convention(
        library="pyro / torch",
        layer_type="torch.distributions.Transform (pyro TransformModule included)",
        forward_call="y = t(x); ld = t.log_abs_det_jacobian(x, y)",
        inverse_call="x = t.inv(y); ld = t.inv.log_abs_det_jacobian(y, x)",
        context="pyro ConditionalTransform(Module): t.condition(c) returns the Transform for "
        "context c (shape (*batch, m) or (m,), broadcast by the conditioner net); torch's own "
        "transforms take none",
        direction="latent → data (TransformedDistribution samples through t)",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y| (torch's inverse transform negates)",
        batch="any (*batch, n); elementwise transforms (event_dim 0) give (*batch, n)",
        adapter="event_dim 0 log|det| summed over the last axis; values unchanged; with "
        "cache_size=1, t.inv(y) on the very tensor t returned gives the cached x "
        "(pass a clone to force a real inverse)",
    ),
    catalog=lazy("invlin.validate._catalog_layers:pyro"),
    conditional=lazy("invlin.validate._catalog_layers:pyro_conditional"),
    priority=50,
    aliases=("torch",),
)
