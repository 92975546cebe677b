"""Cache of a P4InvLinear's :class:`~invlin.nn.p4_ops.Products` between calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from invlin.nn.p4_ops import NoGrad, Products, on_host, tracing

__all__ = ["ProductCache", "Snapshot", "cached_products"]

# Depth of nested cached_products() contexts (process-wide, as torch.nn.utils.parametrize.cached).
_TRUSTED = [0]


@contextlib.contextmanager
def cached_products() -> Iterator[None]:
    """Within this context P4InvLinear layers on every device keep their O(n²) products between
    calls (see :class:`ProductCache`), checked by version counters alone: no value is read on
    the host, so a repeated call with unchanged u, v and state is one matrix product plus
    O(batch·n) work. A write through ``.data`` (``layer.u.data.copy_(t)``) keeps the version
    and is not seen: do not write parameters that way inside. Process-wide while any thread is
    inside, as ``torch.nn.utils.parametrize.cached()``.

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


class Snapshot(NamedTuple):
    """Tensors and the version and data pointer of each when taken (:meth:`of`)."""

    tensors: tuple[torch.Tensor, ...]
    stamp: list[int]

    @classmethod
    def of(cls, *tensors: torch.Tensor) -> Snapshot:
        return cls(tensors, _stamp(tensors))

    def holds(self, *tensors: torch.Tensor) -> bool:
        """Whether ``tensors`` are the very objects taken, at the same data pointers and
        versions: unchanged by any in-place operation since (writes through ``.data`` keep the
        version and are not seen)."""
        for t, made in zip(tensors, self.tensors, strict=True):  # (always as many)
            if t is not made:
                return False
        return _stamp(tensors) == self.stamp


@dataclass(slots=True)
class _Entry:
    """Products, a :class:`Snapshot` of what they were made from (state, then u and v) and
    copies of u and v (None inside :func:`cached_products`, where versions alone are trusted)."""

    made_from: Snapshot
    u_copy: torch.Tensor | None
    v_copy: torch.Tensor | None
    products: Products


class ProductCache:
    """Keeps the O(n²) products of one P4InvLinear call for the next call with the same values.

    One entry per direction (``"forward"``/``"inverse"``) and compute dtype, valid while the
    state (A, X, log|det A|), u and v are the very tensors it was made from, unchanged in place
    (:class:`Snapshot`), **and** u and v equal, entry by entry, the copies taken then: O(n)
    compares, so writes that bypass version counters (through ``.data``, as
    torch.autograd.gradcheck makes) cannot leave it stale. The compares read u and v on the
    host, so outside :func:`cached_products` the cache is used in the host form only
    (:func:`~invlin.nn.p4_ops.on_host`); inside it, on every device, by snapshot alone (no copy
    is taken; an entry without one is never used outside).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, torch.dtype], _Entry] = {}

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
        self, kind: str, dtype: torch.dtype | None, made_from: tuple[torch.Tensor, ...]
    ) -> Products | None:
        """The products stored for ``kind`` and ``dtype`` (None: any dtype) if made from
        ``made_from`` (the state, then u and v) as they are now, else None."""
        if dtype is None:
            found = (self.get(kind, dt, made_from) for k, dt in list(self._entries) if k == kind)
            return next((p for p in found if p is not None), None)
        e = self._entries.get((kind, dtype))
        if e is None or not e.made_from.holds(*made_from):
            return None
        if _TRUSTED[0]:
            return e.products
        u, v = made_from[-2:]
        if e.u_copy is None or not (torch.equal(u, e.u_copy) and torch.equal(v, e.v_copy)):
            return None
        return e.products

    def put(
        self, kind: str, dtype: torch.dtype, made_from: tuple[torch.Tensor, ...], products: Products
    ) -> None:
        """Store ``products`` for ``kind`` and ``dtype`` as made from ``made_from``."""
        u_copy = v_copy = None  # inside cached_products(): versions alone, no copy
        if not _TRUSTED[0]:
            u, v = made_from[-2:]
            with NoGrad():  # copies without autograd (cheaper than detach)
                if u.dtype == v.dtype:  # one copy for both
                    u_copy, v_copy = torch.stack((u, v)).unbind()
                else:
                    u_copy, v_copy = u.clone(), v.clone()
        self._entries[(kind, dtype)] = _Entry(Snapshot.of(*made_from), u_copy, v_copy, products)
