"""Gradients with respect to the trainable parameters, compared with central differences.

For every point the check judges four scalars of the parameters θ — in each direction
(forward: u = x ↦ (y, ℓ); inverse at a fixed u = y ↦ (x, ℓ⁻)) the log|det| Σ_b ℓ_b and a
fixed random-weighted sum of the output Σ w ⊙ out — by their derivative along a seeded random
direction d in parameter space (:func:`direction`): the layer's autograd gradient gives
s = ⟨∇_θ f, d⟩, and a float64 CPU copy of the layer gives the reference f′(0) of
f(t) = f(θ + t·d) by Richardson-extrapolated central differences
(:mod:`~invlin.validate.checks.finite_diff`). One joint direction covers all parameter
tensors; when it fails, each tensor is compared along its own part of d to name the culprit.

Bound (ratio = |s − R| / B ≤ THRESHOLD, the engine's units):

* the reference's truncation τ = e₂₃ + |R₁₂ − R₂₃| (see :mod:`finite_diff`);
* its rounding 6δ/h, where δ bounds the float64 error of one value of f. Model: the
  computation is componentwise backward stable in what feeds it — every rounding of an
  elementary operation is a relative perturbation ≲ ε of a parameter or an input entry (the
  rounding of a hidden activation moves the next weight column; a sum's rounding its terms) —
  so δ = ε₆₄(Σ|terms of f| + Σᵢ|θᵢ ∂f/∂θᵢ| + Σⱼ|uⱼ ∂f/∂uⱼ|) (a cancelling conditioner sum
  Σₖ wₖhₖ shows up in Σ|wₖ ∂f/∂wₖ|). An inverse that is not backward stable to ε — an
  iteration stopped at a tolerance, zuko's bisection to 10⁻⁶ — is exact for y + r with r the
  measured round-trip residual f(x̂) − y (at the two points of the smallest step), so there
  δ is at least Σⱼ|∂f/∂yⱼ·rⱼ|;
* the tested autograd value's own error, by the same model applied to s(θ, u):
  η = ε·(Σᵢ|gᵢdᵢ| + Σ|per-entry terms of s| + Σᵢ|θᵢ (Hd)ᵢ| + Σⱼ|uⱼ ∂s/∂uⱼ|), ε of the dtype
  under test: the first two are the roundings of the sums over parameter entries and over the
  batch (per-entry derivatives of w ⊙ out and ℓ_b from the same central differences), the
  last two the first-order change of s under ε-relative perturbations of θ and u —
  Hd = ∂s/∂θ and ∂s/∂u by central differences of the float64 gradients at θ ± hd. In float64
  these two are omitted: ε₆₄·Σ|θᵢ(Hd)ᵢ| stays below the reference's rounding
  6δ/h ≥ 6·10⁴ε₆₄Σ|θᵢgᵢ| unless the gradient changes by 100 % within a step of 10⁻⁵ — where
  the truncation estimate is large anyway — which saves two evaluations with gradients.

The gradients and terms at θ in δ and η are the tested layer's own (scales: float32 accuracy
is ample), so the float64 copy is only evaluated along the stencil.

So float32 gradients are judged against the float64 reference with their own ε₃₂-sized
allowance, and float64 ones with ε₆₄ (where the reference's truncation dominates). A missing
term (a log|det| computed under ``no_grad`` or from a detached intermediate, a custom backward
that drops a term, a parameter entering detached) moves s by O(|s|): 10⁵–10¹⁰ ratio units.

A derivative whose reference cannot be trusted — the Richardson estimates disagree beyond
their own error (a ReLU kink or spline knot within h/4, or f bends on a scale below h), or f
is not finite there — is tried again with a step 16 times smaller, then not judged (counted
in the message); when no scalar of a point could be judged, the case tries new points
(:data:`ATTEMPTS`), and a check that judged nothing is "insufficient". Reachability follows
from the comparison: a parameter with no gradient (``None``), a non-finite or an all-zero
gradient fails where the reference derivative is not zero, and is fine where it is (x = 0,
spline tails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from invlin.testing import eps
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    ShapeMismatch,
    numpy64,
    pair,
    result,
    skipped,
    tensor,
)
from invlin.validate.checks.finite_diff import STEPS, richardson, rounding
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Probe, internal, tensor_literal

__all__ = [
    "ATTEMPTS",
    "REFINE",
    "ROWS",
    "SPREAD",
    "STEP",
    "Comparison",
    "ReferenceFailed",
    "direction",
    "gradients",
    "judge",
    "parameter_names",
]

#: Step h along d: each entry moves by about h·(|θᵢ| + SPREAD) — small enough that a ReLU kink
#: or spline knot rarely falls within the stencil, large enough that float64 rounding (6δ/h)
#: stays ~10⁻¹¹ relative.
STEP: float = 1e-4
#: d = z ⊙ (|θ| + SPREAD), z standard normal: relative for large entries, absolute for small.
SPREAD: float = 0.1
#: Factor by which the step shrinks for a second try where central differences were unreliable.
REFINE: float = 16.0
#: Rows in the batch of every point.
ROWS: int = 8
#: Points tried per case before it counts as judged nothing.
ATTEMPTS: int = 3
#: Share of the profile's example count (ci: 2 cases, each 4 scalars).
SHARE: float = 0.0134

_DIRECTIONS = ("forward", "inverse")
_SCALARS = ("log|det|", "output")
_WHAT = {"log|det|": "Σ log|det|", "output": "Σ w⊙output"}
_EPS64 = eps("float64")


def parameter_names(adapter: Adapter) -> list[str]:
    """Names of ``adapter.parameters()`` (from ``named_parameters`` where the layer is a
    module, else ``parameter i (shape)``)."""
    module = adapter.module
    names = {id(p): k for k, p in module.named_parameters()} if module is not None else {}
    return [
        names.get(id(p), f"parameter {i} {tuple(p.shape)}")
        for i, p in enumerate(adapter.parameters())
    ]


def direction(theta: torch.Tensor, seed: int) -> torch.Tensor:
    """The seeded direction for one parameter tensor: z ⊙ (|θ| + SPREAD), z ~ N(0, 1), in
    float64 on the CPU, of θ's shape."""
    t = theta.detach().to("cpu", torch.float64)
    z = torch.randn(
        t.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64
    )
    return z * (t.abs() + SPREAD)


def _weights(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(
        shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64
    )


def _inside(g: np.ndarray, domain: tuple[float, float] | None) -> np.ndarray:
    """Gaussian draws ``g`` mapped into ``domain`` (unchanged for all of R)."""
    if domain is None:
        return g
    lo, hi = domain
    if np.isfinite(lo) and np.isfinite(hi):
        return lo + (hi - lo) * (0.05 + 0.9 / (1 + np.exp(-g)))
    if np.isfinite(lo):
        return lo + np.exp(g)
    if np.isfinite(hi):
        return hi - np.exp(g)
    return g


def _points(
    seed: int, case: int, attempt: int, n: int, dtype: str, domain: tuple[float, float] | None
) -> np.ndarray:
    """(ROWS, n) Gaussian inputs in the domain, exact in ``dtype``, from (seed, case, attempt)."""
    rng = np.random.default_rng([int(seed), int(case), int(attempt)])
    x = _inside(rng.standard_normal((ROWS, n)), domain)
    return x.astype(dtype).astype(np.float64)


def _call(adapter: Adapter, way: str, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter's forward or inverse on a copy of ``u`` (a ``cache_size=1`` transform must
    not answer from its cache); the log|det| as a tensor."""
    out, ladj = (adapter.forward if way == "forward" else adapter.inverse)(u.clone())
    if tuple(out.shape) != tuple(u.shape):
        raise ShapeMismatch(
            f"the {way} returned shape {tuple(out.shape)} for an input of shape {tuple(u.shape)}"
        )
    if not isinstance(ladj, torch.Tensor):
        ladj = torch.as_tensor(ladj, dtype=out.dtype, device=out.device)
    return out, ladj


def _terms(out: torch.Tensor, ladj: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The terms whose sums are the judged scalars: ℓ per sample, w ⊙ out per entry."""
    return {"log|det|": ladj, "output": w.to(out) * out}


def _grads(f: torch.Tensor, wrt: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    if not f.requires_grad:
        return [None] * len(wrt)
    return list(torch.autograd.grad(f, list(wrt), retain_graph=True, allow_unused=True))


class ReferenceFailed(LayerFault):
    """The float64 CPU copy of the layer (the reference) raised where the tested layer did not:
    no reference derivative exists (a layer that only runs in float32, for instance)."""


@dataclass
class _Values:
    """One call of a layer: the terms (float64 NumPy) and, when asked for, the gradients of
    each scalar with respect to every parameter tensor (``raw``: as autograd returned them,
    ``None`` included; ``grads``: float64, zeros for ``None``) and to the input u; ``output``
    the layer's output (detached, in the layer's dtype)."""

    terms: dict[str, np.ndarray]
    output: torch.Tensor
    raw: dict[str, list[torch.Tensor | None]] | None = None
    grads: dict[str, list[np.ndarray]] | None = None
    input_grads: dict[str, np.ndarray] | None = None


def _evaluate(
    layer: Adapter, way: str, u: torch.Tensor, w: torch.Tensor, *, grads: bool
) -> _Values:
    """``layer``'s terms at ``u`` (in u's dtype and device) and, with ``grads``, their
    gradients."""
    params = layer.parameters()
    ut = u.detach().clone().requires_grad_(grads)
    with torch.enable_grad() if grads else torch.no_grad():
        out, ladj = _call(layer, way, ut)
        terms = _terms(out, ladj, w)
        values = _Values({k: numpy64(v) for k, v in terms.items()}, out.detach())
        if grads:
            values.raw, values.grads, values.input_grads = {}, {}, {}
            for k, v in terms.items():
                g = _grads(v.sum(), [*params, ut])
                values.raw[k] = g[:-1]
                values.grads[k] = [
                    np.zeros(tuple(p.shape)) if gi is None else numpy64(gi)
                    for p, gi in zip(params, g[:-1], strict=True)
                ]
                values.input_grads[k] = (
                    np.zeros(tuple(u.shape)) if g[-1] is None else numpy64(g[-1])
                )
    return values


def _reference(ref: Adapter, way: str, u: np.ndarray, w: torch.Tensor, *, grads: bool) -> _Values:
    """:func:`_evaluate` on the float64 copy; its exceptions become :class:`ReferenceFailed`."""
    try:
        return _evaluate(ref, way, torch.tensor(u, dtype=torch.float64), w, grads=grads)
    except (Unsupported, LayerFault):
        raise
    except Exception as exc:
        if internal(exc):
            raise
        text = (str(exc).strip().splitlines() or [""])[0]
        raise ReferenceFailed(
            f"the float64 copy of the layer (the reference) raised {type(exc).__name__}: {text}"
        ) from exc


@dataclass(frozen=True)
class Comparison:
    """One judged derivative: ``way`` (forward/inverse), ``scalar`` (log|det| or output),
    ``tensors`` (indices of the parameter tensors d covers), ``autograd`` s = ⟨∇f, d⟩ of the
    tested layer, ``reference`` R₂₃, ``bound`` B, ``ratio`` |s − R|/B, ``reliable`` (the
    reference can be trusted), ``status`` of the tested gradient of a single tensor ("ok",
    "none", "zero", "nonfinite"; "ok" for several)."""

    way: str
    scalar: str
    tensors: tuple[int, ...]
    autograd: float
    reference: float
    bound: float
    ratio: float
    reliable: bool
    status: str = "ok"

    @property
    def failed(self) -> bool:
        """A non-finite autograd value where f is finite, or a reliable ratio > ALLOWED."""
        if not math.isfinite(self.autograd) and math.isfinite(self.reference):
            return True
        return self.reliable and not self.ratio <= ALLOWED


def _status(g: torch.Tensor | None) -> str:
    if g is None:
        return "none"
    if not bool(torch.isfinite(g).all()):
        return "nonfinite"
    return "ok" if bool((g != 0).any()) else "zero"


def _ratio(diff: float, bound: float) -> float:
    if diff == 0.0:
        return 0.0
    if not math.isfinite(diff):
        return math.inf
    return diff / bound if bound > 0 else math.inf


def _sensitivity(
    theta: Sequence[np.ndarray], u: np.ndarray, plus: _Values, minus: _Values, scalar: str, h: float
) -> float:
    """Σᵢ|θᵢ (Hd)ᵢ| + Σⱼ|uⱼ ∂s/∂uⱼ|: the first-order change of s = ⟨∇f, d⟩ under relative
    perturbations of every parameter and input entry, Hd and ∂s/∂u by central differences of
    the float64 gradients at θ ± hd (``plus``, ``minus``)."""
    gp, gm = plus.grads[scalar], minus.grads[scalar]  # type: ignore[index]
    up, um = plus.input_grads[scalar], minus.input_grads[scalar]  # type: ignore[index]
    total = sum(float(np.abs(t * (a - b)).sum()) for t, a, b in zip(theta, gp, gm, strict=True))
    return (total + float(np.abs(u * (up - um)).sum())) / (2 * h)


class _Point:
    """The tested layer's autograd gradients at one batch x, and their comparison with central
    differences of the float64 copy along (parts of) the seeded direction."""

    def __init__(
        self, tested: Adapter, ref: Adapter, x: np.ndarray, ctx: CheckContext, seed: int
    ) -> None:
        self.tested, self.ref, self.ctx = tested, ref, ctx
        self.theta0 = [p.detach().clone() for p in ref.parameters()]
        self.d = [direction(t, seed + 1 + k) for k, t in enumerate(self.theta0)]
        self.w = _weights(x.shape, seed)
        # δ and η take their magnitudes (gradients at θ, terms) from the tested layer's own
        # autograd pass; Hd is needed below float64 only (module docstring).
        self.hessian = ctx.dtype != "float64"
        xt = tensor(x, ctx)
        self.inputs: dict[str, tuple[torch.Tensor, np.ndarray]] = {"forward": (xt, x)}
        self.autograd: dict[str, dict[str, list[torch.Tensor | None]]] = {}
        self.base: dict[str, _Values] = {}
        for way in _DIRECTIONS:
            ut = self.inputs[way][0]
            got = _evaluate(tested, way, ut, self.w, grads=True)
            self.autograd[way] = got.raw  # type: ignore[assignment]
            self.base[way] = got
            if way == "forward":  # the inverse is judged at the tested layer's own y
                self.inputs["inverse"] = (got.output, numpy64(got.output))

    def _set(self, tensors: Sequence[int], t: float) -> None:
        params = self.ref.parameters()
        with torch.no_grad():
            for k in tensors:
                params[k].copy_(self.theta0[k] + t * self.d[k])

    def compare(self, way: str, tensors: Sequence[int]) -> dict[str, Comparison]:
        """Both scalars of ``way`` along d restricted to ``tensors``; a scalar whose central
        differences are unreliable at :data:`STEP` is tried again at STEP/:data:`REFINE` (a
        function that bends on a scale below the step, a steep inverse, becomes smooth on a
        finer one; a kink at the point stays unreliable)."""
        found = self._at(way, tensors, STEP)
        if all(c.reliable for c in found.values()):
            return found
        finer = self._at(way, tensors, STEP / REFINE)
        return {sc: c if c.reliable else finer[sc] for sc, c in found.items()}

    def _at(self, way: str, tensors: Sequence[int], h: float) -> dict[str, Comparison]:
        u64 = self.inputs[way][1]
        plus: list[_Values] = []
        minus: list[_Values] = []
        hessian = self.hessian  # gradients at θ ± hd give Hd and ∂s/∂u
        residuals: list[np.ndarray] = []  # round trips y → x̂ → f(x̂) − y of the inverse
        try:
            for s in STEPS:
                for sign, into in ((1.0, plus), (-1.0, minus)):
                    self._set(tensors, sign * h * s)
                    into.append(_reference(self.ref, way, u64, self.w, grads=hessian and s == 1.0))
                    if way == "inverse" and s == STEPS[-1]:
                        back = _reference(
                            self.ref, "forward", numpy64(into[-1].output), self.w, grads=False
                        )
                        residuals.append(numpy64(back.output) - u64)
        finally:
            with torch.no_grad():
                for p, t0 in zip(self.ref.parameters(), self.theta0, strict=True):
                    p.copy_(t0)
        base = self.base[way]
        eps_t = eps(self.ctx.dtype)
        theta = [numpy64(t) for t in self.theta0]
        out = {}
        for sc in _SCALARS:
            est = richardson(
                [v.terms[sc].sum() for v in plus], [v.terms[sc].sum() for v in minus], h
            )
            per_entry = richardson([v.terms[sc] for v in plus], [v.terms[sc] for v in minus], h)
            g64, gu = base.grads[sc], base.input_grads[sc]  # type: ignore[index]
            with np.errstate(all="ignore"):
                # δ: error of one float64 value of f (componentwise backward stability)
                delta = _EPS64 * (
                    float(np.abs(base.terms[sc]).sum())
                    + sum(float(np.abs(t * g).sum()) for t, g in zip(theta, g64, strict=True))
                    + float(np.abs(u64 * gu).sum())
                )
                # an inverse is exact for y + r, r its round-trip residual: f errs by ∂f/∂y·r
                delta = max([delta, *(float(np.abs(gu * r).sum()) for r in residuals)])
                # η: error of the tested autograd value s = ⟨g, d⟩ in its own dtype
                sens = sum(
                    float(np.abs(g64[k] * self.d[k].numpy()).sum()) for k in tensors
                ) + float(np.abs(per_entry.value).sum())
                if hessian:
                    sens += _sensitivity(theta, u64, plus[0], minus[0], sc, h)
                eta = eps_t * sens
                bound = float(est.truncation) + float(rounding(delta, h)) + eta
            grads = self.autograd[way][sc]
            s = sum(
                float((g.detach().to("cpu", torch.float64) * self.d[k]).sum())
                for k in tensors
                if (g := grads[k]) is not None
            )
            ref_value = float(est.value)
            reliable = bool(est.reliable(delta)) and math.isfinite(bound)
            status = _status(grads[tensors[0]]) if len(tensors) == 1 else "ok"
            out[sc] = Comparison(
                way,
                sc,
                tuple(tensors),
                float(s),
                ref_value,
                bound,
                _ratio(abs(s - ref_value), bound),
                reliable,
                status,
            )
        return out


def judge(
    tested: Adapter,
    reference: Adapter,
    x: np.ndarray,
    ctx: CheckContext,
    *,
    seed: int = 0,
    tensors: Sequence[int] | None = None,
) -> list[Comparison]:
    """The comparisons :func:`gradients` makes at one batch ``x`` (b, n), exact in
    ``ctx.dtype``: for the forward and the inverse, both scalars along the joint seeded
    direction (``tensors=None``) or along each listed tensor's own part of it.
    ``reference`` is a float64 CPU copy of ``tested`` (:func:`~invlin.validate.checks.base.pair`);
    its parameters are restored after every evaluation."""
    point = _Point(tested, reference, np.asarray(x, dtype=np.float64), ctx, seed)
    every = tuple(range(len(tested.parameters())))
    groups = [every] if tensors is None else [(k,) for k in tensors]
    return [c for way in _DIRECTIONS for g in groups for c in point.compare(way, g).values()]


_STATUS_TEXT = {
    "none": "gets no gradient",
    "zero": "gets an all-zero gradient",
    "nonfinite": "gets a non-finite gradient",
    "ok": "gets a wrong gradient",
}


def _describe(c: Comparison, labels: Sequence[str]) -> str:
    who = labels[c.tensors[0]] if len(c.tensors) == 1 else "all parameters (joint direction)"
    return (
        f"{who} {_STATUS_TEXT[c.status] if len(c.tensors) == 1 else 'disagree'}: "
        f"autograd {c.autograd:.6g}, central differences {c.reference:.6g} "
        f"(allowed error {c.bound:.3g}, ratio {c.ratio:.3g})"
    )


def gradients(make: Make, ctx: CheckContext) -> CheckResult:
    """Autograd gradients of Σ log|det| and of Σ w⊙output (w fixed Gaussian weights) with
    respect to every trainable parameter, through the forward and through the inverse
    (training mode), agree with Richardson-extrapolated central differences of a float64 copy
    along a seeded random direction — ratio ≤ THRESHOLD with the bound derived in the module
    docstring (the reference's truncation and rounding plus the tested gradient's own
    ε-sized error). A parameter that gets no gradient, a non-finite or an all-zero one fails
    where the reference derivative is not zero; the message names the parameters.
    """
    name = "gradients"
    tested, ref = pair(make, ctx)
    if not tested.parameters():
        return skipped(name, ctx, "the layer has no trainable parameters")
    labels = parameter_names(tested)
    n = ctx.features
    domain = tested.domain()
    every = tuple(range(len(labels)))

    unjudged = {"n": 0}  # derivatives whose central differences could not be trusted

    def probe(case: int) -> Probe:
        judged = 0
        worst: Comparison | None = None
        for attempt in range(ATTEMPTS):
            x = _points(ctx.seed, case, attempt, n, ctx.dtype, domain)
            seed = 1000 * (ctx.seed * 7919 + case) + attempt
            point = _Point(tested, ref, x, ctx, seed)
            for way in _DIRECTIONS:
                found = point.compare(way, every)
                bad = [c for c in found.values() if c.failed]
                if bad:
                    return _failure(point, way, bad, x, seed, case)
                for c in found.values():
                    if not c.reliable:
                        unjudged["n"] += 1
                    elif worst is None or c.ratio > worst.ratio:
                        worst = c
                judged += sum(c.reliable for c in found.values())
            if judged:
                break
        if worst is None:
            return Probe(
                ok=True,
                judged=0,
                message=f"central differences unreliable at {ATTEMPTS} points (kinks or knots)",
            )
        return Probe(
            ok=True,
            ratio=worst.ratio,
            allowed=ALLOWED,
            judged=judged,
            message=f"{worst.way} {_WHAT[worst.scalar]}: ratio {worst.ratio:.3g}",
        )

    def _failure(
        point: _Point, way: str, bad: list[Comparison], x: np.ndarray, seed: int, case: int
    ) -> Probe:
        culprits: list[Comparison] = []
        if len(every) > 1:
            for k in every:
                culprits += [
                    c
                    for c in point.compare(way, (k,)).values()
                    if c.scalar in {b.scalar for b in bad} and c.failed
                ]
        shown = culprits or bad
        worst = max(bad, key=lambda c: c.ratio)
        scalars = sorted({c.scalar for c in shown})
        parts = [
            f"through the {way}, ∂({_WHAT[sc]})/∂θ along a random direction: "
            + "; ".join(_describe(c, labels) for c in shown if c.scalar == sc)
            for sc in scalars
        ]
        first = shown[0]
        example = {
            "x": x,
            "direction": way,
            "scalar": _WHAT[first.scalar],
            "parameters": [labels[k] for k in first.tensors],
            "autograd": first.autograd,
            "reference": first.reference,
            "allowed_error": first.bound,
            "seed": seed,
            "case": case,
        }
        return Probe(
            ok=False,
            ratio=worst.ratio,
            allowed=ALLOWED,
            example=example,
            message="; ".join(parts),
            repro=_snippet(ctx, x, way, first, labels, seed),
        )

    def snippet(case: int) -> str:  # for a case where the layer raised: every call made
        x = _points(ctx.seed, case, 0, n, ctx.dtype, domain)
        return "\n".join(
            [
                "import copy",
                "ref = copy.deepcopy(adapter).to(dtype=torch.float64, device='cpu')",
                f"x = {tensor_literal(x, ctx.dtype)}",
                "params = adapter.parameters()",
                "y, ladj = adapter.forward(x.clone().requires_grad_())",
                "torch.autograd.grad(ladj.sum() + y.sum(), params, allow_unused=True)",
                "x_back, ladj_inv = adapter.inverse(y.detach().clone().requires_grad_())",
                "torch.autograd.grad(ladj_inv.sum() + x_back.sum(), params, allow_unused=True)",
                "ref.forward(x.double().cpu())  # the float64 reference",
                "ref.inverse(y.detach().double().cpu())",
            ]
        )

    out = ctx.search(
        st.integers(0, 2**16 - 1),
        probe,
        snippet=snippet,
        share=SHARE,
        describe=lambda case: {"x": _points(ctx.seed, case, 0, n, ctx.dtype, domain), "case": case},
    )
    res = result(
        name,
        ctx,
        out,
        f"autograd gradients of all {len(labels)} parameter tensors "
        f"match central differences both ways",
    )
    if res.status == "pass" and unjudged["n"]:
        res.message += (
            f"; {unjudged['n']} derivative(s) not judged: central differences "
            f"unreliable there (a kink or knot within the step)"
        )
    return res


def _snippet(
    ctx: CheckContext, x: np.ndarray, way: str, c: Comparison, labels: Sequence[str], seed: int
) -> str:
    """Python lines that recompute one comparison (the first tensor of ``c``) given
    ``adapter``."""
    k = c.tensors[0]
    scalar = "ladj.sum()" if c.scalar == "log|det|" else "(w.to(out) * out).sum()"
    call = "layer.forward" if way == "forward" else "layer.inverse"
    u = "x" if way == "forward" else "adapter.forward(x.clone())[0].detach()"
    return "\n".join(
        [
            "import copy",
            "from invlin.validate.checks.backprop import direction",
            "ref = copy.deepcopy(adapter).to(dtype=torch.float64, device='cpu')  # before any call",
            f"x = {tensor_literal(x, ctx.dtype)}",
            f"k, name = {k}, {labels[k]!r}",
            "p, q = adapter.parameters()[k], ref.parameters()[k]",
            f"d = direction(q, {seed + 1 + k})  # z * (|θ| + 0.1), z ~ N(0, 1) seeded",
            f"w = torch.randn(x.shape, generator=torch.Generator().manual_seed({seed}), "
            "dtype=torch.float64)",
            f"u = {u}",
            "def f(layer, v):",
            f"    out, ladj = {call}(v.clone())",
            f"    return {scalar}",
            "fu = f(adapter, u)",
            "g = torch.autograd.grad(fu, p, allow_unused=True)[0] if fu.requires_grad else None",
            "print(name, 'autograd:', None if g is None else float((g.double().cpu() * d).sum()))",
            "q0 = q.detach().clone()",
            "def at(t):",
            "    with torch.no_grad():",
            "        q.copy_(q0 + t * d)",
            "        return float(f(ref, u.double().cpu()))",
            f"h = {STEP}",
            "print('central difference:', (at(h) - at(-h)) / (2 * h))",
        ]
    )
