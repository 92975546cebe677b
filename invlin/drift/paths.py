"""Exact matrices of the update paths of several tracks that may refuse different updates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from invlin.oracle import ExactMatrix

__all__ = ["PathBook"]


class PathBook:
    """The exact matrix A₀ + Σ_{merged k} u_k v_kᵀ of each track, shared between tracks that
    merged the same updates.

    A path is identified by the tuple of update indices its tracks refused; tracks with the same
    tuple share one :class:`ExactMatrix`, so the common case (every track merges everything) costs
    one exact update per step whatever the number of tracks.
    """

    def __init__(self, a0: ExactMatrix, tracks: int):
        if tracks < 1:
            raise ValueError(f"tracks must be positive, got {tracks}")
        self._paths: dict[tuple[int, ...], ExactMatrix] = {(): a0.copy()}
        self._keys: list[tuple[int, ...]] = [()] * tracks

    def advance(self, step: int, u: np.ndarray, v: np.ndarray, merged: Sequence[bool]) -> None:
        """Record update ``step`` (u, v: (n,) floats), merged by the tracks flagged in
        ``merged``."""
        if len(merged) != len(self._keys):
            raise ValueError(
                f"merged must have one flag per track ({len(self._keys)}), got {len(merged)}"
            )
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, key in enumerate(self._keys):
            groups.setdefault(key, []).append(i)
        paths: dict[tuple[int, ...], ExactMatrix] = {}
        for key, members in groups.items():
            m = self._paths[key]
            took = [i for i in members if merged[i]]
            left = [i for i in members if not merged[i]]
            if left:
                refused = (*key, step)
                paths[refused] = m.copy() if took else m
                for i in left:
                    self._keys[i] = refused
            if took:
                m.apply(u, v)
                paths[key] = m
        self._paths = paths

    def key(self, track: int) -> tuple[int, ...]:
        """The refused-update tuple identifying ``track``'s path."""
        return self._keys[track]

    def matrix(self, track: int) -> ExactMatrix:
        """The exact matrix of ``track``'s path (shared: do not modify)."""
        return self._paths[self._keys[track]]
