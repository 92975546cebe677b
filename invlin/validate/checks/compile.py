"""Compile check (opt-in): ``torch.compile`` of forward and inverse equals eager, and follows a
parameter update.

The adapter's ``forward`` and ``inverse`` (each returning the value and its log|det|) are
compiled with ``torch.compile(backend="aot_eager")``: TorchDynamo captures the graph (graph
breaks are allowed: the values are what is judged) and AOTAutograd traces and functionalises
it, where the compile-only bugs of flow layers sit; the graph then runs on the eager kernels,
so no C compiler is needed and a layer compiles in seconds on the CPU (inductor would add code
generation, minutes on a loaded CPU, and its own fused rounding).

Compared, on a batch of :data:`ROWS`: the compiled forward (y, log|det|) and inverse
(x, log|det|) with an eager copy of the layer taken before any call; then every trainable
parameter is changed in place under ``no_grad`` (:func:`perturb`, an optimizer step) on both,
and the compiled functions, called again, must equal the eager copy's new values — a compiled
graph that captured a parameter's value as a constant, or a layer that caches a value at its
first call, keeps the old map. Bound: the engine's, for two evaluations of one map (y within
ε(κ‖y‖ + ‖J‖‖x‖), x within ε(κ‖x‖ + ‖J⁻¹‖‖y‖), log|det| within n·κ_eff·ε; ratio ≤ THRESHOLD):
AOTAutograd's decompositions may reorder operations. An exception from compiling or running
the compiled function is a failure with the error. Skipped where torch.compile is not
available (no ``torch.compile``, or TorchDynamo unsupported on this Python).
"""

from __future__ import annotations

import copy

import torch

from invlin._errors import error_summary
from invlin.validate.checks.agreement import Agreement, Bounds, Evaluation
from invlin.validate.checks.base import (
    CheckContext,
    Make,
    fresh,
    move,
    result,
    skipped,
    tensor,
)
from invlin.validate.checks.truth import local
from invlin.validate.perturbation import perturb, standard_inputs
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe

__all__ = ["BACKEND", "ROWS", "compile_available", "compiled"]

#: The torch.compile backend (see the module docstring for why not inductor).
BACKEND = "aot_eager"
#: Rows of the compared batch.
ROWS = 8
#: Share of the profile's examples: one case in dev and ci (compiling forward and inverse costs
#: seconds; a second batch through the same graphs adds little), more in thorough.
_SHARE = 0.002


def compile_available() -> str | None:
    """Why torch.compile cannot be used here, or ``None``."""
    if not callable(getattr(torch, "compile", None)):
        return "torch.compile is not available in this torch"
    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # an install without dynamo
        return f"TorchDynamo cannot be imported: {type(exc).__name__}: {exc}"
    if not dynamo.is_dynamo_supported():
        return "TorchDynamo is not supported on this Python"
    return None


def compiled(make: Make, ctx: CheckContext) -> CheckResult:
    """``torch.compile`` (backend :data:`BACKEND`) of forward and inverse equals an eager
    copy, before and after an in-place parameter update (module docstring: bounds)."""
    name = "compile"
    reason = compile_available()
    if reason is not None:
        return skipped(name, ctx, reason)
    import torch._dynamo as dynamo

    n = ctx.features
    domain = fresh(make, ctx).domain()

    def probe(seed: int) -> Probe:
        agree = Agreement(ctx.dtype, n)
        tested = fresh(make, ctx)
        # never called: each stage's eager truth is a fresh copy of it (no cache carried over)
        spare = copy.deepcopy(tested)
        ref = move(copy.deepcopy(tested), torch.float64, "cpu")
        x = standard_inputs(n, ROWS, seed=seed, dtype=ctx.dtype, domain=domain)
        has_params = bool(tested.parameters())
        dynamo.reset()
        try:
            fwd = torch.compile(tested.forward, backend=BACKEND)
            inv = torch.compile(tested.inverse, backend=BACKEND)
            for stage in ("before", "after"):
                if stage == "after":
                    if not has_params:
                        agree.note("no trainable parameters: no update to follow")
                        break
                    perturb([tested, spare, ref], seed + 1)
                eager = copy.deepcopy(spare)
                bounds = Bounds.at(local(ref, x), x, n)
                ye, le = eager.forward(tensor(x, ctx))
                y_in = ye.detach().clone()
                xe, lie = eager.inverse(y_in.clone())
                try:
                    yc, lc = fwd(tensor(x, ctx))
                    xc, lic = inv(y_in.clone())
                except Exception as exc:
                    agree.fail(
                        f"the compiled layer raised {error_summary(exc)} ({stage} the update)"
                    )
                    break
                when = f"{stage} a parameter update" if has_params else "compiled"
                agree.same_map(
                    Evaluation(yc, lc, xc, lic),
                    Evaluation(ye, le, xe, lie),
                    bounds,
                    lambda part, when=when: f"compiled {part}, {when}",
                )
        finally:
            dynamo.reset()
        example = {"seed": seed, "x": x, "backend": BACKEND}
        return agree.probe(example, "the compiled layer differs from eager", "compiled = eager")

    def snippet(seed: int) -> str:
        return (
            "import copy\n"
            "from invlin.validate.perturbation import perturb, standard_inputs\n"
            "eager = copy.deepcopy(adapter)\n"
            f"fwd = torch.compile(adapter.forward, backend={BACKEND!r})\n"
            f"inv = torch.compile(adapter.inverse, backend={BACKEND!r})\n"
            f"x = torch.as_tensor(standard_inputs({n}, {ROWS}, seed={seed}, dtype={ctx.dtype!r}, "
            f"domain=adapter.domain()), dtype=torch.{ctx.dtype})\n"
            "y = eager.forward(x)[0].detach()\n"
            "print('before:', (fwd(x)[0] - y).abs().max(), "
            "(inv(y.clone())[0] - eager.inverse(y.clone())[0]).abs().max())\n"
            f"perturb([adapter, eager], {seed + 1})  # an optimizer step, in place\n"
            "print('after:', (fwd(x)[0] - eager.forward(x)[0]).abs().max())"
        )

    out = ctx.search_seeds(
        probe,
        stride=11,
        share=_SHARE,
        snippet=snippet,
        describe=lambda s: {"seed": s, "backend": BACKEND},
    )
    return result(
        name,
        ctx,
        out,
        f"torch.compile (backend {BACKEND}) of forward and inverse equals eager, "
        "before and after an in-place parameter update",
    )
