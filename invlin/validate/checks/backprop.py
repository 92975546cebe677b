"""Gradients reach every trainable parameter, finite and not all zero, in both directions."""

from __future__ import annotations

import numpy as np
import torch

from invlin.testing.strategies import layer_inputs
from invlin.validate.checks.base import CheckContext, Make, fresh, result, skipped, tensor
from invlin.validate.checks.state import perturb
from invlin.validate.protocol import Adapter
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["gradients", "parameter_names"]


def parameter_names(adapter: Adapter) -> list[str]:
    """Names of ``adapter.parameters()`` (from ``named_parameters`` where the layer is a
    module, else ``parameter i (shape)``)."""
    module = adapter.module
    names = {id(p): k for k, p in module.named_parameters()} if module is not None else {}
    return [names.get(id(p), f"parameter {i} {tuple(p.shape)}")
            for i, p in enumerate(adapter.parameters())]


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


def _statuses(adapter: Adapter, x: np.ndarray, ctx: CheckContext, weights: torch.Tensor
              ) -> dict[str, list[str]]:
    """Per direction, the status of each parameter: "ok", "none", "nonfinite" or "zero"."""
    params = adapter.parameters()
    out: dict[str, list[str]] = {}
    for direction in ("forward", "inverse"):
        for p in params:
            p.grad = None
        xt = tensor(x, ctx)
        if direction == "forward":
            z, ladj = adapter.forward(xt)
        else:
            with torch.no_grad():
                y, _ = adapter.forward(xt)
            z, ladj = adapter.inverse(y.detach().clone())
        loss = (weights.to(z) * z).sum() + ladj.sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad \
            else [None] * len(params)
        states = []
        for g in grads:
            if g is None:
                states.append("none")
            elif not bool(torch.isfinite(g).all()):
                states.append("nonfinite")
            elif not bool((g != 0).any()):
                states.append("zero")
            else:
                states.append("ok")
        out[direction] = states
    return out


def gradients(make: Make, ctx: CheckContext) -> CheckResult:
    """loss = Σ w⊙out + Σ log|det| (w fixed Gaussian weights, so no symmetry cancels) sends a
    finite gradient that is not all zero to every trainable parameter, through the forward and
    through the inverse (training mode).

    No tolerance. A gradient that is exactly zero — or missing (``None``: autograd found no
    path) — at the drawn point may be the point's doing (x = 0 gives every weight a zero
    gradient; P4Inv's v gets none while u = 0; nflows' rational-quadratic spline skips its
    spline, and so its parameters, when every input lies in the identity tails), so it is
    retried at a Gaussian input and then also at randomly updated parameters
    (:func:`~invlin.validate.checks.state.perturb`); it fails only when zero or missing at all
    three. A non-finite gradient fails at once. The message names the parameters.
    """
    name = "gradients"
    first = fresh(make, ctx)
    if not first.parameters():
        return skipped(name, ctx, "the layer has no trainable parameters")
    labels = parameter_names(first)
    n = ctx.features
    domain = first.domain()
    retried: set[str] = set()  # parameters reached only on a retry, and where

    def probe(x: np.ndarray) -> Probe:
        gen = torch.Generator().manual_seed(ctx.seed)
        weights = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        states = _statuses(fresh(make, ctx), x, ctx, weights)
        notes: list[str] = []
        # Exact zeros and missing gradients can be the point's fault (x = 0 kills every weight's
        # gradient, u = 0 kills v's, inputs all in a spline's identity tails leave its
        # parameters out of the graph): retry at a Gaussian input, then at updated parameters.
        generic = torch.randn((4, n), generator=gen, dtype=torch.float64).numpy()
        generic = _inside(generic, domain).astype(ctx.dtype).astype(np.float64)
        for where in ("a Gaussian input", "a Gaussian input and updated parameters"):
            zero = {d: [i for i, s in enumerate(v) if s in ("zero", "none")]
                    for d, v in states.items()}
            if not any(zero.values()):
                break
            again_layer = fresh(make, ctx)
            if "updated" in where:
                perturb([again_layer], ctx.seed + 1)
            gw = torch.randn(generic.shape, generator=gen, dtype=torch.float64)
            again = _statuses(again_layer, generic, ctx, gw)
            for d, idx in zero.items():
                for i in idx:
                    states[d][i] = again[d][i]
                    if again[d][i] == "ok":
                        notes.append(f"{labels[i]} ({d}) is zero or missing at this x, not "
                                     f"at {where}")
        problems = []
        words = {"none": "no gradient (also at a Gaussian input and updated parameters)",
                 "nonfinite": "a non-finite gradient",
                 "zero": "an all-zero gradient (also at a Gaussian input and updated "
                         "parameters)"}
        for d, v in states.items():
            for kind, text in words.items():
                bad = [labels[i] for i, s in enumerate(v) if s == kind]
                if bad:
                    problems.append(f"through the {d}: {', '.join(bad)} get {text}")
        example = {"x": x, "parameters": labels,
                   "status": {d: dict(zip(labels, v, strict=True)) for d, v in states.items()}}
        if problems:
            return Probe(ok=False, message="; ".join(problems), example=example)
        retried.update(notes)
        return Probe(ok=True, message=f"{len(labels)} parameters reached both ways")

    def snippet(x: np.ndarray) -> str:
        return (f"from invlin.validate.checks.backprop import parameter_names\n"
                f"x = {tensor_literal(x, ctx.dtype)}\n"
                "params, names = adapter.parameters(), parameter_names(adapter)\n"
                "y, ladj = adapter.forward(x)\n"
                "grads = torch.autograd.grad(y.sum() + ladj.sum(), params, allow_unused=True)\n"
                "print('forward:', {k: None if g is None else float(g.abs().max())\n"
                "                   for k, g in zip(names, grads)})\n"
                "x_back, ladj_inv = adapter.inverse(y.detach().clone())\n"
                "loss = x_back.sum() + ladj_inv.sum()\n"
                "grads = torch.autograd.grad(loss, params, allow_unused=True) \\\n"
                "    if loss.requires_grad else [None] * len(params)\n"
                "print('inverse:', {k: None if g is None else float(g.abs().max())\n"
                "                   for k, g in zip(names, grads)})")

    strategy = layer_inputs(n, dtype=ctx.dtype, domain=domain, max_batch=4)
    out = ctx.search(strategy, probe, snippet=snippet, share=0.05)
    res = result(name, ctx, out, f"gradients reach all {len(labels)} parameters both ways")
    if res.status == "pass" and retried:
        res.message += "; " + "; ".join(sorted(retried))
    return res
