"""A matrix whose inverse and determinant are tracked through rank-one updates (NumPy reference)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg

from invlin._validation import as_batch, as_square_matrix, as_vector, positive_int

__all__ = ["Guard", "TrackedMatrix", "UpdateRefused", "UpdateResult"]


@dataclass(frozen=True)
class Guard:
    """Bounds an update must satisfy to be applied (``None`` switches a bound off).

    An update A ← A + u vᵀ with c = 1 + vᵀA⁻¹u is refused when ``log|c| <= min_log_abs_c`` or the
    new ``log|det| = log|det A| + log|c|`` is not strictly inside ``(min_logabsdet,
    max_logabsdet)``. ``c = 0`` and non-finite ``c`` are always refused.

    >>> Guard.p4()
    Guard(min_log_abs_c=-6.0, min_logabsdet=-2.5, max_logabsdet=15.5)
    """

    min_log_abs_c: float | None = -6.0
    min_logabsdet: float | None = None
    max_logabsdet: float | None = None

    @classmethod
    def p4(cls, min_logdet: float = -2.0, max_logdet: float = 15.0) -> Guard:
        """The P4Inv merge guard: log|c| > min − 4 and min − ½ < log|c·det| < max + ½."""
        if not min_logdet < max_logdet:
            raise ValueError(f"min_logdet must be < max_logdet, got {min_logdet}, {max_logdet}")
        return cls(min_logdet - 4.0, min_logdet - 0.5, max_logdet + 0.5)

    @classmethod
    def off(cls) -> Guard:
        """No bounds: only singular (c = 0) or non-finite updates are refused."""
        return cls(None, None, None)

    def reason(self, log_abs_c: float, new_logabsdet: float) -> str | None:
        """Why an update with these values is refused, or ``None`` when it is allowed."""
        if not math.isfinite(log_abs_c):
            return f"c = 1 + vᵀA⁻¹u is zero or not finite (log|c| = {log_abs_c})"
        if self.min_log_abs_c is not None and not log_abs_c > self.min_log_abs_c:
            return f"log|c| = {log_abs_c:.6g} is not above min_log_abs_c = {self.min_log_abs_c}"
        if not math.isfinite(new_logabsdet):
            return f"the new log|det| = {new_logabsdet} is not finite"
        if self.min_logabsdet is not None and not new_logabsdet > self.min_logabsdet:
            return (
                f"the new log|det| = {new_logabsdet:.6g} is not above "
                f"min_logabsdet = {self.min_logabsdet}"
            )
        if self.max_logabsdet is not None and not new_logabsdet < self.max_logabsdet:
            return (
                f"the new log|det| = {new_logabsdet:.6g} is not below "
                f"max_logabsdet = {self.max_logabsdet}"
            )
        return None


class UpdateRefused(ArithmeticError):
    """A rank-one update was refused by the guard; the tracked state is unchanged."""

    def __init__(self, reason: str, c: float):
        super().__init__(f"update refused: {reason}; state left unchanged")
        self.reason = reason
        self.c = c


@dataclass(frozen=True)
class UpdateResult:
    """Outcome of :meth:`TrackedMatrix.update`: the factor ``c`` and whether it was applied."""

    c: float
    applied: bool
    reason: str | None = None


def _frozen(a: np.ndarray) -> np.ndarray:
    """An immutable copy of ``a``: its memory is a ``bytes`` object, so neither it nor its
    ``base`` can be made writable again (``setflags(write=True)`` raises ValueError)."""
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


class TrackedMatrix:
    """An invertible n×n matrix A with A⁻¹, sign(det A) and log|det A| kept by rank-one updates.

    The inverse is maintained by Sherman–Morrison and the determinant by the matrix determinant
    lemma, so no inverse or determinant is recomputed unless :meth:`refresh` is called. All state
    is held in ``dtype`` (float64 by default; float32 lets drift be studied).

    Args:
        a: the starting matrix, shape ``(n, n)``, finite and invertible.
        dtype: floating dtype of the tracked state (default: ``a``'s, float64 for integers).
        guard: bounds an update must satisfy (default :class:`Guard` ``()``: refuse |c| ≤ e⁻⁶).

    >>> t = TrackedMatrix(np.eye(3))
    >>> t.update(np.array([0.0, 0.0, -3.0]), np.array([0.0, 0.0, 1.0])).c
    -2.0
    >>> t.sign, round(t.logabsdet, 6)
    (-1, 0.693147)
    """

    def __init__(self, a: Any, *, dtype: Any | None = None, guard: Guard | None = None):
        a = as_square_matrix(a, "a", dtype)
        self.dtype = a.dtype
        self.guard = Guard() if guard is None else guard
        if not isinstance(self.guard, Guard):
            raise ValueError(f"guard must be a Guard, got {type(guard).__name__}")
        self._a = a
        self._inv, self._sign, self._logabsdet = self._factor(a)
        self.updates = 0
        self.refused = 0
        self._public: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _public_copy(self, name: str, internal: np.ndarray) -> np.ndarray:
        """The immutable copy of an internal array handed out, made once per array object (the
        internal arrays are replaced, never written in place)."""
        kept = self._public.get(name)
        if kept is None or kept[0] is not internal:
            kept = self._public[name] = (internal, _frozen(internal))
        return kept[1]

    # -- state ---------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """The dimension n."""
        return self._a.shape[0]

    @property
    def a(self) -> np.ndarray:
        """The matrix A, shape ``(n, n)`` (an immutable copy: it cannot be made writable)."""
        return self._public_copy("a", self._a)

    @property
    def inverse(self) -> np.ndarray:
        """The tracked inverse X ≈ A⁻¹, shape ``(n, n)`` (an immutable copy: it cannot be made
        writable)."""
        return self._public_copy("inverse", self._inv)

    @property
    def sign(self) -> int:
        """The tracked sign of det A, ±1."""
        return self._sign

    @property
    def logabsdet(self) -> float:
        """The tracked log|det A| as a Python float (accumulated in ``dtype``)."""
        return float(self._logabsdet)

    def state(self) -> tuple[np.ndarray, np.ndarray, int, Any]:
        """Copies of (A, X, sign, log|det|) for bit-exact comparisons."""
        return self._a.copy(), self._inv.copy(), self._sign, self._logabsdet

    # -- updates -------------------------------------------------------------------------------
    def factor(self, u: Any, v: Any) -> float:
        """c = 1 + vᵀA⁻¹u for vectors of shape ``(n,)`` (using the tracked inverse)."""
        u, v = self._vectors(u, v)
        return float(self._c(self._inv @ u, v))

    def update(
        self, u: Any, v: Any, *, on_refuse: Literal["raise", "skip"] = "raise"
    ) -> UpdateResult:
        """Apply A ← A + u vᵀ, X ← X − (Xu)(vᵀX)/c, det ← c·det; return ``c``.

        ``u``, ``v``: shape ``(n,)``, finite (else ValueError). A refused update raises
        :class:`UpdateRefused`, or returns ``applied=False`` when ``on_refuse="skip"``; either way
        the state stays bit-identical.
        """
        if on_refuse not in ("raise", "skip"):
            raise ValueError(f"on_refuse must be 'raise' or 'skip', got {on_refuse!r}")
        u, v = self._vectors(u, v)
        xu = self._inv @ u
        c = self._c(xu, v)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_abs_c = float(np.log(np.abs(c))) if np.isfinite(c) else math.nan
            new_logabsdet = self._logabsdet + self.dtype.type(log_abs_c)
        reason = self.guard.reason(log_abs_c, float(new_logabsdet))
        if reason is None:
            with np.errstate(over="ignore", invalid="ignore"):
                new_a = self._a + np.outer(u, v)
                new_inv = self._inv - np.outer(xu / c, v @ self._inv)
            if not (np.all(np.isfinite(new_a)) and np.all(np.isfinite(new_inv))):
                reason = "the updated matrix or inverse is not finite"
        if reason is not None:
            self.refused += 1
            if on_refuse == "raise":
                raise UpdateRefused(reason, float(c))
            return UpdateResult(float(c), False, reason)
        self._a, self._inv = new_a, new_inv
        self._logabsdet = new_logabsdet
        self._sign = -self._sign if c < 0 else self._sign
        self.updates += 1
        return UpdateResult(float(c), True, None)

    # -- the perturbed map A + u vᵀ (not merged) -------------------------------------------------
    def perturbed_logabsdet(self, u: Any, v: Any) -> tuple[int, float]:
        """(sign, log|det|) of A + u vᵀ by the determinant lemma; ``(0, -inf)`` when singular."""
        u, v = self._vectors(u, v)
        c = self._c(self._inv @ u, v)
        if c == 0:
            return 0, -math.inf
        if not np.isfinite(c):
            raise ValueError(f"c = 1 + vᵀA⁻¹u is not finite ({c}) for these u, v")
        sign = -self._sign if c < 0 else self._sign
        return sign, float(self._logabsdet + np.log(np.abs(c)))

    def perturbed_forward(
        self, x: Any, u: Any, v: Any, b: Any | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """y = (A + u vᵀ) x + b for rows x of shape ``(*, n)``; returns (y, log|det|) with shape
        ``(*, n)`` and ``(*,)``."""
        u, v = self._vectors(u, v)
        b = self._bias(b)
        x = as_batch(x, "x", self.n, self.dtype)
        y = x @ self._a.T + np.multiply.outer(x @ v, u) + b
        _, logdet = self.perturbed_logabsdet(u, v)
        return y, np.full(x.shape[:-1], logdet, dtype=self.dtype)

    def perturbed_inverse(
        self, y: Any, u: Any, v: Any, b: Any | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """x = (A + u vᵀ)⁻¹ (y − b) by Sherman–Morrison with the tracked inverse; returns
        (x, log|det ∂x/∂y|) of shapes ``(*, n)`` and ``(*,)``. Raises ValueError when
        1 + vᵀA⁻¹u = 0 (the perturbed matrix is singular)."""
        u, v = self._vectors(u, v)
        b = self._bias(b)
        y = as_batch(y, "y", self.n, self.dtype)
        xu = self._inv @ u
        c = self._c(xu, v)
        if c == 0 or not np.isfinite(c):
            raise ValueError(f"A + u vᵀ is singular: c = 1 + vᵀA⁻¹u = {c}")
        z = (y - b) @ self._inv.T
        x = z - np.multiply.outer((z @ v) / c, xu)
        logdet = -(self._logabsdet + np.log(np.abs(c)))
        return x, np.full(y.shape[:-1], logdet, dtype=self.dtype)

    # -- drift control -------------------------------------------------------------------------
    def correct(
        self, order: int = 2, steps: int = 1, *, side: Literal["left", "right"] = "left"
    ) -> float:
        """Hyperpower correction X ← (I + R + … + R^{order−1})X with R = I − XA, ``steps`` times
        (``side="right"``: X ← X(I + R + …) with R = I − AX).

        The residual becomes R^order (order 2 is Newton–Schulz); each step costs ``order``
        matrix products. Converges only when ‖R‖ < 1: when ‖R‖₁ ≥ 1 nothing is changed and a
        ValueError advises :meth:`refresh`. Returns ‖R‖₁ before the first step. The tracked
        determinant is not touched (use :meth:`refresh` to recompute it). Only the chosen side
        reaches the rounding floor: the other residual stays near κ·nε (a LAPACK ratio of about
        10⁻³κ); the LAPACK inverse ratio and the drift estimators measure the left one, hence
        the default (the torch layer corrects the same side).
        """
        if isinstance(order, bool) or not isinstance(order, int) or order < 2:
            raise ValueError(f"order must be an integer >= 2, got {order!r}")
        steps = positive_int(steps, "steps")
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        eye = np.eye(self.n, dtype=self.dtype)
        inv = self._inv
        first = None
        for _ in range(steps):
            r = eye - self._a @ inv if side == "right" else eye - inv @ self._a
            norm = float(np.linalg.norm(r, 1))
            if first is None:
                first = norm
                if not norm < 1.0:
                    raise ValueError(
                        f"hyperpower correction needs ‖I − AX‖₁ < 1, got {norm:.3g}; use refresh()"
                    )
            s = eye + r
            for _ in range(order - 2):
                s = eye + r @ s
            inv = inv @ s if side == "right" else s @ inv
        if not np.all(np.isfinite(inv)):
            raise ValueError("correction produced non-finite entries; state left unchanged")
        self._inv = inv
        return float(first)

    def refresh(self) -> None:
        """Recompute X, sign and log|det| from A by an LU factorisation (O(n³))."""
        self._inv, self._sign, self._logabsdet = self._factor(self._a)

    # -- helpers -------------------------------------------------------------------------------
    def _factor(self, a: np.ndarray) -> tuple[np.ndarray, int, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # zero pivot: below
            lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
        diag = np.diag(lu)
        if np.any(diag == 0):
            raise ValueError("a must be invertible: its LU factorisation has a zero pivot")
        inv = scipy.linalg.lu_solve((lu, piv), np.eye(a.shape[0], dtype=a.dtype))
        if not np.all(np.isfinite(inv)):
            raise ValueError("a must be invertible: its inverse overflows")
        swaps = int(np.count_nonzero(piv != np.arange(piv.size)))
        sign = (-1) ** (swaps + int(np.count_nonzero(diag < 0)))
        logdet = a.dtype.type(np.sum(np.log(np.abs(diag))))
        return inv.astype(a.dtype, copy=False), int(sign), logdet

    def _vectors(self, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
        return as_vector(u, "u", self.n, self.dtype), as_vector(v, "v", self.n, self.dtype)

    def _bias(self, b: Any | None) -> np.ndarray:
        if b is None:
            return np.zeros(self.n, dtype=self.dtype)
        return as_vector(b, "b", self.n, self.dtype)

    def _c(self, xu: np.ndarray, v: np.ndarray) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):
            return self.dtype.type(1) + v @ xu

    def __repr__(self) -> str:
        return (
            f"TrackedMatrix(n={self.n}, dtype={self.dtype}, sign={self._sign:+d}, "
            f"logabsdet={self.logabsdet:.6g}, updates={self.updates}, refused={self.refused})"
        )
