"""Cache of a P4InvLinear's perturbation products (W, M, Xu, c, log|det|) between calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from invlin.nn import p4_ops

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


class ProductCache:
    """Keeps the O(n²) products of one P4InvLinear call for the next call with the same values.

    An entry is keyed by the compute dtype and direction and is valid only while

    * the state tensors (A, X, log|det A|) are the very objects it was made from, at the same
      data pointers and versions (every in-place change through them bumps the version);
    * u and v are the very parameter objects it was made from, at the same versions (an
      optimizer step bumps them: the entry is passed over without reading any value), **and equal,
      entry by entry, to the copies taken then** — O(n) compares, so changes that bypass version
      counters (writes through ``.data``, as torch.autograd.gradcheck makes) cannot leave it
      stale.

    The compares read u and v on the host, so outside :func:`cached_products` the cache is
    used for CPU tensors only (``p4_ops._host``; on a GPU each call would wait for the device).
    Inside it, entries are used on every device and checked by identity, data pointer and
    version alone (no snapshot is taken then; an entry without one is never used outside). It
    holds one entry per (direction, dtype): for n = 1024 in float32, 4 MiB for W plus 4 MiB for
    M. Cleared by :meth:`clear`.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple] = {}

    def clear(self) -> None:
        """Drop every entry."""
        self._entries = {}

    @staticmethod
    def usable(*tensors: torch.Tensor) -> bool:
        """Whether entries may be used for these tensors: outside functorch transforms and
        torch.compile's tracing, on the CPU or inside :func:`cached_products`."""
        if p4_ops._tracing():
            return False
        if _TRUSTED[0]:
            return True
        for t in tensors:
            if not p4_ops._host(t):
                return False
        return True

    def get(
        self,
        kind: str,
        dtype: torch.dtype,
        state: Sequence[torch.Tensor],
        u: torch.Tensor,
        v: torch.Tensor,
    ) -> Any:
        """The products stored for ``kind`` and ``dtype`` if still valid, else None."""
        entry = self._entries.get((kind, dtype))
        if entry is None:
            return None
        # A plain loop: this runs on every call, where generator expressions cost microseconds.
        refs, pu, pv, key, u0, v0, value = entry
        if pu is not u or pv is not v or len(refs) != len(state):
            return None
        i = 0
        for t in state:
            if t is not refs[i] or t._version != key[2 * i] or t.data_ptr() != key[2 * i + 1]:
                return None
            i += 1
        if (
            u._version != key[-4]
            or v._version != key[-3]
            or u.data_ptr() != key[-2]
            or v.data_ptr() != key[-1]
        ):
            return None
        if _TRUSTED[0]:
            return value
        if u0 is None or not (torch.equal(u, u0) and torch.equal(v, v0)):
            return None
        return value

    def put(
        self,
        kind: str,
        dtype: torch.dtype,
        state: Sequence[torch.Tensor],
        u: torch.Tensor,
        v: torch.Tensor,
        value: Any,
    ) -> None:
        """Store ``value`` for ``kind`` and ``dtype`` as computed from these tensors."""
        key: list[int] = []
        for t in state:
            key += (t._version, t.data_ptr())
        key += (u._version, v._version, u.data_ptr(), v.data_ptr())
        if _TRUSTED[0]:  # versions alone: no copy
            u0 = v0 = None
        else:
            with p4_ops._NoGrad():  # copies without autograd (cheaper than detach)
                if u.dtype == v.dtype:  # one copy for both snapshots
                    u0, v0 = torch.stack((u, v)).unbind()
                else:
                    u0, v0 = u.clone(), v.clone()
        self._entries[(kind, dtype)] = (tuple(state), u, v, tuple(key), u0, v0, value)

    def find(
        self, kinds: Sequence[str], state: Sequence[torch.Tensor], u: torch.Tensor, v: torch.Tensor
    ) -> Any:
        """The first valid stored products of any of ``kinds`` (any dtype), else None."""
        for kind, dtype in list(self._entries):
            if kind in kinds:
                value = self.get(kind, dtype, state, u, v)
                if value is not None:
                    return value
        return None
