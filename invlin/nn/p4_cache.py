"""Cache of a P4InvLinear's :class:`~invlin.nn.p4_ops.Products` between calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from invlin.nn.p4_ops import NoGrad, Products, on_host, tracing

__all__ = ["ProductCache", "cached_products"]

# Depth of nested cached_products() contexts (process-wide, as torch.nn.utils.parametrize.cached).
_TRUSTED = [0]


@contextlib.contextmanager
def cached_products() -> Iterator[None]:
    """Within this context P4InvLinear layers on every device keep their O(n²) products between
    calls, checked by version counters alone: no value is read on the host, so on a GPU a
    repeated forward or inverse with unchanged u, v and state is one matrix product plus
    O(batch·n) work.

    Outside it, products are kept on the CPU only, where u and v are also compared entry by
    entry (see :class:`ProductCache`). Inside it, a change of u, v or the state is seen when
    made by a tensor operation (an optimizer step, ``copy_`` under ``torch.no_grad()``,
    :meth:`P4InvLinear.merge`, a replacement of the tensor), **not** when written in place
    through ``.data`` (``layer.u.data.copy_(t)`` keeps the version): do not write parameters
    that way inside the context. Entries hold up to two n×n matrices per layer in the compute
    dtype. The switch is process-wide, as ``torch.nn.utils.parametrize.cached()`` is: while any
    thread is inside, every thread's calls take this form.

    >>> from invlin.nn import P4InvLinear, cached_products
    >>> layer = P4InvLinear(4)
    >>> with cached_products():
    ...     y, ld = layer(torch.ones(8, 4))
    ...     x, _ = layer.inverse(y)
    >>> bool(torch.allclose(x, torch.ones(8, 4)))
    True
    """
    _TRUSTED[0] += 1
    try:
        yield
    finally:
        _TRUSTED[0] -= 1


def _stamp(tensors: Sequence[torch.Tensor]) -> list[int]:
    """Version and data pointer of each tensor (a plain loop: this runs on every call)."""
    out: list[int] = []
    for t in tensors:
        out += (t._version, t.data_ptr())
    return out


@dataclass(slots=True)
class _Entry:
    """Products and what they were made from: the tensors (state, then u and v), their
    :func:`_stamp` then, and copies of u and v (None inside :func:`cached_products`, where
    versions alone are trusted)."""

    made_from: tuple[torch.Tensor, ...]
    stamp: list[int]
    u_copy: torch.Tensor | None
    v_copy: torch.Tensor | None
    products: Products


class ProductCache:
    """Keeps the O(n²) products of one P4InvLinear call for the next call with the same values.

    An entry is keyed by the direction (``"forward"``/``"inverse"``) and compute dtype and is
    valid only while

    * the state tensors (A, X, log|det A|) are the very objects it was made from, at the same
      data pointers and versions (every in-place change through them bumps the version);
    * u and v are the very parameter objects it was made from, at the same versions (an
      optimizer step bumps them: the entry is passed over without reading any value), **and equal,
      entry by entry, to the copies taken then** — O(n) compares, so changes that bypass version
      counters (writes through ``.data``, as torch.autograd.gradcheck makes) cannot leave it
      stale.

    The compares read u and v on the host, so outside :func:`cached_products` the cache is
    used in the host form only (:func:`~invlin.nn.p4_ops.on_host`; on a GPU each call would wait
    for the device). Inside it, entries are used on every device and checked by identity, data
    pointer and version alone (no copy is taken then; an entry without one is never used
    outside). It holds one entry per (direction, dtype): for n = 1024 in float32, 4 MiB for W
    plus 4 MiB for M. Cleared by :meth:`clear`.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, torch.dtype], _Entry] = {}

    def clear(self) -> None:
        """Drop every entry."""
        self._entries = {}

    def products(self) -> tuple[Products, ...]:
        """The products held now (read-only: one per direction and dtype)."""
        return tuple(e.products for e in self._entries.values())

    @staticmethod
    def usable(*tensors: torch.Tensor) -> bool:
        """Whether entries may be used for these tensors: outside functorch transforms and
        torch.compile's tracing, in the host form or inside :func:`cached_products`."""
        if tracing():
            return False
        if _TRUSTED[0]:
            return True
        for t in tensors:
            if not on_host(t):
                return False
        return True

    def get(
        self,
        kind: str,
        dtype: torch.dtype,
        state: Sequence[torch.Tensor],
        u: torch.Tensor,
        v: torch.Tensor,
    ) -> Products | None:
        """The products stored for ``kind`` and ``dtype`` if still valid, else None."""
        e = self._entries.get((kind, dtype))
        if e is None:
            return None
        tensors = (*state, u, v)
        if len(tensors) != len(e.made_from):
            return None
        for t, made in zip(tensors, e.made_from, strict=True):
            if t is not made:
                return None
        if _stamp(tensors) != e.stamp:
            return None
        if _TRUSTED[0]:
            return e.products
        if e.u_copy is None or not (torch.equal(u, e.u_copy) and torch.equal(v, e.v_copy)):
            return None
        return e.products

    def put(
        self,
        kind: str,
        dtype: torch.dtype,
        state: Sequence[torch.Tensor],
        u: torch.Tensor,
        v: torch.Tensor,
        products: Products,
    ) -> None:
        """Store ``products`` for ``kind`` and ``dtype`` as computed from these tensors."""
        if _TRUSTED[0]:  # versions alone: no copy
            u_copy = v_copy = None
        else:
            with NoGrad():  # copies without autograd (cheaper than detach)
                if u.dtype == v.dtype:  # one copy for both
                    u_copy, v_copy = torch.stack((u, v)).unbind()
                else:
                    u_copy, v_copy = u.clone(), v.clone()
        tensors = (*state, u, v)
        self._entries[(kind, dtype)] = _Entry(tensors, _stamp(tensors), u_copy, v_copy, products)

    def find(
        self, kinds: Sequence[str], state: Sequence[torch.Tensor], u: torch.Tensor, v: torch.Tensor
    ) -> Products | None:
        """The first valid stored products of any of ``kinds`` (any dtype), else None."""
        for kind, dtype in list(self._entries):
            if kind in kinds:
                found = self.get(kind, dtype, state, u, v)
                if found is not None:
                    return found
        return None
