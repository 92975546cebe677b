"""What every check shares: its context, fresh and float64 copies of the layer, its result."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from invlin._validation import positive_int
from invlin.search_profiles import profile_named
from invlin.testing import allowed_ratio
from invlin.validate.conditioning import context_features_value
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.results import CheckResult
from invlin.validate.search import LayerFault, Outcome, Probe, search

__all__ = [
    "ALLOWED",
    "CheckContext",
    "CheckFn",
    "Make",
    "ShapeMismatch",
    "batch_values",
    "fresh",
    "move",
    "numpy64",
    "pair",
    "result",
    "skipped",
    "supported",
    "tensor",
    "unjudged",
]

#: Allowed ratio of every comparison the checks make: a fresh computation, no tracked updates.
ALLOWED: float = allowed_ratio(0)

Make = Callable[[], Adapter]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class CheckContext:
    """Where and how hard one check runs.

    ``dtype`` ("float64"/"float32") and ``device`` ("cpu", "cuda", ...) the layer is moved to;
    ``profile`` (dev/ci/thorough) the search effort, ``max_examples`` overriding the profile's
    example count; ``seed`` seeds the search (outside ci) and the checks' random draws;
    ``features`` the layer's n; ``setup`` Python source that defines ``adapter`` (the layer as
    the check saw it) for the reproduction snippets; ``replay`` cases every search of the
    check tries first (a failing case of another dtype, replayed here; see
    :mod:`invlin.validate.verdicts`); ``context_features`` the layer's M (0: unconditional;
    see :mod:`invlin.validate.conditioning`); ``flow_part`` whether the layer is an inner
    transform of a whole flow (which may ignore a context the flow as a whole uses).
    """

    dtype: str = "float64"
    device: str = "cpu"
    profile: str = "ci"
    max_examples: int | None = None
    seed: int = 0
    features: int = 4
    setup: str = ""
    replay: tuple[Any, ...] = ()
    context_features: int = 0
    flow_part: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        profile_named(self.profile)
        if self.max_examples is not None:
            positive_int(self.max_examples, "max_examples")
        positive_int(self.features, "features")
        context_features_value(self.context_features)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of :attr:`dtype`."""
        return _DTYPES[self.dtype]

    def examples(self, share: float = 1.0, minimum: int = 2) -> int:
        """Examples for a check that needs ``share`` of the profile's count (at least
        ``minimum``)."""
        total = self.max_examples or profile_named(self.profile).max_examples
        return max(minimum, round(total * share))

    def search(
        self,
        strategy: Any,
        probe: Callable[[Any], Probe],
        *,
        snippet: Callable[[Any], str] | None = None,
        share: float = 1.0,
        minimum: int = 2,
        describe: Callable[[Any], dict[str, Any]] | None = None,
        explicit: Iterable[Any] = (),
    ) -> Outcome:
        """:func:`invlin.validate.search.search` with this context's profile, seed and
        :meth:`examples` (``share``, ``minimum``); cases are described as ``{"x": case}``
        unless ``describe`` is given; ``explicit`` cases run first."""
        return search(
            strategy,
            probe,
            profile=self.profile,
            max_examples=self.examples(share, minimum=minimum),
            seed=self.seed,
            describe=describe or (lambda x: {"x": x}),
            snippet=snippet,
            explicit=(*self.replay, *explicit),
        )

    def search_seeds(
        self,
        probe: Callable[[int], Probe],
        *,
        stride: int,
        share: float,
        snippet: Callable[[int], str] | None = None,
        describe: Callable[[int], dict[str, Any]] | None = None,
    ) -> Outcome:
        """:meth:`search` over whole seeded scenarios: the cases are the seeds
        ``seed + stride·k`` for k < :meth:`examples` (``share``, at least one), each drawing
        its own inputs; cases are described as ``{"seed": s}`` unless ``describe`` is given."""
        seeds = [self.seed + stride * k for k in range(self.examples(share, minimum=1))]
        return self.search(
            st.sampled_from(seeds),
            probe,
            snippet=snippet,
            share=share,
            minimum=1,
            describe=describe or (lambda s: {"seed": s}),
        )

    def repro(self, lines: str) -> str:
        """:attr:`setup` followed by ``lines``: a runnable script."""
        return f"{self.setup.rstrip()}\n{lines.strip()}" if self.setup else lines.strip()


CheckFn = Callable[[Make, CheckContext], CheckResult]


def move(adapter: Adapter, dtype: torch.dtype, device: str) -> Adapter:
    """``adapter.to(dtype=, device=)``; a layer that cannot be moved but holds no trainable
    parameters (a plain function of its input) is used as it is, so the input's dtype and
    device decide. Raises :class:`Unsupported` (the check is skipped) for a layer with
    parameters that cannot be moved."""
    try:
        adapter.to(dtype=dtype, device=device)
    except Unsupported:
        if adapter.parameters():
            raise
    return adapter


def fresh(make: Make, ctx: CheckContext) -> Adapter:
    """A new adapter from ``make``, moved to the context's dtype and device (:func:`move`)."""
    return move(make(), ctx.torch_dtype, ctx.device)


def _float64_copy(base: Adapter, make: Make) -> Adapter:
    try:
        ref = copy.deepcopy(base)
    except Exception:  # not deep-copyable: the seeded factory builds the same layer again
        ref = make()
    return move(ref, torch.float64, "cpu")


def pair(make: Make, ctx: CheckContext) -> tuple[Adapter, Adapter]:
    """``(tested, reference)``: the layer in the context's dtype/device and a float64 CPU copy.

    The copy is taken before either is called (no caches, no data-dependent initialisation
    carried over). float32 parameters are exact in float64, so the reference computes the very
    function the float32 layer stands for, with float64 rounding. Raises :class:`Unsupported`
    when the layer cannot be moved.
    """
    base = make()
    ref = _float64_copy(base, make)
    return move(base, ctx.torch_dtype, ctx.device), ref


def tensor(a: np.ndarray, ctx: CheckContext) -> torch.Tensor:
    """``a`` as a tensor in the context's dtype and device."""
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(ctx.device, ctx.torch_dtype)


def numpy64(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 NumPy array (detached, on the CPU)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(t).__name__}")
    return t.detach().to("cpu", torch.float64).numpy()


class ShapeMismatch(LayerFault):
    """A layer returned an output of the wrong shape (a failed check, not an error)."""


def batch_values(t: torch.Tensor, batch: tuple[int, ...], what: str) -> np.ndarray:
    """``t`` (a log|det|) as float64 of ``batch`` shape; a one-element value (some libraries
    return one log|det| for a batch-independent layer) is broadcast so that its *value* can be
    judged — the batch-shape check alone reports the shape.

    Raises :class:`ShapeMismatch` naming ``what`` for any other shape.
    """
    if tuple(t.shape) == tuple(batch):
        return numpy64(t)
    if t.numel() == 1:
        return np.broadcast_to(numpy64(t).reshape(()), tuple(batch)).copy()
    raise ShapeMismatch(
        f"{what} has shape {tuple(t.shape)}, expected the batch shape {tuple(batch)}"
    )


def skipped(name: str, ctx: CheckContext, reason: str) -> CheckResult:
    """A ``skip`` result with ``reason``."""
    return CheckResult(
        check=name, dtype=ctx.dtype, device=ctx.device, status="skip", message=reason
    )


def unjudged(name: str, ctx: CheckContext, reason: str) -> CheckResult:
    """An ``insufficient`` result: the check could judge nothing, for ``reason`` (not the
    layer's fault, e.g. an oracle evaluation refused by its work budget)."""
    return CheckResult(
        check=name, dtype=ctx.dtype, device=ctx.device, status="insufficient", message=reason
    )


def result(name: str, ctx: CheckContext, out: Outcome, passed: str) -> CheckResult:
    """The :class:`CheckResult` of a search: error (the layer raised), fail, pass with
    ``passed`` (and the worst case's message) as its message, or ``insufficient`` when the
    search judged no case at all (:attr:`Outcome.judged` is 0)."""
    notes = "; ".join(out.notes)
    if out.failure is not None:
        f = out.failure
        status = "error" if out.raised is not None else "fail"
        msg = f.message + (f" ({notes})" if notes else "")
        return CheckResult(
            check=name,
            dtype=ctx.dtype,
            device=ctx.device,
            status=status,
            ratio=f.ratio,
            allowed=f.allowed
            if f.allowed is not None
            else (ALLOWED if f.ratio is not None else None),
            message=msg,
            example=f.example,
            repro=ctx.repro(f.repro) if f.repro else None,
            exception=out.raised,
            cases=out.judged + 1,
        )
    worst = out.worst
    if out.judged == 0:
        why = f": {out.unjudged}" if out.unjudged else ""
        return CheckResult(
            check=name,
            dtype=ctx.dtype,
            device=ctx.device,
            status="insufficient",
            cases=0,
            message=f"judged no case in {out.examples} tried{why}"
            + (f" ({notes})" if notes else ""),
        )
    msg = f"{passed}; {out.judged} cases judged"
    if worst is not None and worst.message:
        msg += f"; worst: {worst.message}"
    if notes:
        msg += f" ({notes})"
    return CheckResult(
        check=name,
        dtype=ctx.dtype,
        device=ctx.device,
        status="pass",
        ratio=None if worst is None else worst.ratio,
        allowed=None if worst is None else worst.allowed,
        message=msg,
        cases=out.judged,
    )


def supported(fn: Callable[[], object]) -> str | None:
    """Call ``fn``; the reason when it raises :class:`Unsupported`, else ``None``."""
    try:
        fn()
    except Unsupported as exc:
        return str(exc) or type(exc).__name__
    return None
