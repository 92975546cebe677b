"""Float64 Jacobians of the reference copy and the per-sample condition numbers bounds use.

Notation: a sample x (row of a batch), y = f(x), J = ∂y/∂x the float64 autograd Jacobian of the
reference copy at x, ‖·‖ the 1-norm, κ = ‖J‖‖J⁻¹‖ (κ₁ of J), ε the unit roundoff of the dtype
under test, ℓ* = log|det J|. Every bound below is "ratio ≤ THRESHOLD" in the tolerance engine's
units, the small constant c of each derivation being absorbed in the threshold as LAPACK does.

* Values in output space (y computed twice, or y → x → y). A backward-stable evaluation of
  y = f(x) (for an affine f, y = Wx + b) errs by ‖δy‖ ≲ cε(‖J‖‖x‖ + ‖y‖) (|b| ≤ |y| + |Wx|); an
  inverse that is backward stable in the solve sense gives x̂ with f(x̂) − y of the same size
  (residual, not forward error). Layers whose forward is itself a solve err by cε·κ‖y‖, so the
  allowed error is ε·:func:`scale_output` = ε(κ‖y‖ + ‖J‖‖x‖), i.e. relative κ + ‖J‖‖x‖/‖y‖.
* Values in input space (x computed twice, or x → y → x). Mapping the forward error back
  through J⁻¹ and adding the inverse's own error: ‖Δx‖ ≲ cε‖J⁻¹‖(‖J‖‖x‖ + ‖y‖) =
  cε·:func:`scale_input`, i.e. relative cε(κ + ‖J⁻¹‖‖y‖/‖x‖). (An inverse that only has a
  small residual on the other side — an explicit inverse with ‖WX − I‖ ≈ κε — could reach
  κ²ε; such an inverse is what the conditioning check is meant to flag, so κ, not κ², is the
  scale.)
* log|det| values. A backward-stable factorisation gives |Δℓ| ≤ ‖J⁻¹‖‖ΔJ‖ ≲ nκε (the engine's
  :func:`~invlin.testing.logdet_ratio` scale); the value ℓ itself, a sum of n logarithms,
  carries a rounding error ≲ ε|ℓ*|; and a nonlinear layer evaluates ℓ(x) at best for an input
  perturbed by ε|x| (backward stability in x), which moves ℓ by ≲ ε·Σᵢ|∂ℓ/∂xᵢ·xᵢ| (∂ℓ/∂x from
  the float64 copy; zero for linear layers): :func:`kappa_logdet` = κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n,
  so that n·κ_eff·ε = (nκ + |ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)ε.

The scales are absolute (error/ε); :func:`worst_rows` turns them into the κ_eff that
:func:`~invlin.testing.forward_ratio` divides by, relative to the row it compares against (a
zero row is judged absolutely), so two computed values are compared on the same footing however
close to zero they are. Samples whose float64 Jacobian is singular (κ = ∞) cannot be judged
and are counted, not failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from invlin.testing import Ratio, forward_ratio, logdet_ratio
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.search import LayerFault

__all__ = [
    "Local",
    "Worst",
    "kappa_logdet",
    "local",
    "scale_input",
    "scale_output",
    "worst_logdet",
    "worst_rows",
]


@dataclass
class Local:
    """The reference layer at a batch x of shape (b, n), all float64 NumPy arrays.

    ``jac`` (b, n, n): ∂y/∂x per sample (by autograd); ``kappa``, ``norm``, ``norm_inv`` (b,):
    κ₁(J), ‖J‖₁, ‖J⁻¹‖₁ (∞ where J is singular); ``sign``, ``logabsdet`` (b,): slogdet(J);
    ``y`` (b, n) and ``ladj`` (b,) or ``None``: the reference's own outputs; ``grad_ladj`` (b, n)
    or ``None``: ∂ladj/∂x of the reference (zeros when ladj does not depend on x); ``x`` (b, n):
    the points.
    """

    jac: np.ndarray
    kappa: np.ndarray
    norm: np.ndarray
    norm_inv: np.ndarray
    sign: np.ndarray
    logabsdet: np.ndarray
    y: np.ndarray
    ladj: np.ndarray | None
    grad_ladj: np.ndarray | None
    x: np.ndarray | None = None


def _inverse_norms(jac: np.ndarray) -> np.ndarray:
    out = np.full(jac.shape[0], math.inf)
    for i, j in enumerate(jac):
        if not np.all(np.isfinite(j)):
            continue
        try:
            inv = np.linalg.inv(j)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(inv)):
            out[i] = float(np.abs(inv).sum(axis=0).max())
    return out


def local(ref: Adapter, x: np.ndarray, *, grad_ladj: bool = True, inverse: bool = False
          ) -> Local:
    """Float64 Jacobians of ``ref`` at the rows of ``x`` (b, n) and what bounds need of them
    (of ``ref.inverse`` at the rows of ``x`` when ``inverse``).

    The batch is pushed through once and J is assembled from n backward passes of ∑_b y[b, i]
    (valid because samples are independent — the batch-shape check verifies that). Raises
    :class:`Unsupported` when the layer's output does not depend differentiably on x.
    """
    xt = torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, requires_grad=True)
    b, n = xt.shape
    with torch.enable_grad():
        y, ld = ref.inverse(xt) if inverse else ref.forward(xt)
        if tuple(y.shape) != (b, n):
            raise LayerFault(f"the layer returned y of shape {tuple(y.shape)} for x of shape "
                             f"{(b, n)}")
        if not y.requires_grad:
            raise Unsupported("the layer's output carries no autograd graph with respect to "
                              "its input: no autograd Jacobian")
        jac = np.zeros((b, n, n))
        for i in range(n):
            (g,) = torch.autograd.grad(y[:, i].sum(), xt, retain_graph=True, allow_unused=True)
            if g is not None:
                jac[:, i, :] = g.detach().numpy()
        gl = None
        if grad_ladj and isinstance(ld, torch.Tensor) and ld.requires_grad:
            (g,) = torch.autograd.grad(ld.sum(), xt, allow_unused=True)
            gl = np.zeros((b, n)) if g is None else g.detach().numpy()
        elif grad_ladj:
            gl = np.zeros((b, n))  # a log|det| that does not depend on x (linear layers)
    norm = np.abs(jac).sum(axis=1).max(axis=1)
    norm_inv = _inverse_norms(jac)
    with np.errstate(all="ignore"):
        kappa = np.where(np.isfinite(norm_inv), norm * norm_inv, math.inf)
        sign, lad = np.linalg.slogdet(jac)
    ladj = ld.detach().numpy().astype(np.float64) if isinstance(ld, torch.Tensor) else None
    if gl is not None and gl.shape != (b, n):
        gl = None  # a log|det| of the wrong shape: the batch-shape check reports it
    return Local(jac, np.maximum(kappa, 1.0), norm, norm_inv, sign, lad,
                 y.detach().numpy().astype(np.float64), ladj, gl, np.asarray(x, np.float64))


def _rows(a: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.float64)).reshape(a.shape[0], -1).sum(axis=1)


def scale_input(loc: Local, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """κ‖x‖₁ + ‖J⁻¹‖₁‖y‖₁ per row: the error of an x-value in units of ε (input space)."""
    with np.errstate(all="ignore"):
        out = loc.kappa * _rows(x) + loc.norm_inv * _rows(y)
    return np.where(np.isnan(out), math.inf, out)


def scale_output(loc: Local, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """κ‖y‖₁ + ‖J‖₁‖x‖₁ per row: the error of a y-value in units of ε (output space)."""
    with np.errstate(all="ignore"):
        out = loc.kappa * _rows(y) + loc.norm * _rows(x)
    return np.where(np.isnan(out), math.inf, out)


def kappa_logdet(loc: Local, n: int) -> np.ndarray:
    """κ + (|ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n per row, so n·κ_eff·ε = (nκ + |ℓ*| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)ε
    (∞ where ℓ* is not finite)."""
    sens = 0.0
    if loc.grad_ladj is not None and loc.x is not None:
        sens = np.abs(loc.grad_ladj * loc.x).sum(axis=1)
    with np.errstate(all="ignore"):
        out = loc.kappa + (np.abs(loc.logabsdet) + sens) / n
    return np.where(np.isfinite(out), out, math.inf)


@dataclass
class Worst:
    """The largest ratio over the judged rows, its row and engine :class:`Ratio`; ``skipped``
    counts rows whose κ is infinite."""

    value: float = 0.0
    row: int = -1
    ratio: Ratio | None = None
    kappa: float = 1.0
    skipped: int = 0


def worst_rows(out: np.ndarray, expected: np.ndarray, scales: np.ndarray, dtype: str) -> Worst:
    """Largest :func:`forward_ratio` over rows (b, n); row j is allowed an error of
    ``scales[j]``·ε (see :func:`scale_input`), i.e. κ_eff = scales[j]/‖expected_j‖₁ (at least
    1; the scale itself for a zero row, which forward_ratio judges absolutely). Two computed
    values are compared this way however small either is."""
    w = Worst()
    norms = _rows(expected)
    for j in range(out.shape[0]):
        s = float(scales[j])
        if not math.isfinite(s):
            w.skipped += 1
            continue
        k = s / norms[j] if norms[j] > 0 else s
        r = forward_ratio(out[j], expected[j], kappa=max(1.0, k), dtype=dtype)
        if w.ratio is None or not r.value <= w.value:
            w.value, w.row, w.ratio, w.kappa = r.value, j, r, max(1.0, k)
    return w


def worst_logdet(out: np.ndarray, expected: np.ndarray, kappas: np.ndarray, n: int,
                 dtype: str) -> Worst:
    """Largest :func:`logdet_ratio` over samples (b,) with a κ per sample."""
    w = Worst()
    for j in range(out.shape[0]):
        k = float(kappas[j])
        if not math.isfinite(k):
            w.skipped += 1
            continue
        r = logdet_ratio(out[j], expected[j], n=n, kappa=max(1.0, k), dtype=dtype)
        if w.ratio is None or not r.value <= w.value:
            w.value, w.row, w.ratio, w.kappa = r.value, j, r, k
    return w
