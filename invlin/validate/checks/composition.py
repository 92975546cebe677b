"""Composition check: the layer composed with itself and with its inverse keeps log|det|
additivity and shapes; a torch ``Transform`` keeps torch's event_dim semantics when composed.

Two parts, both built by the check (the layer need not offer a composition):

* every layer, through its adapter: for x of batch shape (), (5,) and (2, 3) (() only where
  the layer accepts a single sample), f∘f (ℓ(x) + ℓ(f(x))) and f⁻¹∘f (ℓ(x) + ℓ⁻(f(x))) —
  every log|det| must have the batch shape, and every sum must equal the float64 copy's sum at
  the same points. A single sample's shapes are judged here; a wrong shape of the layer's own
  log|det| for a batch is the batch-shape check's finding (noted, that batch shape skipped);
* a torch ``Transform`` (torch, pyro, zuko): ``t.log_abs_det_jacobian`` has the batch shape for
  event_dim 1 and broadcasts to x's shape for event_dim 0; ``ComposeTransform([t, t])`` and
  ``ComposeTransform([t, t.inv])``, ``CatTransform([t, t], dim=-1)`` on (*batch, 2n),
  ``StackTransform([t, t], dim=0)`` on (2, *batch, n) and ``IndependentTransform(t, 1)`` give
  the shapes torch documents for their event_dim and the values of their parts.
  ``StackTransform`` is stacked along a batch axis (dim 0): along a negative dim torch's own
  ``StackTransform`` returns the per-part log|det| unsummed (torch issue 121220), for every
  layer alike.

Bound: a sum of k log|det| values, each a fresh evaluation at its own point p with the
engine's allowance n·κ_eff(p)·ε (:func:`~invlin.validate.checks.truth.kappa_logdet`), errs by
at most n·ε·Σ_p κ_eff(p) when the errors add up: the sum is judged with κ_eff = Σ_p κ_eff(p),
ratio ≤ THRESHOLD. The truth is the float64 copy's own log|det| at the same (tested) points,
so a log|det| that is wrong alone is the log|det| checks' finding, not this one's; a wrong
shape, a sum over the wrong axes or a part left out is O(|ℓ|) off (or the wrong shape).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Transform
from torch.distributions.transforms import (
    CatTransform,
    ComposeTransform,
    IndependentTransform,
    StackTransform,
)

from invlin.validate.checks.agreement import Agreement, shape_of
from invlin.validate.checks.base import (
    CheckContext,
    Make,
    ShapeMismatch,
    batch_values,
    numpy64,
    pair,
    result,
    tensor,
)
from invlin.validate.checks.truth import kappa_logdet, local
from invlin.validate.perturbation import standard_inputs
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe

__all__ = ["SHAPES", "chainable", "composed", "torch_transform"]

#: Batch shapes of the inputs: a single sample, a vector of samples, a 2-D batch.
SHAPES: tuple[tuple[int, ...], ...] = ((), (5,), (2, 3))
_SHARE = 0.01  # of the profile's examples (ci: 2 seeds, each all three shapes)


def torch_transform(adapter: Adapter) -> Transform | None:
    """The torch ``Transform`` an adapter evaluates (its ``transform()``), else ``None``."""
    get = getattr(adapter, "transform", None)
    if not callable(get):
        return None
    t = get()
    return t if isinstance(t, Transform) else None


def chainable(adapter: Adapter) -> bool:
    """Whether f(x) is again a valid input (codomain inside the domain), so f∘f is defined."""
    dom = adapter.domain()
    if dom is None:
        return True
    cod = adapter.codomain()
    return cod is not None and dom[0] <= cod[0] and cod[1] <= dom[1]


class _Truth:
    """The float64 copy's log|det| and κ_eff at points (m, n), forward or inverse."""

    def __init__(self, ref: Adapter, n: int) -> None:
        self.ref, self.n = ref, n

    def at(self, points: np.ndarray, *, inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
        loc = local(self.ref, points, inverse=inverse)
        m = points.shape[0]
        value = loc.logabsdet  # the autograd truth where the copy's own value has no row shape
        if loc.ladj is not None:
            try:  # a one-element log|det| (batch-independent layers) stands for every row
                value = batch_values(torch.as_tensor(loc.ladj), (m,), "reference log|det|")
            except ShapeMismatch:
                pass
        return value, kappa_logdet(loc, self.n)


def _event(ld: object, full: tuple[int, ...], event_dim: int, what: str, agree: Agreement):
    """``ld`` (a log|det| of a transform with ``event_dim``, inputs of shape ``full``) as one
    value per sample of n features (flattened), or ``None`` after recording the fault.

    event_dim 0: any shape that broadcasts to ``full`` (torch's convention), summed over the
    features axis; event_dim ≥ 1: exactly ``full`` without its last ``event_dim`` axes."""
    have = shape_of(ld)
    if have is None:
        agree.fail(f"{what} is a {type(ld).__name__}, not a tensor")
        return None
    if event_dim == 0:
        try:
            fits = torch.broadcast_shapes(have, full) == torch.Size(full)
        except RuntimeError:
            fits = False
        if not fits:
            agree.fail(f"{what} has shape {have}: it does not broadcast to {full} (event_dim 0)")
            return None
        return numpy64(ld.expand(full).sum(-1)).reshape(-1)  # type: ignore[union-attr]
    want = full[: len(full) - event_dim]
    if not agree.shape(ld, want, f"{what} (event_dim {event_dim})"):
        return None
    return numpy64(ld).reshape(-1)  # type: ignore[arg-type]


def composed(make: Make, ctx: CheckContext) -> CheckResult:
    """f∘f and f⁻¹∘f keep log|det| additivity and shapes for batch shapes (), (5,) and (2, 3);
    a torch Transform's ComposeTransform, CatTransform, StackTransform and
    IndependentTransform give torch's shapes and the sum of their parts (module docstring:
    bounds and what is built)."""
    name = "composition"
    n = ctx.features
    tested, ref = pair(make, ctx)
    truth = _Truth(ref, n)
    domain = tested.domain()
    chain = chainable(tested)
    t = torch_transform(tested)

    def draw(rows: int, seed: int) -> np.ndarray:
        return standard_inputs(n, rows, seed=seed, dtype=ctx.dtype, domain=domain)

    def probe(seed: int) -> Probe:
        agree = Agreement(ctx.dtype, n)
        done: list[str] = []
        for k, shape in enumerate(SHAPES):
            m = math.prod(shape)
            pts = draw(m, seed + k)
            xt = tensor(pts, ctx).reshape(*shape, n)
            try:
                y1, l1 = tested.forward(xt)
            except Exception as exc:
                if shape == ():
                    agree.note(f"a single sample (batch shape ()) raised {type(exc).__name__}")
                    continue
                raise
            where = f"for x of shape {(*shape, n)}"
            if shape and shape_of(l1) != shape:
                # the layer's own shapes at batch shapes the batch-shape check draws: its finding
                agree.note(f"log|det| shape {shape_of(l1)} {where} left to the batch-shape check")
                continue
            done.append(str(shape))
            if not agree.shape(y1, (*shape, n), f"forward y {where}"):
                break
            if not agree.shape(l1, shape, f"forward log|det| {where}"):
                break
            yp = numpy64(y1).reshape(m, n)
            lx, kx = truth.at(pts)
            l1v = numpy64(l1).reshape(-1)
            _, li = tested.inverse(y1.detach().clone())
            if not agree.shape(li, shape, f"inverse log|det| of f(x) {where}"):
                break
            li_ref, ki = truth.at(yp, inverse=True)
            agree.logdets(
                l1v + numpy64(li).reshape(-1), lx + li_ref, kx + ki, f"ℓ(x) + ℓ⁻(f(x)) {where}"
            )
            ly = ky = None
            if chain:
                y2, l2 = tested.forward(y1.detach().clone())
                if not agree.shape(l2, shape, f"log|det| of f∘f's second step {where}"):
                    break
                agree.shape(y2, (*shape, n), f"f∘f's y {where}")
                ly, ky = truth.at(yp)
                agree.logdets(
                    l1v + numpy64(l2).reshape(-1), lx + ly, kx + ky, f"ℓ(x) + ℓ(f(x)) {where}"
                )
            if t is not None:
                _transform_parts(t, xt, shape, n, agree, (lx, kx), (ly, ky), (li_ref, ki))
                if agree.fault is None:
                    second = draw(m, seed + 100 + k)
                    _cat_stack(
                        t,
                        xt,
                        tensor(second, ctx).reshape(*shape, n),
                        shape,
                        n,
                        agree,
                        (lx, kx),
                        truth.at(second),
                    )
            if agree.fault is not None:
                break
        example = {"seed": seed, "batch_shapes": done, "chained": chain}
        if not chain:
            agree.note("f∘f not built: the codomain is not inside the domain")
        return agree.probe(
            example,
            "composition breaks log|det| shapes or additivity",
            "composed log|det| shapes and sums right",
        )

    def snippet(seed: int) -> str:
        lines = [
            "from invlin.validate.checks.composition import SHAPES",
            "from invlin.validate.perturbation import standard_inputs",
            "import math",
            "for k, shape in enumerate(SHAPES):",
            f"    x = torch.as_tensor(standard_inputs({n}, max(1, math.prod(shape)), "
            f"seed={seed} + k, dtype={ctx.dtype!r}, domain=adapter.domain()), "
            f"dtype=torch.{ctx.dtype}).reshape(*shape, {n})",
            "    y, l1 = adapter.forward(x)",
            "    _, l2 = adapter.forward(y.detach().clone())",
            "    _, li = adapter.inverse(y.detach().clone())",
            "    print(shape, 'log|det| shapes', *(tuple(v.shape) for v in (l1, l2, li)))",
        ]
        if t is not None:
            lines += [
                "    from torch.distributions.transforms import ComposeTransform",
                "    t = adapter.transform()",
                "    c = ComposeTransform([t, t])",
                "    lc = c.log_abs_det_jacobian(x, c(x))",
                "    print('ComposeTransform([t, t]):', tuple(lc.shape), 'parts sum', l1 + l2)",
            ]
        return "\n".join(lines)

    out = ctx.search_seeds(
        probe,
        stride=1000,
        share=_SHARE,
        snippet=snippet,
        describe=lambda s: {"seed": s, "batch_shapes": [list(s_) for s_ in SHAPES]},
    )
    passed = "f∘f⁻¹" + (" and f∘f" if chain else "") + " keep log|det| shapes and sums"
    if t is not None:
        passed += "; ComposeTransform, CatTransform, StackTransform and IndependentTransform "
        passed += "built from the layer agree with their parts"
    return result(name, ctx, out, passed)


def _compose(
    t: Transform,
    second: Transform,
    label: str,
    xt: torch.Tensor,
    full: tuple[int, ...],
    parts: tuple[np.ndarray, np.ndarray],
    agree: Agreement,
) -> bool:
    """``ComposeTransform([t, second])`` at x of shape ``full``: its log|det| has the shape of
    its event_dim and equals the sum of its parts ``parts`` = (Σℓ, Σκ_eff), one per sample.
    ``label`` names ``second`` in the messages. False when the shape is wrong (recorded)."""
    c = ComposeTransform([t, second])
    what = f"ComposeTransform([t, {label}])"
    where = f"for x of shape {full}"
    lc = _event(
        c.log_abs_det_jacobian(xt, c(xt)),
        full,
        c.domain.event_dim,
        f"{what}.log_abs_det_jacobian {where}",
        agree,
    )
    if lc is None:
        return False
    agree.logdets(lc, *parts, f"{what} {where}")
    return True


def _transform_parts(
    t: Transform,
    xt: torch.Tensor,
    shape: tuple[int, ...],
    n: int,
    agree: Agreement,
    at_x: tuple[np.ndarray, np.ndarray],
    at_fx: tuple[np.ndarray | None, np.ndarray | None],
    inv_at_fx: tuple[np.ndarray, np.ndarray],
) -> None:
    """The layer alone, composed with itself and with its inverse, and reinterpreted
    (``IndependentTransform``), as torch Transforms."""
    full = (*shape, n)
    ed = t.domain.event_dim
    where = f"for x of shape {full}"
    if ed > 1:
        agree.note(f"event_dim {ed}: torch composition semantics not judged")
        return
    lx, kx = at_x
    ld = t.log_abs_det_jacobian(xt, t(xt))
    alone = _event(ld, full, ed, f"t.log_abs_det_jacobian {where}", agree)
    if alone is None:
        return
    agree.logdets(alone, lx, kx, f"t.log_abs_det_jacobian {where}")
    ly, ky = at_fx
    if ly is not None and ky is not None:
        if not _compose(t, t, "t", xt, full, (lx + ly, kx + ky), agree):
            return
    li, ki = inv_at_fx
    if not _compose(t, t.inv, "t.inv", xt, full, (lx + li, kx + ki), agree):
        return
    if shape:
        ind = IndependentTransform(t, 1, cache_size=getattr(t, "_cache_size", 0))
        got = ind.log_abs_det_jacobian(xt, ind(xt))
        if ed == 0:
            v = _event(got, full, 1, f"IndependentTransform(t, 1) {where}", agree)
            if v is not None:
                agree.logdets(v, lx, kx, f"IndependentTransform(t, 1) {where}")
        else:
            v = _event(got, full, 2, f"IndependentTransform(t, 1) {where}", agree)
            if v is not None:
                rows = shape[-1]
                agree.logdets(
                    v,
                    lx.reshape(-1, rows).sum(-1),
                    kx.reshape(-1, rows).sum(-1),
                    f"IndependentTransform(t, 1) (sum over the last batch axis) {where}",
                )


def _cat_stack(
    t: Transform,
    xt: torch.Tensor,
    x2: torch.Tensor,
    shape: tuple[int, ...],
    n: int,
    agree: Agreement,
    at_x: tuple[np.ndarray, np.ndarray],
    at_x2: tuple[np.ndarray, np.ndarray],
) -> None:
    """``CatTransform([t, t], dim=-1)`` on (x | x2) and ``StackTransform([t, t], dim=0)`` on
    (x, x2): shapes by their event_dim, values the parts' (sum for Cat, stacked for Stack)."""
    ed = t.domain.event_dim
    if ed > 1:
        return
    lx, kx = at_x
    l2, k2 = at_x2
    cat = CatTransform([t, t], dim=-1, lengths=[n, n])
    xc = torch.cat([xt, x2], dim=-1)
    full = (*shape, 2 * n)
    what = f"CatTransform([t, t], dim=-1) for x of shape {full}"
    v = _event(cat.log_abs_det_jacobian(xc, cat(xc)), full, ed, f"{what}: log|det|", agree)
    if v is None:
        return
    agree.logdets(v, lx + l2, kx + k2, what)
    stack = StackTransform([t, t], dim=0)
    xs = torch.stack([xt, x2], dim=0)
    full = (2, *shape, n)
    what = f"StackTransform([t, t], dim=0) for x of shape {full}"
    v = _event(stack.log_abs_det_jacobian(xs, stack(xs)), full, ed, what, agree)
    if v is not None:
        agree.logdets(v, np.concatenate([lx, l2]), np.concatenate([kx, k2]), what)
