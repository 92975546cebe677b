"""Data for the experiments: generated 2-D toy densities and scikit-learn's bundled 8×8 digits."""

from __future__ import annotations

import numpy as np

__all__ = ["TOY_DENSITIES", "digits", "toy_density"]

TOY_DENSITIES = ("eight_gaussians", "two_moons", "checkerboard")


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    angles = rng.integers(0, 8, n) * (np.pi / 4)
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + 0.2 * rng.standard_normal((n, 2))


def _two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    upper = rng.random(n) < 0.5
    t = np.pi * rng.random(n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return pts + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # 4×4 board on [-2, 2]², the 8 cells with (i + j) even carry the mass.
    i = rng.integers(0, 4, n)
    j = (2 * rng.integers(0, 2, n) + (i % 2)) % 4
    u = rng.random((n, 2))
    return np.stack([i + u[:, 0], j + u[:, 1]], axis=1) - 2.0


def toy_density(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` samples of a 2-D toy density as a float64 array of shape ``(n, 2)``.

    ``name`` is one of :data:`TOY_DENSITIES`: eight Gaussians on a circle of radius 2 (σ = 0.2),
    two interleaved half-moons (noise σ = 0.1, scaled ×2), or an 8-cell checkerboard on [−2, 2]².

    >>> toy_density("two_moons", 5).shape
    (5, 2)
    """
    makers = {"eight_gaussians": _eight_gaussians, "two_moons": _two_moons,
              "checkerboard": _checkerboard}
    if name not in makers:
        raise ValueError(f"name must be one of {TOY_DENSITIES}, got {name!r}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return makers[name](np.random.default_rng(seed), n)


def digits() -> tuple[np.ndarray, int]:
    """scikit-learn's bundled 8×8 digits: (int64 array ``(1797, 64)`` with values 0..16, 17 levels).

    Shipped inside scikit-learn (no download); raises ImportError naming the package if missing.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = "the digits experiment needs scikit-learn: pip install scikit-learn"
        raise ImportError(msg) from exc
    data = load_digits().data.astype(np.int64)
    return data, 17
