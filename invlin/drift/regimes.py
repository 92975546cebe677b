"""Update sequences for the three condition regimes: random walk, approach, sign-change crossing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from invlin._validation import positive_int
from invlin.drift.vocabulary import REGIMES

__all__ = ["REGIMES", "UpdateSequence", "cast_vectors", "generate"]


_DESCRIPTIONS = {
    "walk": "well-conditioned random walk (mean-reverting rank-one steps of size ≈ scale)",
    "approach": "random walk + steps shrinking the smallest singular value σₙ to √depth and "
    "growing the largest σ₁ by 1/√depth and back: κ grows by 1/depth while det "
    "stays put (an approach to the singular set the P4 det guard cannot see)",
    "crossing": "random walk + steps moving one singular value σ geometrically to ±depth and "
    "across zero to −1 (det → 0 and changes sign once, at `event`)",
}


@dataclass(frozen=True)
class UpdateSequence:
    """A planned sequence of rank-one updates A ← A + u_k v_kᵀ, k = 1..K (float64 plan).

    ``a0``: starting matrix (n, n), A₀ = Q diag(s) Rᵀ with s log-spaced in [½, 2];
    ``u``, ``v``: (K, n) update vectors; ``kind``: (K,) 0 for a random-walk step, 1 for a step of
    the controlled singular value; ``sigma``: (K,) planned signed value of the controlled singular
    value after each update (constant for the walk); ``event``: the update number (1-based) at the
    deepest point (approach) or at the sign change (crossing), ``None`` for the walk.
    """

    regime: str
    a0: np.ndarray
    u: np.ndarray
    v: np.ndarray
    kind: np.ndarray
    sigma: np.ndarray
    event: int | None
    description: str

    @property
    def n(self) -> int:
        """The dimension n."""
        return int(self.a0.shape[0])

    @property
    def updates(self) -> int:
        """The number of updates K."""
        return int(self.u.shape[0])


def _orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _schedule(steps: int, depth: float) -> np.ndarray:
    """depth^(1 − |2t − 1|) at t = j/steps, j = 1..steps: from 1 down to depth and back to 1
    (``steps`` odd: the two middle values are depth^(1 − 1/steps), the deepest reached)."""
    t = np.arange(1, steps + 1) / steps
    return depth ** (1.0 - np.abs(2.0 * t - 1.0))


def _odd(k: int) -> int:
    return k if k % 2 else k - 1


def generate(
    regime: str,
    n: int,
    updates: int,
    *,
    seed: int | np.random.SeedSequence = 0,
    scale: float = 0.05,
    revert: float = 0.5,
    depth: float = 1e-10,
) -> UpdateSequence:
    """Plan ``updates`` rank-one updates of an n×n matrix in ``regime`` (one of :data:`REGIMES`).

    A₀ = Q diag(s) Rᵀ (Q, R random orthogonal, s log-spaced from 2 to ½ with sₙ = 1). The
    controlled singular pairs are (q₁, r₁) and (qₙ, rₙ), the first and last columns of Q and R.
    Random-walk steps: u = (scale/n)·P_Q g − revert·W v/‖v‖², v = P_R h with g, h ~ N(0, I), W
    the sum of the walk steps so far and P_Q, P_R the projections orthogonal to the controlled
    pairs; so ‖u vᵀ‖ ≈ scale, W stays bounded (κ stays near κ(A₀)) and the controlled pairs
    remain exact singular pairs of the plan. In "approach" and "crossing" every second update
    is a controlled step u = (σ_new − σ_old)·q, v = r instead:

    - approach: alternately σₙ ← τ_j and σ₁ ← 2/τ_j, τ following :func:`_schedule` down to
      √depth and back, so κ grows by about 1/depth while det A stays within a factor τ_j;
    - crossing: σₙ ← ±depth^(1 − |2t − 1|), positive before the middle and negative after, so
      det A → 0, changes sign at one step (c = −1) and σₙ ends at −1.

    Vectors are float64; see :func:`cast_vectors` for other dtypes.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an integer >= 3, got {n!r}")
    updates = positive_int(updates, "updates")
    if regime != "walk" and updates < 12:
        raise ValueError(f"updates must be >= 12 for regime {regime!r}, got {updates}")
    if not 0.0 < scale < 1.0:
        raise ValueError(f"scale must be in (0, 1), got {scale!r}")
    if not 0.0 <= revert < 1.0:
        raise ValueError(f"revert must be in [0, 1), got {revert!r}")
    if not 0.0 < depth < 1.0:
        raise ValueError(f"depth must be in (0, 1), got {depth!r}")
    rng = np.random.default_rng(seed)
    n, k_total = int(n), int(updates)
    q, r = _orthogonal(n, rng), _orthogonal(n, rng)
    s = np.geomspace(2.0, 0.5, n)
    s[-1] = 1.0
    a0 = (q * s) @ r.T
    qc, rc = q[:, [0, -1]], r[:, [0, -1]]
    # Controlled steps: (pair index 0 = large / 1 = small, new signed singular value).
    plan: list[tuple[int, float]] = []
    event = None
    if regime == "crossing":
        steps = _odd(k_total // 2)
        mag = _schedule(steps, depth)
        half = (steps - 1) // 2  # step index `half` is the sign change
        plan = [(1, float(m if j < half else -m)) for j, m in enumerate(mag)]
        event = 2 * (half + 1)
    elif regime == "approach":
        pairs = _odd(k_total // 4)
        tau = np.sqrt(_schedule(pairs, depth))
        for t in tau:
            plan += [(1, float(t)), (0, float(2.0 / t))]
        event = 4 * ((pairs - 1) // 2)  # after the stretch step of the first deepest pair
    u = np.empty((k_total, n))
    v = np.empty((k_total, n))
    kind = np.zeros(k_total, dtype=np.int8)
    sigma = np.empty(k_total)
    walk = np.zeros((n, n))
    current = [2.0, 1.0]
    j = 0
    for k in range(k_total):
        if j < len(plan) and k % 2 == 1:
            p, target = plan[j]
            u[k], v[k], kind[k] = (target - current[p]) * qc[:, p], rc[:, p], 1
            current[p], j = target, j + 1
        else:
            g, h = rng.standard_normal(n), rng.standard_normal(n)
            vk = h - rc @ (rc.T @ h)
            uk = (scale / n) * (g - qc @ (qc.T @ g)) - revert * (walk @ vk) / (vk @ vk)
            walk += np.outer(uk, vk)
            u[k], v[k] = uk, vk
        sigma[k] = current[1]
    return UpdateSequence(regime, a0, u, v, kind, sigma, event, _DESCRIPTIONS[regime])


def cast_vectors(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 vectors to ``dtype`` ("float64", "float32" or "bfloat16").

    bfloat16 values are returned as float32 arrays (exactly representable), so the oracle's exact
    path and the layer see the same numbers.
    """
    if dtype == "float64":
        return np.asarray(x, dtype=np.float64)
    if dtype == "float32":
        return np.asarray(x, dtype=np.float32)
    if dtype == "bfloat16":
        import torch

        return torch.as_tensor(np.asarray(x, dtype=np.float32)).to(torch.bfloat16).float().numpy()
    raise ValueError(f"dtype must be 'float64', 'float32' or 'bfloat16', got {dtype!r}")
