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

Diagonal Jacobians (elementwise layers, diagonal affine maps; detected by :func:`diagonal`: every
off-diagonal entry of J exactly zero on the judged rows). Each coordinate is then a scalar map
yᵢ = fᵢ(xᵢ) with Jᵢᵢ = fᵢ′(xᵢ) and κᵢ = |Jᵢᵢ||Jᵢᵢ⁻¹| = 1, and is judged on its own. A
backward-stable scalar evaluation gives ŷᵢ = fᵢ(xᵢ(1 + δ₁))(1 + δ₂), |δ| ≤ cε, so
|ŷᵢ − yᵢ| ≲ cε(|Jᵢᵢxᵢ| + |yᵢ|); the inverse gives x̂ᵢ = gᵢ(ŷᵢ(1 + δ₃))(1 + δ₄), so mapping
the forward error back through 1/Jᵢᵢ and adding the inverse's own,
|x̂ᵢ − xᵢ| ≲ cε(|xᵢ| + |yᵢ/Jᵢᵢ|) (input space) and |ŷᵢ − yᵢ| ≲ cε(|yᵢ| + |Jᵢᵢxᵢ|) (output
space): :func:`input_scales` and :func:`output_scales` per coordinate. The normwise bounds
above take κ₁ = max|Jᵢᵢ|/min|Jᵢᵢ| and the whole row's norm instead, which lets one coordinate
err by κ₁‖x‖₁/|xᵢ| times its own allowance. log|det| = Σᵢ log|Jᵢᵢ|: each term errs by
≲ ε(1 + |log|Jᵢᵢ|| + |∂ℓ/∂xᵢ·xᵢ|), so :func:`kappa_logdet` becomes
1 + (Σᵢ|log|Jᵢᵢ|| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n (κ replaced by 1, |ℓ*| by the sum of the terms'
magnitudes, which also covers terms that cancel).

Triangular (autoregressive, coupling) Jacobians: |Δx| ≲ cε|J⁻¹|(|J||x| + |y|) componentwise
would cost no more (J⁻¹ is formed anyway), but its premise — each coordinate evaluated with an
error ≲ ε(|J||x| + |y|)ᵢ — does not hold for a conditioner network, whose rounding follows its
hidden activations, not J (see the batch-shape check's layout test: a tanh MLP's cancelling
sum errs by 10⁴ times κε). Those layers keep the normwise bound.

Underflow. Results below the smallest normal number μ are rounded absolutely: the model of
floating-point arithmetic with underflow is fl(a op b) = (a op b)(1 + δ) + η with |η| ≤ μ when
subnormals may be flushed to zero (``torch.set_flush_denormal``, GPUs; torch's float32 sigmoid
returns 0 from x ≈ −88.7 on, where σ(x) is still a subnormal) — a relative error no
backward-stability argument bounds. Each output coordinate therefore gets an absolute cμ more:
μ/ε in output-space scales and ‖J⁻¹‖₁·nμ/ε (per coordinate μ/(ε|Jᵢᵢ|)) in input-space ones;
negligible unless outputs or Jacobians are within a few orders of μ.

Reference Jacobian (:func:`cross_check`). Every bound above trusts the float64 J of the copy
to ‖ΔJ‖ ≲ cε₆₄‖J‖ (plus :func:`truth_error`). Autograd does not promise that: reverse mode
forms row i of J as a vector–Jacobian product eᵢᵀJ_L⋯J₁ through every layer, and where the
intermediates are huge (sbi's MAF at |x| ~ 1e47: ~1e50) and the product cancels, rounding
leaves row errors of order ε₆₄‖eᵢᵀJ_L‖⋯‖J₁‖ ≫ ε₆₄‖J‖ — a wrong matrix (det sign −1 for a map
monotone in every layer) whose own error estimate is 0. It is not judged against itself:
before a row fails on J (or ℓ* = log|det J|), J is evaluated again in forward mode, column j
as J_L⋯J₁eⱼ, which accumulates the same products in the other order and so rounds
differently. Two evaluations that both met the premise would agree row by row to
‖J_rev[i] − J_fwd[i]‖₁ ≲ cε₆₄‖J[i]‖₁ and in ℓ* to ≲ nκ_eff ε₆₄ (the :func:`kappa_reference` of
either; the larger is used, the factor 2 of the sum being in THRESHOLD); a ratio beyond
THRESHOLD (or opposite determinant signs) refutes the premise at that row, and the failure is
kept only if the layer also fails against the forward-mode value within that value's own
allowance — beyond both estimates, it is wrong whichever is right; otherwise the row is not
judged and the check says why. Where the two agree, or the layer has no forward-mode AD (the
reason is reported), the failure stands. Only a batch with a failing row pays: n forward-mode
passes over it (the whole batch, as reverse mode saw it, so that a layer whose rows interact
is judged by both alike), and once per process torch's loading of its forward-mode rules.

The scales are absolute (error/ε); :func:`worst_rows` turns them into the κ_eff that
:func:`~invlin.testing.forward_ratio` divides by, relative to the row it compares against (a
zero row is judged absolutely), so two computed values are compared on the same footing however
close to zero they are. Samples whose float64 Jacobian is singular (κ = ∞) cannot be judged
and are counted, not failed. :func:`judge_values` and :func:`judge_logdet` are the vectorised
forms (one NumPy pass over a batch of hundreds of rows, the engine's :class:`Ratio` built for
the worst row only), with per-coordinate judgement for diagonal Jacobians.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from invlin.testing import EPS, THRESHOLD, Ratio, forward_ratio, logdet_ratio
from invlin.testing.strategies import LARGE_INPUT
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.search import LayerFault

__all__ = [
    "UNDERFLOW",
    "CrossCheck",
    "Local",
    "NonFinite",
    "Verdict",
    "Worst",
    "cross_check",
    "diagonal",
    "first_nonfinite",
    "input_scales",
    "judge_logdet",
    "judge_values",
    "kappa_logdet",
    "kappa_logdet_diagonal",
    "kappa_reference",
    "local",
    "must_be_finite",
    "output_scales",
    "reference_finite",
    "scale_input",
    "scale_output",
    "subset",
    "truth_error",
    "worst_logdet",
    "worst_rows",
]

#: Smallest normal number μ of each dtype: the absolute error of a result that underflows
#: (flushed to zero or rounded to a subnormal), see the module docstring.
UNDERFLOW: dict[str, float] = {d: float(np.finfo(d).tiny) for d in ("float32", "float64")}


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
    """‖J⁻¹‖₁ per sample (∞ where J is not finite or is singular): one batched inverse, row by
    row only when LAPACK refuses the batch (an exactly singular J among them)."""
    out = np.full(jac.shape[0], math.inf)
    fin = np.isfinite(jac).all(axis=(1, 2))
    if fin.any():
        try:
            inv = np.linalg.inv(jac[fin])
        except np.linalg.LinAlgError:
            pass
        else:
            with np.errstate(invalid="ignore"):
                norms = np.abs(inv).sum(axis=1).max(axis=1)
            out[fin] = np.where(np.isfinite(norms), norms, math.inf)
            return out
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


def _reverse_mode(
    ref: Adapter, xt: torch.Tensor, grad_ladj: bool, inverse: bool
) -> tuple[torch.Tensor, object, np.ndarray, np.ndarray | None]:
    """y, log|det|, J (b, n, n) from n backward passes of ∑_b y[b, i], ∂ℓ/∂x (b, n) or None."""
    b, n = xt.shape
    xt = xt.requires_grad_(True)
    with torch.enable_grad():
        y, ld = ref.inverse(xt) if inverse else ref.forward(xt)
        if tuple(y.shape) != (b, n):
            raise LayerFault(
                f"the layer returned y of shape {tuple(y.shape)} for x of shape {(b, n)}"
            )
        if not y.requires_grad:
            raise Unsupported(
                "the layer's output carries no autograd graph with respect to "
                "its input: no autograd Jacobian"
            )
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
    return y, ld, jac, gl


def _forward_mode(
    ref: Adapter, xt: torch.Tensor, grad_ladj: bool, inverse: bool
) -> tuple[torch.Tensor, object, np.ndarray, np.ndarray | None]:
    """y, log|det|, J (b, n, n) from n forward-mode passes with tangent eᵢ in every row (column
    i of J is the tangent of y), ∂ℓ/∂x (b, n) from the tangents of ℓ. Raises
    :class:`Unsupported` when the layer cannot run with dual tensors."""
    b, n = xt.shape
    jac = np.zeros((b, n, n))
    gl = np.zeros((b, n)) if grad_ladj else None
    seen = False
    try:
        with fwad.dual_level():
            with warnings.catch_warnings():
                # torch's first dual tensor loads its forward-mode decompositions through the
                # deprecated torch.jit.script: torch's warning, not the layer's
                warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated")
                fwad.make_dual(xt, torch.zeros_like(xt))
            for i in range(n):
                tangent = torch.zeros_like(xt)
                tangent[:, i] = 1.0
                dual = fwad.make_dual(xt, tangent)
                out, ld_dual = ref.inverse(dual) if inverse else ref.forward(dual)
                y, ty = fwad.unpack_dual(out)
                if tuple(y.shape) != (b, n):
                    raise LayerFault(
                        f"the layer returned y of shape {tuple(y.shape)} for x of shape {(b, n)}"
                    )
                if ty is not None:
                    seen = True
                    jac[:, :, i] = ty.detach().numpy()
                ld = ld_dual
                if isinstance(ld_dual, torch.Tensor):
                    ld, tl = fwad.unpack_dual(ld_dual)
                    if gl is not None and tl is not None and tuple(tl.shape) == (b,):
                        gl[:, i] = tl.detach().numpy()
                y, ld = y.detach(), ld.detach() if isinstance(ld, torch.Tensor) else ld
    except (Unsupported, LayerFault):
        raise
    except Exception as exc:  # no forward-mode formula for one of the layer's operations
        raise Unsupported(f"forward-mode AD failed: {type(exc).__name__}: {exc}") from exc
    if not seen:
        raise Unsupported("the layer's output carries no forward-mode tangent")
    return y, ld, jac, gl


def local(
    ref: Adapter,
    x: np.ndarray,
    *,
    grad_ladj: bool = True,
    inverse: bool = False,
    mode: str = "reverse",
) -> Local:
    """Float64 Jacobians of ``ref`` at the rows of ``x`` (b, n) and what bounds need of them
    (of ``ref.inverse`` at the rows of ``x`` when ``inverse``).

    The batch is pushed through once and J is assembled from n backward passes of ∑_b y[b, i]
    (``mode="reverse"``, the default), or from n forward-mode passes with tangent eᵢ
    (``mode="forward"``, :func:`cross_check`'s second estimate); both valid because samples are
    independent — the batch-shape check verifies that. Raises :class:`Unsupported` when the
    layer's output does not depend differentiably on x (or, forward mode, cannot be run with
    dual tensors).
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    xt = torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)
    b, n = xt.shape
    run = _reverse_mode if mode == "reverse" else _forward_mode
    y, ld, jac, gl = run(ref, xt, grad_ladj, inverse)
    norm = np.abs(jac).sum(axis=1).max(axis=1)
    norm_inv = _inverse_norms(jac)
    with np.errstate(all="ignore"):
        kappa = np.where(np.isfinite(norm_inv), norm * norm_inv, math.inf)
        sign, lad = np.linalg.slogdet(jac)
    ladj = ld.detach().numpy().astype(np.float64) if isinstance(ld, torch.Tensor) else None
    if gl is not None and gl.shape != (b, n):
        gl = None  # a log|det| of the wrong shape: the batch-shape check reports it
    return Local(
        jac,
        np.maximum(kappa, 1.0),
        norm,
        norm_inv,
        sign,
        lad,
        y.detach().numpy().astype(np.float64),
        ladj,
        gl,
        np.asarray(x, np.float64),
    )


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


def truth_error(loc: Local, componentwise: bool = False) -> np.ndarray:
    """Error bound of the float64 autograd truth ℓ* per sample: ‖∇ₓℓ‖_∞‖J⁻¹‖₁‖y‖₁ε₆₄
    (diagonal J: Σᵢ|∂ℓ/∂xᵢ|·|yᵢ/Jᵢᵢ|·ε₆₄).

    Autograd formulas that reuse the computed output (σ′ = y(1 − y), tanh′ = 1 − y², exp′ = y)
    return the exact Jacobian at the point x + Δx that the rounded output belongs to,
    ‖Δx‖₁ ≲ ‖J⁻¹‖₁‖y‖₁ε₆₄ (per coordinate |Δxᵢ| ≲ |yᵢ/Jᵢᵢ|ε₆₄); ℓ* then errs by
    ≲ ‖∇ₓℓ‖_∞‖Δx‖₁. (Measured: 3.5e-13 at ℓ* = −22.6 for a sigmoid with x near ±7.6 —
    1600 ulps — against this bound's 5e-13.) This is the one place the truth is not computed
    in higher precision: a float32 layer's truth is its float64 evaluation, whose error this
    bounds at ε₆₄ (negligible against ε₃₂ except where outputs saturate, σ(x) at x ≳ 10); a
    float64 layer has no more precise evaluation of an opaque torch module (mpmath cannot run
    it), so the derived bound of the truth's own error is added instead of a wider threshold.
    The bound assumes the derivative formulas are evaluated accurately; where they are not,
    :func:`cross_check` finds it.
    """
    if loc.grad_ladj is None:
        return np.zeros(loc.kappa.shape[0])
    eps64 = EPS["float64"]
    with np.errstate(all="ignore"):
        if componentwise:
            d = np.abs(np.diagonal(loc.jac, axis1=1, axis2=2))
            err = (np.abs(loc.grad_ladj) * np.abs(loc.y) / d).sum(axis=1) * eps64
        else:
            err = np.abs(loc.grad_ladj).max(axis=1) * loc.norm_inv * np.abs(loc.y).sum(axis=1)
            err = err * eps64
    return np.where(np.isfinite(err), err, np.inf)


def kappa_reference(loc: Local, n: int, dtype: str, componentwise: bool = False) -> np.ndarray:
    """κ_eff (b,) of judging a ``dtype`` log|det| against the float64 ℓ* of ``loc``:
    :func:`kappa_logdet` (:func:`kappa_logdet_diagonal` for a diagonal J) plus the truth's own
    error :func:`truth_error` in the same units, /(nε)."""
    base = kappa_logdet_diagonal(loc, n) if componentwise else kappa_logdet(loc, n)
    return base + truth_error(loc, componentwise) / (n * EPS[dtype])


@dataclass
class CrossCheck:
    """A second, forward-mode evaluation of the reference Jacobian of a batch of m rows.

    ``forward`` the forward-mode :class:`Local` at those rows (``None`` when the layer does not
    support forward-mode AD; ``reason`` says why); ``ratio`` (m,) how far the two evaluations
    disagree in float64 units: the larger of maxᵢ ‖J_rev[i] − J_fwd[i]‖₁/(ε₆₄·max of the two
    rows' norms) over the rows i of J and |ℓ*_rev − ℓ*_fwd|/(nκ_eff ε₆₄) with the larger κ_eff
    of the two (∞ when the determinants' signs differ), each where both of its values are
    finite (NaN where neither is); ``disputed`` (m,) rows whose ratio exceeds THRESHOLD: the
    reference is unreliable there; ``kappa`` (m,) κ_eff of judging a value of the dtype under
    test against the forward-mode ℓ* (:func:`kappa_reference`).
    """

    forward: Local | None
    ratio: np.ndarray
    disputed: np.ndarray
    kappa: np.ndarray
    reason: str = ""

    def describe(self, j: int, reverse: Local) -> str:
        """Row ``j``'s two evaluations in words (``reverse`` the reverse-mode Local at the
        rows)."""
        if self.forward is None:
            return f"no forward-mode estimate of the reference Jacobian: {self.reason}"
        f = self.forward
        verdict = "unreliable" if self.disputed[j] else "corroborated"
        differ = (
            "their determinants' signs differ"
            if self.ratio[j] == math.inf
            else f"they differ by {self.ratio[j]:.3g} in float64 units (allowed {THRESHOLD:g})"
        )
        return (
            f"reference Jacobian {verdict}: reverse-mode slogdet "
            f"({reverse.sign[j]:+.0f}, {reverse.logabsdet[j]:.17g}), forward-mode "
            f"({f.sign[j]:+.0f}, {f.logabsdet[j]:.17g}); {differ}"
        )


def cross_check(
    ref: Adapter,
    x: np.ndarray,
    reverse: Local,
    dtype: str,
    *,
    inverse: bool = False,
    componentwise: bool = False,
) -> CrossCheck:
    """Forward-mode Jacobian of ``ref`` at the batch ``x`` (m, n) against ``reverse`` (the
    reverse-mode :class:`Local` of the same batch): see the module docstring ("Reference
    Jacobian"). The whole batch is passed, as for ``reverse``, so that both evaluate the same
    batch Jacobian (a layer whose rows interact is then judged by both alike). Never raises
    for a layer without forward-mode AD: every row is then undisputed and ``reason`` says
    why."""
    m, n = np.shape(x)
    try:
        fwd = local(ref, x, inverse=inverse, mode="forward")
    except (Unsupported, LayerFault) as exc:  # no second estimate: the caller's verdict stands
        nan = np.full(m, np.nan)
        return CrossCheck(None, nan, np.zeros(m, dtype=bool), np.full(m, math.inf), str(exc))
    comp = componentwise and diagonal(fwd, np.isfinite(fwd.jac).all(axis=(1, 2)))
    both = np.fmax(
        kappa_reference(reverse, n, "float64", componentwise),
        kappa_reference(fwd, n, "float64", comp),
    )  # the larger allowance: the factor 2 of their sum is absorbed in THRESHOLD
    eps64 = EPS["float64"]
    jfin = np.isfinite(fwd.jac).all(axis=(1, 2)) & np.isfinite(reverse.jac).all(axis=(1, 2))
    lfin = np.isfinite(fwd.logabsdet) & np.isfinite(reverse.logabsdet)
    with np.errstate(all="ignore"):
        # row by row (each row of J is one vector-Jacobian product in reverse mode)
        jdiff = np.abs(reverse.jac - fwd.jac).sum(axis=2)
        jscale = eps64 * np.fmax(np.abs(reverse.jac).sum(axis=2), np.abs(fwd.jac).sum(axis=2))
        jrows = np.where(jdiff == 0, 0.0, jdiff / jscale)
        jratio = np.where(jfin, np.where(np.isnan(jrows), math.inf, jrows).max(axis=1), np.nan)
        lratio = np.abs(fwd.logabsdet - reverse.logabsdet) / (n * np.maximum(both, 1.0) * eps64)
        lratio = np.where(lfin, np.where(fwd.sign == reverse.sign, lratio, math.inf), np.nan)
        ratio = np.fmax(jratio, lratio)  # NaN only where neither could be compared
    disputed = ratio > THRESHOLD
    return CrossCheck(fwd, ratio, disputed, kappa_reference(fwd, n, dtype, comp))


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
    scales = np.asarray(scales, dtype=np.float64)
    rows = np.isfinite(scales)
    v = judge_values(out, expected, scales, rows, dtype)
    w = Worst(skipped=int((~rows).sum()))
    if v.ratio is not None:
        w.value, w.row, w.ratio, w.kappa = v.value, v.row, v.ratio, v.kappa
    return w


def worst_logdet(
    out: np.ndarray, expected: np.ndarray, kappas: np.ndarray, n: int, dtype: str
) -> Worst:
    """Largest :func:`logdet_ratio` over samples (b,) with a κ per sample."""
    kappas = np.asarray(kappas, dtype=np.float64)
    v = judge_logdet(out, expected, kappas, np.ones(kappas.shape, dtype=bool), n, dtype)
    w = Worst(skipped=int((~np.isfinite(kappas)).sum()))
    if v.ratio is not None:
        w.value, w.row, w.ratio, w.kappa = v.value, v.row, v.ratio, v.kappa
    return w


def subset(loc: Local, keep: np.ndarray) -> Local:
    """``loc`` restricted to the rows ``keep`` (bool (b,) or indices); a per-batch value of
    another shape (a 0-d log|det|) is kept as it is."""
    b = loc.jac.shape[0]

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return a[keep] if a is not None and a.ndim >= 1 and a.shape[0] == b else a

    return Local(
        loc.jac[keep],
        loc.kappa[keep],
        loc.norm[keep],
        loc.norm_inv[keep],
        loc.sign[keep],
        loc.logabsdet[keep],
        loc.y[keep],
        cut(loc.ladj),
        cut(loc.grad_ladj),
        cut(loc.x),
    )


# -- vectorised judgement of a batch -------------------------------------------------------------
def reference_finite(loc: Local) -> np.ndarray:
    """Rows (b,) whose float64 reference values are finite: y, J and (when given) log|det|."""
    ok = np.isfinite(loc.y).all(axis=1) & np.isfinite(loc.jac).all(axis=(1, 2))
    if loc.ladj is not None and loc.ladj.shape == ok.shape:
        ok &= np.isfinite(loc.ladj)
    return ok


def must_be_finite(x: np.ndarray, ref_ok: np.ndarray | None = None) -> np.ndarray:
    """Rows (b,) whose outputs must be finite: every |xᵢ| ≤ :data:`LARGE_INPUT` (always), or
    beyond it where the float64 copy's values are finite (``ref_ok``; ``None``: not known yet,
    only the first kind)."""
    near = (np.abs(x) <= LARGE_INPUT).all(axis=1)
    return near if ref_ok is None else near | ref_ok


@dataclass(frozen=True)
class NonFinite:
    """A non-finite output: which (``what``), the row and the first offending value."""

    what: str
    row: int
    value: float


def first_nonfinite(values: dict[str, np.ndarray], rows: np.ndarray) -> NonFinite | None:
    """The first (in ``values`` order, then by row) output with a non-finite entry among the
    ``rows`` (bool (b,)); each value is an array of b rows (any trailing shape)."""
    for what, a in values.items():
        a2 = np.asarray(a, dtype=np.float64).reshape(rows.shape[0], -1)
        bad = np.flatnonzero(~np.isfinite(a2).all(axis=1) & rows)
        if bad.size:
            j = int(bad[0])
            return NonFinite(what, j, float(a2[j][~np.isfinite(a2[j])][0]))
    return None


def diagonal(loc: Local, rows: np.ndarray) -> bool:
    """True when every off-diagonal entry of the float64 J is exactly zero on ``rows`` (bool
    (b,), at least one): the layer acts coordinate by coordinate there."""
    if not rows.any():
        return False
    jac = loc.jac[rows]
    n = jac.shape[-1]
    return bool(n == 1 or not np.any(jac[:, ~np.eye(n, dtype=bool)]))


def _diag(loc: Local) -> np.ndarray:
    return np.abs(np.diagonal(loc.jac, axis1=1, axis2=2))


def input_scales(
    loc: Local, x: np.ndarray, y: np.ndarray, dtype: str, *, componentwise: bool
) -> np.ndarray:
    """Allowed error of an x-value in units of ε: per row (b,) κ‖x‖₁ + ‖J⁻¹‖₁(‖y‖₁ + nμ/ε)
    (:func:`scale_input` plus underflow), or per coordinate (b, n) for a diagonal J:
    |xᵢ| + (|yᵢ| + μ/ε)/|Jᵢᵢ| (module docstring). ∞ where J is singular."""
    lam = UNDERFLOW[dtype] / EPS[dtype]
    with np.errstate(all="ignore"):
        if componentwise:
            d = _diag(loc)
            out = np.abs(x) + (np.abs(y) + lam) / d
        else:
            out = scale_input(loc, x, y) + loc.norm_inv * x.shape[-1] * lam
    return np.where(np.isnan(out), math.inf, out)


def output_scales(
    loc: Local, x: np.ndarray, y: np.ndarray, dtype: str, *, componentwise: bool
) -> np.ndarray:
    """Allowed error of a y-value in units of ε: per row κ‖y‖₁ + ‖J‖₁‖x‖₁ + nμ/ε
    (:func:`scale_output` plus underflow), or per coordinate |yᵢ| + |Jᵢᵢxᵢ| + μ/ε."""
    lam = UNDERFLOW[dtype] / EPS[dtype]
    with np.errstate(all="ignore"):
        if componentwise:
            out = np.abs(y) + _diag(loc) * np.abs(x) + lam
        else:
            out = scale_output(loc, x, y) + x.shape[-1] * lam
    return np.where(np.isnan(out), math.inf, out)


def kappa_logdet_diagonal(loc: Local, n: int) -> np.ndarray:
    """κ_eff of a log|det| = Σᵢ log|Jᵢᵢ| per row: 1 + (Σᵢ|log|Jᵢᵢ|| + Σᵢ|∂ℓ/∂xᵢ·xᵢ|)/n
    (∞ where a Jᵢᵢ is 0 or not finite)."""
    sens = 0.0
    if loc.grad_ladj is not None and loc.x is not None:
        sens = np.abs(loc.grad_ladj * loc.x).sum(axis=1)
    with np.errstate(all="ignore"):
        out = 1.0 + (np.abs(np.log(_diag(loc))).sum(axis=1) + sens) / n
    return np.where(np.isfinite(out), out, math.inf)


@dataclass
class Verdict:
    """Judgement of a batch: ``ratios`` (b,) per row (NaN where not judged), ``judged`` the
    judged rows (bool (b,)); the worst ``value`` at ``row`` (−1: none judged), its coordinate
    ``coord`` (per-coordinate judgement, else ``None``), κ_eff and the engine ``ratio``."""

    ratios: np.ndarray
    judged: np.ndarray
    value: float = 0.0
    row: int = -1
    coord: int | None = None
    kappa: float = 1.0
    ratio: Ratio | None = None

    @property
    def count(self) -> int:
        """Number of rows judged."""
        return int(self.judged.sum())


def _ratios(err: np.ndarray, den: np.ndarray) -> np.ndarray:
    """err/den as the engine divides: ∞ for a non-finite error, 0 for a zero one."""
    with np.errstate(all="ignore"):
        r = np.where(err == 0, 0.0, err / den)
    return np.where(
        np.isfinite(err), np.where(den > 0, r, np.where(err == 0, 0.0, math.inf)), math.inf
    )


def judge_values(
    out: np.ndarray, expected: np.ndarray, scales: np.ndarray, rows: np.ndarray, dtype: str
) -> Verdict:
    """:func:`forward_ratio` of every judged row (``rows``, bool (b,)) of ``out`` against
    ``expected`` (b, n) at once, each allowed ``scales``·ε: per row (``scales`` (b,), κ_eff =
    scale/‖expected‖₁, at least 1, the scale itself for a zero row) or per coordinate
    (``scales`` (b, n): each coordinate a row of one entry). Rows with an infinite scale are not
    judged; entries that are the same infinity on both sides agree (error 0). The engine's
    Ratio is computed for the worst row (coordinate) only."""
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    # The same infinity on both sides agrees (as logdet_ratio has it): two computations of a
    # value whose input sits on the end of the codomain both give atanh(1) = inf.
    same_inf = np.isinf(expected) & (out == expected)
    if same_inf.any():
        out, expected = np.where(same_inf, 0.0, out), np.where(same_inf, 0.0, expected)
    scales = np.asarray(scales, dtype=np.float64)
    per_coord = scales.ndim == 2
    with np.errstate(all="ignore"):
        err = np.abs(out - expected)
        ref = np.abs(expected)
        if not per_coord:
            err, ref = err.sum(axis=1), ref.sum(axis=1)
        kap = np.where(ref > 0, np.maximum(1.0, scales / ref), np.maximum(1.0, scales))
        den = np.where(ref > 0, ref, 1.0) * kap * EPS[dtype]
        ratio = _ratios(err, den)
    finite_scale = np.isfinite(scales).all(axis=1) if per_coord else np.isfinite(scales)
    judged = np.asarray(rows, dtype=bool) & finite_scale
    row_ratio = ratio.max(axis=1) if per_coord else ratio
    v = Verdict(np.where(judged, row_ratio, np.nan), judged)
    if not judged.any():
        return v
    j = int(np.flatnonzero(judged)[np.argmax(row_ratio[judged])])
    v.value, v.row = float(row_ratio[j]), j
    with np.errstate(all="ignore"):  # a non-finite worst row: inf − inf is its NaN
        if per_coord:
            i = int(np.argmax(ratio[j]))
            v.coord, v.kappa = i, float(kap[j, i])
            v.ratio = forward_ratio(
                out[j, i : i + 1], expected[j, i : i + 1], kappa=v.kappa, dtype=dtype
            )
        else:
            v.kappa = float(kap[j])
            v.ratio = forward_ratio(out[j], expected[j], kappa=v.kappa, dtype=dtype)
    v.value = v.ratio.value  # the engine's figure is the one reported
    return v


def judge_logdet(
    out: np.ndarray, expected: np.ndarray, kappas: np.ndarray, rows: np.ndarray, n: int, dtype: str
) -> Verdict:
    """:func:`logdet_ratio` |ℓ − ℓ*|/(nκε) of every judged row at once, κ per row (``kappas``
    (b,), rows with an infinite κ not judged); ±∞ matches only itself, NaN nothing. The engine's
    Ratio is computed for the worst row only."""
    out = np.asarray(out, dtype=np.float64).reshape(-1)
    expected = np.broadcast_to(np.asarray(expected, dtype=np.float64), out.shape)
    kappas = np.asarray(kappas, dtype=np.float64)
    with np.errstate(all="ignore"):
        same_inf = np.isinf(out) & (out == expected)
        err = np.where(same_inf, 0.0, np.abs(out - expected))
        err = np.where(np.isnan(out) | np.isnan(expected), np.nan, err)
        kap = np.maximum(1.0, kappas)
        ratio = _ratios(err, n * kap * EPS[dtype])
    judged = np.asarray(rows, dtype=bool) & np.isfinite(kappas)
    v = Verdict(np.where(judged, ratio, np.nan), judged)
    if not judged.any():
        return v
    j = int(np.flatnonzero(judged)[np.argmax(ratio[judged])])
    v.row, v.kappa = j, float(kappas[j])
    with np.errstate(all="ignore"):
        v.ratio = logdet_ratio(out[j], expected[j], n=n, kappa=float(kap[j]), dtype=dtype)
    v.value = v.ratio.value
    return v
