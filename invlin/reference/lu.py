"""Float64 NumPy reference for an LU-factorised linear layer and the LU-Net flow built from it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from scipy.linalg import solve_triangular

from invlin._validation import as_batch, as_square_matrix, as_vector
from invlin.reference.activations import LeakySoftplus

__all__ = ["LULayer", "LUNet"]

_LOG_2PI = math.log(2.0 * math.pi)


class _Activation(Protocol):
    def __call__(self, x: Any) -> np.ndarray: ...

    def inverse(self, y: Any) -> np.ndarray: ...

    def log_derivative(self, x: Any) -> np.ndarray: ...


def _finite_batch(x: Any, name: str, n: int) -> np.ndarray:
    arr = as_batch(x, name, n, np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


class LULayer:
    """Affine layer y = L(Ux) + b with L unit lower and U upper triangular, float64.

    Accepted arguments (all converted to float64 copies, all must be finite):

    * ``lower``: an (n, n) matrix whose strictly-lower triangle gives the entries of L below the
      diagonal. Its strictly-upper triangle must be zero and its diagonal must be all ones (L
      itself) or all zeros (only the strictly-lower part); anything else raises ValueError,
      because silently ignoring entries hides mistakes.
    * ``upper``: an (n, n) upper-triangular matrix U (strictly-lower triangle zero). Its diagonal
      has free sign and may contain zeros: the layer is then singular, :meth:`logabsdet` is −inf
      and :meth:`inverse` raises ValueError naming the index.
    * ``bias``: None (zero) or a vector of shape (n,).

    The layer maps rows: for x of shape (*, n), y = x (LU)ᵀ + b, computed as two triangular
    products (U first) so that it is the factorised map itself, not a rounded product LU.

    >>> layer = LULayer(np.eye(2), np.diag([2.0, -0.5]))
    >>> y, ld = layer.forward(np.array([[1.0, 1.0]]))
    >>> y.tolist(), ld.tolist()
    ([[2.0, -0.5]], [0.0])
    """

    def __init__(self, lower: Any, upper: Any, bias: Any | None = None) -> None:
        low = as_square_matrix(lower, "lower", np.float64)
        up = as_square_matrix(upper, "upper", np.float64)
        n = low.shape[0]
        if up.shape != low.shape:
            raise ValueError(f"upper must have shape {low.shape} like lower, got {up.shape}")
        if np.any(np.triu(low, 1) != 0):
            raise ValueError("lower must be zero above the diagonal")
        diag = np.diagonal(low)
        if not (np.all(diag == 1.0) or np.all(diag == 0.0)):
            raise ValueError("lower must have an all-ones (unit) or all-zeros diagonal")
        if np.any(np.tril(up, -1) != 0):
            raise ValueError("upper must be zero below the diagonal")
        self.n = n
        self._lower = np.tril(low, -1) + np.eye(n)
        self._upper = up
        self._bias = np.zeros(n) if bias is None else as_vector(bias, "bias", n, np.float64)

    @property
    def lower(self) -> np.ndarray:
        """Unit lower-triangular L, shape (n, n), float64 (a copy)."""
        return self._lower.copy()

    @property
    def upper(self) -> np.ndarray:
        """Upper-triangular U, shape (n, n), float64 (a copy)."""
        return self._upper.copy()

    @property
    def bias(self) -> np.ndarray:
        """Bias b, shape (n,), float64 (a copy)."""
        return self._bias.copy()

    @property
    def matrix(self) -> np.ndarray:
        """The product A = L U, shape (n, n), float64 (rounded once per entry by the matmul)."""
        return self._lower @ self._upper

    def logabsdet(self) -> float:
        """Return log|det A| = Σ log|u_ii| as a float; −inf when some u_ii is zero."""
        with np.errstate(divide="ignore"):
            return float(np.sum(np.log(np.abs(np.diagonal(self._upper)))))

    def forward(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map x of shape (*, n) to (y, logabsdet): y (*, n) and log|det ∂y/∂x| (*,), float64."""
        x = _finite_batch(x, "x", self.n)
        y = (x @ self._upper.T) @ self._lower.T + self._bias
        return y, np.full(x.shape[:-1], self.logabsdet())

    def inverse(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map y of shape (*, n) to (x, logabsdet) by two triangular solves.

        Returns x of shape (*, n) and log|det ∂x/∂y| = −Σ log|u_ii| of shape (*,), float64.
        Raises ValueError naming the first index i with u_ii = 0, or the smallest |u_ii| when
        the solve overflows (a pivot so close to zero that x is not finite).
        """
        y = _finite_batch(y, "y", self.n)
        zero = np.flatnonzero(np.diagonal(self._upper) == 0)
        if zero.size:
            raise ValueError(
                f"upper has a zero diagonal entry at index {int(zero[0])}; the layer is singular"
            )
        rhs = (y - self._bias).reshape(-1, self.n).T
        if rhs.shape[1] == 0:
            x = np.empty(y.shape)
        else:
            w = solve_triangular(self._lower, rhs, lower=True, unit_diagonal=True)
            with np.errstate(over="ignore", invalid="ignore"):
                x = solve_triangular(self._upper, w, lower=False).T.reshape(y.shape)
            if not np.all(np.isfinite(x)):  # overflow, then inf − inf = NaN: never return it
                d = np.abs(np.diagonal(self._upper))
                i = int(np.argmin(d))
                raise ValueError(
                    f"the inverse overflows for this y: upper's diagonal entry "
                    f"{self._upper[i, i]:.3g} at index {i} is too close to zero"
                )
        return x, np.full(y.shape[:-1], -self.logabsdet())


class LUNet:
    """LU-Net flow: blocks of an :class:`LULayer` then an activation; the last block has none.

    ``layers`` is a non-empty sequence of LULayer of one size n; ``activation`` is any object with
    ``__call__``, ``inverse`` and ``log_derivative`` (default: ``LeakySoftplus(0.1)``). The flow
    maps data x (*, n) to latent z (*, n); densities are under a standard normal base in nats.

    >>> net = LUNet([LULayer(np.eye(2), np.eye(2))])
    >>> round(float(net.nll(np.zeros((1, 2)))), 6) == round(math.log(2 * math.pi), 6)
    True
    """

    def __init__(self, layers: Sequence[LULayer], activation: _Activation | None = None) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one LULayer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, LULayer):
                raise ValueError(f"layers[{i}] must be an LULayer, got {type(layer).__name__}")
            if layer.n != layers[0].n:
                raise ValueError(f"layers[{i}] has size {layer.n}, expected {layers[0].n}")
        self.layers = layers
        self.activation = LeakySoftplus() if activation is None else activation
        self.n = layers[0].n

    def forward(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map x (*, n) to (z, log|det ∂z/∂x|) with shapes (*, n) and (*,), float64."""
        z = _finite_batch(x, "x", self.n)
        total = np.zeros(z.shape[:-1])
        for i, layer in enumerate(self.layers):
            z, ld = layer.forward(z)
            total = total + ld
            if i < len(self.layers) - 1:
                total = total + np.sum(self.activation.log_derivative(z), axis=-1)
                z = np.asarray(self.activation(z), dtype=np.float64)
        return z, total

    def inverse(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map z (*, n) to (x, log|det ∂x/∂z|) with shapes (*, n) and (*,), float64."""
        x = _finite_batch(z, "z", self.n)
        total = np.zeros(x.shape[:-1])
        for i in range(len(self.layers) - 1, -1, -1):
            x, ld = self.layers[i].inverse(x)
            total = total + ld
            if i > 0:
                x = np.asarray(self.activation.inverse(x), dtype=np.float64)
                total = total - np.sum(self.activation.log_derivative(x), axis=-1)
        return x, total

    def log_prob(self, x: Any) -> np.ndarray:
        """Return log p(x) in nats, shape (*,): −½‖z‖² − ½·n·log 2π + log|det ∂z/∂x|."""
        z, ld = self.forward(x)
        return -0.5 * np.sum(z * z, axis=-1) - 0.5 * self.n * _LOG_2PI + ld

    def nll(self, x: Any, logdet: Any | None = None) -> float:
        """Mean negative log-likelihood in nats over all leading dims of x (*, n).

        ``logdet`` (shape (*,), optional) is added to log p(x) before averaging, e.g. the
        log-Jacobian of a dequantisation step.
        """
        lp = self.log_prob(x)
        if logdet is not None:
            extra = np.asarray(logdet)
            if extra.dtype.kind not in "fiu" or extra.shape not in ((), lp.shape):
                raise ValueError(f"logdet must be a real array of shape {lp.shape} or a scalar")
            lp = lp + extra.astype(np.float64)
        return float(-np.mean(lp))

    def bits_per_dim(self, x: Any, logdet: Any | None = None) -> float:
        """Return :meth:`nll` / (n·ln 2), in bits per dimension."""
        return self.nll(x, logdet) / (self.n * math.log(2.0))
