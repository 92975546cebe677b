"""Invertibility: the float64 Jacobian is finite and of full rank on the layer's domain.

A layer that maps every input to one point (``y = 0·x + w``) or zeroes a coordinate has a
singular Jacobian everywhere; every value check must then skip its rows (no κ, no bound), so
without this check such a layer would pass on nothing. Here a singular or non-finite Jacobian
on in-domain inputs is the finding itself.

Rank criterion (numerical rank, as LAPACK/NumPy's ``matrix_rank``): J (n × n, float64 autograd
of the float64 copy) is singular to working precision when σ_min(J) ≤ n·ε₆₄·σ_max(J). A
nonsingular J whose smallest singular value is that small cannot be told from a singular one in
float64 — its inverse is not determined by any float64 computation. Inputs are ordinary values
(±[2⁻⁸, 8] or the middle of a bounded domain), where a bijection's derivative is far from
saturation; the domain's ends are the edges check's.
"""

from __future__ import annotations

import numpy as np

from invlin.testing import eps
from invlin.testing.strategies import wide_inputs
from invlin.validate.checks.base import CheckContext, Make, pair, result
from invlin.validate.checks.truth import Local, cross_check, local
from invlin.validate.results import CheckResult
from invlin.validate.search import Probe, tensor_literal

__all__ = ["invertibility", "rank_deficiency"]

NAME = "invertibility"
#: Most rows of one case: one forward and n backward passes judge them all.
ROWS = 64


def rank_deficiency(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per matrix of ``jac`` (b, n, n): ``(singular, rank)``, both (b,).

    ``singular[j]`` is True when J_j has a non-finite entry or σ_min ≤ n·ε₆₄·σ_max (a zero
    matrix included); ``rank[j]`` counts singular values above that threshold (0 for a
    non-finite J).

    >>> s, r = rank_deficiency(np.stack([np.eye(2), np.diag([1.0, 0.0])]))
    >>> s.tolist(), r.tolist()
    ([False, True], [2, 1])
    """
    jac = np.asarray(jac, dtype=np.float64)
    b, n = jac.shape[0], jac.shape[-1]
    finite = np.isfinite(jac).reshape(b, -1).all(axis=1)
    rank = np.zeros(b, dtype=int)
    if finite.any():
        sv = np.linalg.svd(jac[finite], compute_uv=False)  # (k, n), descending
        tol = sv[:, :1] * n * eps("float64")
        rank[finite] = (sv > tol).sum(axis=1)
    return (~finite) | (rank < n), rank


def _describe(jac: np.ndarray, rank: int) -> str:
    """Why J (n, n) is singular, in words a layer author recognises."""
    n = jac.shape[0]
    if not np.isfinite(jac).all():
        bad = np.argwhere(~np.isfinite(jac))[0]
        return f"the Jacobian has a non-finite entry ∂y{bad[0]}/∂x{bad[1]} = {jac[bad[0], bad[1]]}"
    if not np.any(jac):
        return "the Jacobian is zero: the output does not depend on the input (a constant map)"
    zero_rows = np.flatnonzero(~np.any(jac, axis=1))
    if zero_rows.size:
        return (
            f"output coordinate(s) {zero_rows.tolist()} do not depend on the input "
            f"(zero Jacobian rows): rank {rank} of {n}"
        )
    zero_cols = np.flatnonzero(~np.any(jac, axis=0))
    if zero_cols.size:
        return (
            f"input coordinate(s) {zero_cols.tolist()} do not reach the output (zero "
            f"Jacobian columns): rank {rank} of {n}"
        )
    sv = np.linalg.svd(jac, compute_uv=False)
    return (
        f"the Jacobian has numerical rank {rank} of {n} (σ_min/σ_max = "
        f"{sv[-1] / sv[0]:.3g} ≤ n·ε₆₄ = {n * eps('float64'):.3g})"
    )


def _corroborated(
    ref: object, x: np.ndarray, reverse: Local, singular: np.ndarray, inverse: bool
) -> tuple[np.ndarray, int]:
    """``singular`` (m,) kept only where a forward-mode Jacobian of the same batch does not
    contradict it: a row whose two evaluations disagree beyond their float64 bound and whose
    forward-mode J is of full rank is not judged (the reverse-mode reference is unreliable
    there; see :func:`~invlin.validate.checks.truth.cross_check`). Also returns how many rows
    were set aside."""
    cc = cross_check(ref, x, reverse, "float64", inverse=inverse)  # type: ignore[arg-type]
    if cc.forward is None:
        return singular, 0
    full_rank_fwd = ~rank_deficiency(cc.forward.jac)[0]
    spared = singular & cc.disputed & full_rank_fwd
    return singular & ~spared, int(spared.sum())


def invertibility(make: Make, ctx: CheckContext) -> CheckResult:
    """The Jacobians of the forward at x and of the inverse at y = f(x) are finite and of full
    numerical rank (σ_min > n·ε₆₄·σ_max, float64 autograd of the float64 copy) for in-domain
    inputs x; otherwise the layer is not invertible there and the check fails, naming the row
    and why (constant map, output coordinates that ignore the input, rank).

    Judged: every row whose Jacobian could be formed. A row found singular in reverse mode is
    checked again in forward mode: where the two disagree beyond their float64 bound and the
    forward-mode Jacobian is of full rank, the reference is unreliable and the row is not
    judged. A layer without an autograd graph with respect to its input is skipped (no
    Jacobian to judge).
    """
    _, ref = pair(make, ctx)
    n = ctx.features
    strategy = wide_inputs(
        n, dtype=ctx.dtype, domain=ref.domain(), mixes=("ordinary",), max_rows=ROWS
    )

    def probe(x: np.ndarray) -> Probe:
        fwd = local(ref, x, grad_ladj=False)
        singular, rank = rank_deficiency(fwd.jac)
        spared = 0
        if singular.any():
            singular, spared = _corroborated(ref, x, fwd, singular, inverse=False)
        where = "forward at x"
        if not singular.any():
            y = fwd.y
            keep = np.isfinite(y).all(axis=1)
            inv = local(ref, y[keep], grad_ladj=False, inverse=True) if keep.any() else None
            if inv is not None:
                s_inv, r_inv = rank_deficiency(inv.jac)
                if s_inv.any():
                    s_inv, more = _corroborated(ref, y[keep], inv, s_inv, inverse=True)
                    spared += more
                if s_inv.any():
                    rows = np.flatnonzero(keep)
                    j_inv = int(np.flatnonzero(s_inv)[0])
                    j = int(rows[j_inv])
                    why = _describe(inv.jac[j_inv], int(r_inv[j_inv]))
                    return Probe(
                        ok=False,
                        judged=x.shape[0],
                        message=(f"the inverse is not invertible at y = f(x) of row {j}: {why}"),
                        example={"x": x, "row": j, "y": y[j], "jacobian": inv.jac[j_inv]},
                    )
            judged = x.shape[0] - spared
            note = (
                f"; {spared} row(s) not judged: reverse-mode Jacobian singular, forward mode "
                "of full rank (the reference is unreliable there)"
                if spared
                else ""
            )
            return Probe(
                ok=True,
                judged=judged,
                message=f"full rank at {judged} rows, both directions{note}",
            )
        j = int(np.flatnonzero(singular)[0])
        why = _describe(fwd.jac[j], int(rank[j]))
        return Probe(
            ok=False,
            judged=x.shape[0],
            message=f"the layer is not invertible at row {j} ({where}): {why}",
            example={"x": x, "row": j, "jacobian": fwd.jac[j]},
        )

    def snippet(x: np.ndarray) -> str:
        return (
            f"x = {tensor_literal(x, 'float64')}\n"
            "ref = adapter.to(dtype=torch.float64, device='cpu')\n"
            "def jacobians(f, rows):\n"
            "    return torch.stack([torch.autograd.functional.jacobian(\n"
            "        lambda r: f(r[None])[0][0], row) for row in rows])\n"
            "y = ref.forward(x)[0].detach()\n"
            "for name, jac in (('forward', jacobians(ref.forward, x)),\n"
            "                  ('inverse', jacobians(ref.inverse, y))):\n"
            "    finite = bool(torch.isfinite(jac).all())\n"
            "    print(name, torch.linalg.svdvals(jac) if finite else jac)\n"
        )

    out = ctx.search(strategy, probe, snippet=snippet, share=0.1)
    return result(NAME, ctx, out, "Jacobians finite and of full rank both ways")
