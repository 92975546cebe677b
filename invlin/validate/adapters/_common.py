"""Helpers shared by the adapters: class lookup without imports, batch flattening, LU fitting."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from invlin.validate.protocol import Unsupported

__all__ = [
    "admissible_lu",
    "check_pair",
    "flat_call",
    "flat_context",
    "lookup",
    "lu_nopivot",
    "move_tensors",
    "square",
    "sum_event",
]


def lookup(module: str, name: str) -> type | None:
    """The class ``module.name`` if ``module`` is already imported, else ``None``.

    Nothing is imported: a layer of a library can only exist once that library's module has been
    imported, so a missing entry of ``sys.modules`` means "not this library".
    """
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) else None


def check_pair(out: Any, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``out`` as ``(tensor, tensor)``; TypeError naming ``who`` when it is anything else."""
    if (
        not isinstance(out, (tuple, list))
        or len(out) != 2
        or not all(isinstance(t, torch.Tensor) for t in out)
    ):
        kind = type(out).__name__
        size = f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
        raise TypeError(f"{who} must return (tensor, log|det| tensor), got a {kind}{size}")
    return out[0], out[1]


def flat_call(
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    features: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``fn`` (a map on ``(B, features)`` batches) on ``x`` of shape ``(*batch, features)``.

    Libraries whose layers take exactly one leading batch dimension (nflows, normflows, FrEIA)
    see ``x`` reshaped to ``(B, features)``; the output is reshaped back, and log|det| is
    reshaped to ``batch`` only when the library returned exactly ``(B,)`` — any other shape is
    returned untouched so that the shape check sees the library's own answer. A 2-D ``x`` goes
    through unchanged (the same tensor), so the layer's own batch handling is what the checks
    exercise on ``(B, n)`` batches.

    Flattening is required, not a convenience: those libraries read every axis after the first
    as an *event* axis (image channels and pixels), so given ``(B₁, B₂, n)`` nflows' LULinear
    returns one log|det| per B₁ and most coupling layers raise.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != features:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (*batch, {features}), got {shape}")
    if x.ndim == 2:
        return fn(x)
    batch = x.shape[:-1]
    y, ld = fn(x.reshape(-1, features))
    b = y.shape[0]
    y = y.reshape(*batch, features) if y.numel() == x.numel() else y
    if ld.shape == (b,):
        ld = ld.reshape(batch)
    return y, ld


def flat_context(context: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``context`` (``(M,)`` or ``(*batch, M)``, from :meth:`Adapter.context_for`) as the
    ``(B, M)`` tensor that goes with :func:`flat_call`'s ``(B, features)`` view of ``x``.

    For the libraries with one leading batch dimension and no broadcasting of a context (nflows,
    normflows, FrEIA): a single ``(M,)`` context is repeated for every row.
    """
    if context is None:
        return None
    m = context.shape[-1]
    return context.expand(*x.shape[:-1], m).reshape(-1, m)


def sum_event(ld: torch.Tensor, x: torch.Tensor, event_dim: int) -> torch.Tensor:
    """Sum an elementwise log|det| (``event_dim`` 0) over the features axis.

    torch's convention lets an elementwise log|det| have any shape that broadcasts to x's
    (``TransformedDistribution`` adds it with broadcasting), e.g. ``(features,)`` when it does
    not depend on x: it is broadcast to ``x.shape`` and summed over the last axis. ``event_dim``
    ≥ 1 values, and values that do not broadcast, are returned unchanged (the shape check
    reports them).
    """
    if event_dim != 0:
        return ld
    try:
        full = ld.expand(x.shape)
    except RuntimeError:
        return ld
    return full.sum(-1)


def move_tensors(obj: Any, *, dtype: torch.dtype | None, device: Any, seen: set[int]) -> None:
    """Move the tensor attributes of a non-Module object (and of its parts) in place.

    Floating tensors get ``dtype`` and ``device``, other tensors only ``device``; list and tuple
    attributes (e.g. the parts of a ``ComposeTransform``) and nested objects are visited, the
    cached inverse ``_inv`` is not.
    """
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        obj.to(dtype=dtype, device=device)
        return
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return
    for key, value in list(attrs.items()):
        if isinstance(value, torch.Tensor):  # indices move device but keep their dtype
            cast = dtype if value.is_floating_point() else None
            attrs[key] = value.to(dtype=cast, device=device)
        elif isinstance(value, (list, tuple)):
            for part in value:
                move_tensors(part, dtype=dtype, device=device, seen=seen)
        elif hasattr(value, "__dict__") and not isinstance(value, type) and key != "_inv":
            move_tensors(value, dtype=dtype, device=device, seen=seen)


def lu_nopivot(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, U) with ``w = L U``, L unit lower, from an LU whose partial pivoting swaps no rows.

    Raises :class:`Unsupported` when partial pivoting would swap rows (the layer has no
    permutation to hold it; :func:`admissible_lu` gives an equivalent matrix that needs none).
    """
    p, lower, upper = torch.linalg.lu(w)
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    if not torch.equal(p, eye):
        raise Unsupported(
            "w needs row pivoting for its LU and the layer holds no permutation; "
            "pass admissible(w) (rows permuted, same singular values)"
        )
    return lower, upper


def admissible_lu(w: torch.Tensor, *, positive_diagonal: bool = False) -> torch.Tensor:
    """Pᵀ w D: the rows of ``w`` in partial-pivoting order, columns signed so diag(U) > 0.

    Permuting rows and flipping column signs are orthogonal maps: the result has the singular
    values, κ₁, κ₂ and |det| of ``w``, and its LU needs no pivoting (the pivots are those partial
    pivoting chose for ``w``, so |L| ≤ 1). ``positive_diagonal`` makes every pivot positive, as
    a softplus-parameterised diagonal requires.
    """
    p, _, upper = torch.linalg.lu(w)
    out = p.mT @ w
    if positive_diagonal:
        signs = torch.where(torch.diagonal(upper) < 0, -1.0, 1.0).to(w.dtype)
        out = out * signs
    return out


def square(w: torch.Tensor, n: int) -> torch.Tensor:
    """``w`` detached as a finite floating (n, n) tensor; ValueError naming ``w`` otherwise."""
    if not isinstance(w, torch.Tensor):
        w = torch.as_tensor(w)
    if w.shape != (n, n) or not w.is_floating_point():
        raise ValueError(f"w must be a floating ({n}, {n}) matrix, got {w.dtype} {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w must be finite")
    return w.detach()
