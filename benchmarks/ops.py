"""Tensor operations per call, counted rather than timed: the same on every run and machine."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from invlin.nn import P4InvLinear, p4_ops

try:
    from invlin.nn import cached_products
except ImportError:  # code before cached_products() (a `before` run): its rows are left out
    cached_products = None

__all__ = ["OpCount", "count_ops", "device_form", "ops_rows"]

_aten = torch.ops.aten
# Allocations without a kernel, and reads of a value on the host (a device sync off the CPU).
_FREE = {_aten.empty.memory_format, _aten.empty_strided.default, _aten.empty_like.default}
_READS = {_aten._local_scalar_dense.default, _aten.equal.default, _aten.is_nonzero.default}


class OpCount(TorchDispatchMode):
    """Counts the ATen operations dispatched while active: ``kernels`` (operations that
    compute: one kernel launch each on a GPU), ``free`` (views and bare allocations) and
    ``reads`` (a value read on the host: a device-to-host wait on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = self.free = self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if func in _READS:
            self.reads += 1
        elif func in _FREE or _is_view(func):
            self.free += 1
        else:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


class _BulkReads(TorchFunctionMode):
    """Counts reads that copy a whole tensor to the host without dispatching an operation
    (``Tensor.tolist``, ``Tensor.numpy``): invisible to :class:`OpCount`, a device wait all the
    same."""

    def __init__(self, count: OpCount) -> None:
        super().__init__()
        self.count = count

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if func in (torch.Tensor.tolist, torch.Tensor.numpy):
            self.count.reads += 1
        return func(*args, **(kwargs or {}))


def _is_view(func: torch._ops.OpOverload) -> bool:
    """Views (outputs alias an input, nothing written) and in-place metadata changes."""
    if torch.Tag.inplace_view in func.tags:  # squeeze_, t_, as_strided_, ...
        return True
    rets = func._schema.returns
    return bool(rets) and all(r.alias_info is not None and not r.alias_info.is_write for r in rets)


def count_ops(fn: Callable[[], object]) -> dict[str, int]:
    """The operations one call of ``fn`` dispatches (autograd's backward included when ``fn``
    runs one: on the CPU the engine runs it on the calling thread)."""
    with OpCount() as count, _BulkReads(count):
        fn()
    return {"kernels": count.kernels, "free": count.free, "reads": count.reads}


@contextlib.contextmanager
def device_form(enabled: bool = True) -> Iterator[None]:
    """P4InvLinear in the form it takes off the CPU (0-dim tensor scalars, no product cache, one
    gathered read per merge), forced on the CPU: its counts are the GPU's kernel launches."""
    forced = getattr(p4_ops, "device_form", None)
    if forced is not None:  # this code's own switch
        with forced() if enabled else contextlib.nullcontext():
            yield
        return
    saved = p4_ops._host  # code from before device_form() (a `before` run)
    if enabled:
        p4_ops._host = lambda t: False
    try:
        yield
    finally:
        p4_ops._host = saved


def _in_cached_products(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with cached_products():
            return fn()

    return call


def ops_rows(
    sizes: list[int], *, device: str, dtype: torch.dtype, batch: int
) -> list[dict[str, object]]:
    """Operations per call of nn.Linear and of P4InvLinear (forward/inverse, repeated calls and
    with u changed before every call; autograd on) and per training step of the two flows, in
    the form the device runs and — on the CPU — also in the form a GPU runs."""
    from benchmarks.layers import _p4
    from benchmarks.training import _step_fn

    rows: list[dict[str, object]] = []
    forms = ["host", "device"] if torch.device(device).type == "cpu" else ["device"]
    for n in sizes:
        for form in forms:
            with device_form(form == "device" and torch.device(device).type == "cpu"):
                torch.manual_seed(n)
                x = torch.randn(batch, n, device=device, dtype=dtype)
                lin = torch.nn.Linear(n, n, device=device, dtype=dtype).train()
                p4 = _p4(n, device, dtype, seed=n)
                y = p4(x)[0].detach()

                def perturb(p4: P4InvLinear = p4, step: float = 1e-4 / math.sqrt(n)) -> None:
                    with torch.no_grad():
                        p4.u.add_(step)

                items: dict[str, Callable[[], object]] = {
                    "nn.Linear forward": lambda lin=lin, x=x: lin(x),
                    "P4InvLinear forward": lambda p4=p4, x=x: p4(x),
                    "P4InvLinear inverse": lambda p4=p4, y=y: p4.inverse(y),
                    "P4InvLinear forward, u changed": lambda p4=p4, x=x: (perturb(), p4(x)),
                    "P4InvLinear inverse, u changed": lambda p4=p4, y=y: (perturb(), p4.inverse(y)),
                }
                # Adam as a GPU runs it by default in the device form: multi-tensor (foreach)
                foreach = True if form == "device" else None
                for kind in ("linear", "p4"):
                    step, _ = _step_fn(kind, n, 4, x, device, dtype, foreach=foreach)
                    name = "nn.Linear" if kind == "linear" else "P4Inv"
                    items[f"training step, 4-layer {name} flow"] = step
                if cached_products is not None:
                    # the same calls inside cached_products(): products kept on every device
                    step, _ = _step_fn("p4", n, 4, x, device, dtype, foreach=foreach)
                    for item, fn in (
                        ("P4InvLinear forward", items["P4InvLinear forward"]),
                        ("P4InvLinear inverse", items["P4InvLinear inverse"]),
                        ("training step, 4-layer P4Inv flow", step),
                    ):
                        items[f"{item}, cached_products()"] = _in_cached_products(fn)
                for item, fn in items.items():
                    with torch.enable_grad():
                        for _ in range(2):  # warm: caches filled, optimizer state made
                            fn()
                        counts = count_ops(fn)
                    if "u changed" in item:  # the in-place change itself is not the layer's
                        counts["kernels"] -= 1
                    rows.append(
                        {
                            "case": "ops_per_call",
                            "item": item,
                            "n": n,
                            "dtype": str(dtype).removeprefix("torch."),
                            "device": device,
                            "form": form,
                            **counts,
                        }
                    )
    return rows
