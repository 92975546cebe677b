"""Persistence check: every way of copying or saving a layer gives back the same layer.

The layer is built, called once without gradients (so a data-dependent initialisation, as in
ActNorm, happens) and updated in place as an optimizer step would (:func:`perturb`). Then each
operation makes a copy:

* ``state_dict`` → ``torch.save`` to memory → ``torch.load(weights_only=True)`` →
  ``load_state_dict`` into a fresh instance from the check's factory (``nn.Module`` layers);
* ``torch.save``/``torch.load`` of the whole layer (to a ``BytesIO``: no file is written;
  ``weights_only=False``, since a whole object is only restored by unpickling);
* ``pickle`` dumps/loads and ``copy.deepcopy`` of the layer;
* for a torch ``Transform``: ``t.inv`` pickled and deep-copied, used as the inverse (and its
  ``.inv`` as the forward); and copies with ``cache_size`` 0 and 1, whose gradients of
  log p(y) = ℓ⁻(y) − ½‖t⁻¹(y)‖² (a standard normal base) along a reparameterised path
  (y = t(x) with its graph, ℓ⁻(y) = t.inv.log_abs_det_jacobian(y, t.inv(y))) with respect to
  the parameters and x must agree (torch issue 59822; a cache that returns a detached x drops
  a chain-rule term). At a y computed without gradients (a non-reparameterised sample) torch's
  cache hit gives another gradient by design (59822 itself): that case is not judged.

Each copy's forward (y, log|det|) and inverse (x, log|det|) must equal the original's. Bound:
the engine's, for two evaluations of one map (y within ε(κ‖y‖ + ‖J‖‖x‖), x within
ε(κ‖x‖ + ‖J⁻¹‖‖y‖), log|det| within n·κ_eff·ε; ratio ≤ THRESHOLD), not bit-equality: a copy
computes the same operations on the same values, but in fresh memory, where a BLAS kernel may
pick another blocking or vector path and round differently. A copy that lost state differs by
the update (10⁵–10¹⁵ ratio units) or by the initialisation. The gradients of the two cache
sizes are the same function reached through different autograd paths (the inverse's rounding
is amplified by κ(J) and by ℓ's own conditioning κ_eff): relative error κ(J)·κ_eff·ε, ratio ≤
THRESHOLD; a dropped term is O(1) relative.

An operation that raises is a failure naming the operation and the error, with one exception:
on a torch whose ``Transform.__getstate__`` drops ``_inv`` (torch PR 191370) a pickled
``t.inv`` of torch's own inverse class has lost its forward transform for every layer alike;
that is said in the message and not held against the layer.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable

import numpy as np
import torch
from torch.distributions import ExpTransform, Transform

from invlin._errors import error_summary
from invlin.testing import forward_ratio
from invlin.validate.adapters._common import sum_event
from invlin.validate.checks.agreement import Agreement, Bounds, Evaluation
from invlin.validate.checks.base import (
    ALLOWED,
    CheckContext,
    Make,
    fresh,
    move,
    numpy64,
    result,
    tensor,
)
from invlin.validate.checks.composition import torch_transform
from invlin.validate.checks.truth import kappa_logdet, local
from invlin.validate.perturbation import perturb, standard_inputs
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe

__all__ = ["ROWS", "TORCH_INV_PICKLE", "copies", "rebind"]

#: Rows of each compared batch.
ROWS = 8
_SHARE = 0.01  # of the profile's examples (ci: 2 seeds)
#: What the message says when torch itself loses a pickled inverse's forward transform.
TORCH_INV_PICKLE = (
    "a pickled t.inv of torch's own inverse class lost its forward transform: torch's "
    "Transform.__getstate__ drops _inv (torch PR 191370), for every layer alike — not judged"
)


def rebind(adapter: Adapter, layer: object) -> Adapter:
    """A shallow copy of ``adapter`` that wraps ``layer`` instead (same adapter class)."""
    out = copy.copy(adapter)
    out.layer = layer
    return out


def _via_buffer(obj: object, *, weights_only: bool) -> object:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=weights_only)


#: torch's own inverse class (private to torch: reached through a transform's ``.inv``).
_TORCH_INVERSE = type(ExpTransform().inv)


def _torch_lost_inverse(obj: object, seen: set[int] | None = None) -> bool:
    """Whether ``obj`` is, or holds (in its attributes, lists and tuples, as zuko's composed
    inverse holds its parts' inverses), torch's own inverse class with its forward transform
    gone."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if type(obj) is _TORCH_INVERSE and getattr(obj, "_inv", None) is None:
        return True
    if isinstance(obj, list | tuple):
        return any(_torch_lost_inverse(o, seen) for o in obj)
    if isinstance(obj, Transform):
        return any(_torch_lost_inverse(o, seen) for o in vars(obj).values())
    return False


class _InverseObject(Adapter):
    """A (copied) ``t.inv`` seen as a layer: inverse = ``ti``, forward = ``ti.inv``."""

    def __init__(self, ti: Transform, features: int) -> None:
        super().__init__(ti, features, name="t.inv")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.layer.inv  # type: ignore[attr-defined]
        y = t(x)
        return y, sum_event(t.log_abs_det_jacobian(x, y), x, t.domain.event_dim)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ti = self.layer
        x = ti(y)  # type: ignore[operator]
        ld = ti.log_abs_det_jacobian(y, x)  # type: ignore[attr-defined]
        return x, sum_event(ld, y, ti.domain.event_dim)  # type: ignore[attr-defined]


def _set_cache(t: Transform, size: int) -> None:
    t._cache_size = size  # torch reads it on every call; with_cache() is rarely implemented
    t._cached_x_y = (None, None)


def copies(make: Make, ctx: CheckContext) -> CheckResult:
    """state_dict into a fresh instance, torch.save/torch.load, pickle, copy.deepcopy and the
    inverse object ``t.inv`` (pickled, copied) give the original's forward, inverse and
    log|det|; a transform's log|det| gradients do not depend on its cache size (module
    docstring: operations and bounds)."""
    name = "persistence"
    n = ctx.features
    probe_layer = fresh(make, ctx)
    domain = probe_layer.domain()
    is_module = probe_layer.module is not None
    has_params = bool(probe_layer.parameters())
    t0 = torch_transform(probe_layer)
    cacheable = isinstance(probe_layer.layer, Transform) and hasattr(
        probe_layer.layer, "_cache_size"
    )

    def trained(seed: int, dtype: torch.dtype, device: str) -> Adapter:
        a = move(make(), dtype, device)
        warm = standard_inputs(n, ROWS, seed=seed + 1, dtype=ctx.dtype, domain=domain)
        with torch.no_grad():
            a.forward(torch.as_tensor(warm).to(device, dtype))
        if has_params:
            perturb([a], seed)
        return a

    def probe(seed: int) -> Probe:
        agree = Agreement(ctx.dtype, n)
        orig = trained(seed, ctx.torch_dtype, ctx.device)
        ref = trained(seed, torch.float64, "cpu")  # κ and Jacobian norms only
        layer = orig.layer
        t = torch_transform(orig)
        ops: list[tuple[str, Callable[[], Adapter]]] = []
        if is_module:

            def from_state() -> Adapter:
                sd = _via_buffer(orig.module.state_dict(), weights_only=True)  # type: ignore[union-attr]
                new = move(make(), ctx.torch_dtype, ctx.device)
                new.module.load_state_dict(sd)  # type: ignore[union-attr]
                return new

            ops.append(
                ("state_dict → torch.save/load(weights_only=True) → fresh instance", from_state)
            )
        ops += [
            (
                "torch.save/torch.load of the whole layer",
                lambda: rebind(orig, _via_buffer(layer, weights_only=False)),
            ),
            ("pickle dumps/loads", lambda: rebind(orig, pickle.loads(pickle.dumps(layer)))),
            ("copy.deepcopy", lambda: rebind(orig, copy.deepcopy(layer))),
        ]
        if t is not None:
            ops += [
                ("pickle of t.inv", lambda: _InverseObject(pickle.loads(pickle.dumps(t.inv)), n)),
                ("copy.deepcopy of t.inv", lambda: _InverseObject(copy.deepcopy(t.inv), n)),
            ]
        # Every copy is made before the original is called with gradients: a called torch
        # Transform's cache then holds non-leaf tensors, which copy.deepcopy refuses.
        made: list[tuple[str, Adapter]] = []
        raised = []
        for what, build in ops:
            try:
                c = build()
            except Exception as exc:
                raised.append(f"{what} raised {error_summary(exc)}")
                continue
            if isinstance(c, _InverseObject) and _torch_lost_inverse(c.layer):
                agree.note(TORCH_INV_PICKLE)
                continue
            made.append((what, c))
        if raised:
            agree.fail("; ".join(raised))
        x = standard_inputs(n, ROWS, seed=seed, dtype=ctx.dtype, domain=domain)
        y0, l0 = orig.forward(tensor(x, ctx))
        y_in = y0.detach().clone()
        x0, li0 = orig.inverse(y_in.clone())
        loc = local(ref, x)
        bounds = Bounds.at(loc, x, n)
        for what, c in made if agree.fault is None else ():
            try:
                yc, lc = c.forward(tensor(x, ctx))
                xc, lic = c.inverse(y_in.clone())
            except Exception as exc:
                agree.fail(f"the copy made by {what} raised {error_summary(exc)}")
                break
            agree.same_map(
                Evaluation(yc, lc, xc, lic),
                Evaluation(y0, l0, x0, li0),
                bounds,
                lambda part, what=what: f"{part} after {what}",
            )
        if agree.fault is None and cacheable:
            _cache_gradients(make, ctx, x, loc, agree)
        example = {"seed": seed, "x": x, "operations": [w for w, _ in ops]}
        return agree.probe(example, "a copy differs from the original", "copies agree")

    def snippet(seed: int) -> str:
        inverse_object = (
            "t = adapter.transform()\n"
            "try:  # the inverse object, pickled\n"
            "    ti = pickle.loads(pickle.dumps(t.inv))\n"
            "    print('pickled t.inv:', (ti(y.detach().clone()) - x_back).abs().max())\n"
            "except Exception as exc:\n"
            "    print('pickle of t.inv:', type(exc).__name__, exc)\n"
            if t0 is not None
            else ""
        )
        return (
            "import copy, io, pickle\n"
            "from invlin.validate.checks.persistence import ROWS, rebind\n"
            "from invlin.validate.perturbation import perturb, standard_inputs\n"
            f"warm = torch.as_tensor(standard_inputs({n}, ROWS, seed={seed + 1}, "
            f"dtype={ctx.dtype!r}, domain=adapter.domain()), dtype=torch.{ctx.dtype})\n"
            "with torch.no_grad():\n    adapter.forward(warm)\n"
            f"perturb([adapter], {seed})  # an optimizer step, in place\n"
            f"x = torch.as_tensor(standard_inputs({n}, ROWS, seed={seed}, dtype={ctx.dtype!r}, "
            f"domain=adapter.domain()), dtype=torch.{ctx.dtype})\n"
            "y, ladj = adapter.forward(x)\n"
            "x_back, ladj_inv = adapter.inverse(y.detach().clone())\n"
            "layer = adapter.layer\n"
            "for what, c in (('pickle', rebind(adapter, pickle.loads(pickle.dumps(layer)))),\n"
            "                ('deepcopy', rebind(adapter, copy.deepcopy(layer)))):\n"
            "    yc, lc = c.forward(x.clone())\n"
            "    xc, lic = c.inverse(y.detach().clone())\n"
            "    print(what, 'forward', (yc - y).abs().max(), (lc - ladj).abs().max())\n"
            "    print(what, 'inverse', (xc - x_back).abs().max(), (lic - ladj_inv).abs().max())\n"
            + inverse_object
        )

    out = ctx.search_seeds(
        probe,
        stride=7,
        share=_SHARE,
        snippet=snippet,
    )
    what = ["pickle", "torch.save/load", "deepcopy"]
    if is_module:
        what.insert(0, "state_dict into a fresh instance")
    if t0 is not None:
        what.append("t.inv (pickled, copied)")
    passed = f"copies by {', '.join(what)} give the original's values"
    if cacheable:
        passed += "; log_prob gradients equal for cache_size 0 and 1"
    return result(name, ctx, out, passed)


def _cache_gradients(
    make: Make, ctx: CheckContext, x: np.ndarray, loc: object, agree: Agreement
) -> None:
    """Gradients of Σ_b log p(y_b) = Σ_b (ℓ⁻(y_b) − ½‖t⁻¹(y_b)‖²) (a standard normal base,
    up to a constant) at y = t(x) with respect to the parameters and x, for copies of the
    transform with cache_size 0 and 1 (module docstring: bound)."""
    grads = []
    for size in (0, 1):
        a = move(make(), ctx.torch_dtype, ctx.device)
        t = a.layer
        _set_cache(t, size)  # type: ignore[arg-type]
        xt = tensor(x, ctx).requires_grad_(True)
        params = a.parameters()
        with torch.enable_grad():
            y = t(xt)  # type: ignore[operator]
            xb = t.inv(y)  # type: ignore[attr-defined]
            ld = t.inv.log_abs_det_jacobian(y, xb)  # type: ignore[attr-defined]
            ladj = sum_event(ld, y, t.inv.domain.event_dim)  # type: ignore[attr-defined]
            if tuple(ladj.shape) != (x.shape[0],):
                agree.note("cache × gradient not judged: the log|det| has the wrong shape")
                return
            total = (ladj - 0.5 * (xb * xb).sum(-1)).sum()  # log_prob, standard normal base
            g = torch.autograd.grad(total, [*params, xt], allow_unused=True)
        wrt = [*params, xt]
        grads.append(
            np.concatenate(
                [
                    numpy64(gi).reshape(-1) if gi is not None else np.zeros(w.numel())
                    for gi, w in zip(g, wrt, strict=True)
                ]
            )
        )
    g0, g1 = grads
    kappa = float(np.max(loc.kappa)) * float(np.max(kappa_logdet(loc, ctx.features)))  # type: ignore[attr-defined]
    if not math.isfinite(kappa):
        agree.note("cache × gradient not judged (singular Jacobian)")
        return
    r = forward_ratio(g1, g0, kappa=kappa, dtype=ctx.dtype)
    what = "gradient of log p(t(x)) (parameters and x) with cache_size 1 vs 0"
    if not r.passed(ALLOWED):
        agree.fail(f"{what}: ratio {r.value:.3g} (κ_eff {kappa:.3g}; torch issue 59822)")
