"""What the value checks (round trips, log|det|) share: wide input batches and the finiteness
rule.

Inputs. :func:`strategy` is :func:`invlin.testing.strategies.wide_inputs` for the layer: a
Hypothesis draw of a seed, a regime mix and a row count, from which NumPy builds up to
:data:`ROWS` rows — ordinary entries ±[2⁻⁸, 8], large ones up to 1e4 and beyond
(:func:`~invlin.testing.strategies.huge_input`), one extreme coordinate among ordinary ones,
points next to the ends of a bounded domain, and preimages (under the float64 copy's inverse) of
points next to the ends of a bounded codomain. Every search also runs :func:`explicit` first: a
full mixed batch, so even a two-example search meets every regime.

Finiteness (the "safe range", :func:`judged_rows`). On a finite input inside the domain with
every |xᵢ| ≤ 1e4 (:data:`~invlin.testing.strategies.LARGE_INPUT`), y, the inverse's x and both
log|det| must be finite and no call may raise, whatever the float64 copy does. Beyond 1e4 the
float64 copy draws the line: a row is judged only where the float64 copy computes it — its y,
J and log|det| finite, and its inverse of its own y finite, without raising. So a float64 layer
is never failed for overflowing beyond 1e4 (it is its own copy), and a float32 layer is failed
where it overflows (or raises) on a row its float64 copy handles. The inverse is not asked to
invert a y rounded onto a finite end of ``adapter.codomain()`` (its exact preimage is ±∞), nor
to return a finite x where the float64 Jacobian is singular (a saturated σ) or where rounding
to the dtype put y out of the map's range (:func:`out_of_reach`: σ(22.6) = 1.0 in float32). A
non-finite output is a failure that names the output and the row.

Reports. Every failing probe names its row (``example["row"]``), so the search reduces a
failing batch to that row alone when it fails by itself (:func:`invlin.validate.search.search`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis.strategies import SearchStrategy

from invlin.testing.strategies import LARGE_INPUT, WIDE_ROWS, wide_batch, wide_inputs
from invlin.validate.checks.base import CheckContext, numpy64
from invlin.validate.checks.truth import Local, NonFinite, local, reference_finite, subset
from invlin.validate.protocol import Adapter, Unsupported
from invlin.validate.search import Probe

__all__ = [
    "ROWS",
    "SHARE",
    "Judged",
    "explicit",
    "inside_codomain",
    "judged_rows",
    "nonfinite_probe",
    "out_of_reach",
    "preimage",
    "strategy",
]

#: Largest batch a value check draws.
ROWS: int = WIDE_ROWS
#: Share of the profile's example count a value check runs (ci: 12 batches of up to 128 rows,
#: after the explicit full batch) — each example judges tens of rows, not one to eight.
SHARE: float = 0.08


def preimage(ref: Adapter) -> Callable[[np.ndarray], np.ndarray]:
    """y (r, n) → x (r, n) by the float64 copy's inverse; NaN rows where it raises (then the
    strategy uses ordinary rows instead)."""

    def inv(y: np.ndarray) -> np.ndarray:
        try:
            with torch.no_grad():
                x, _ = ref.inverse(torch.as_tensor(np.asarray(y, dtype=np.float64)))
            return numpy64(x).reshape(y.shape)
        except Exception:  # the layer's inverse refused these targets: no codomain rows
            return np.full(np.shape(y), np.nan)

    return inv


def _codomain_preimage(tested: Adapter, ref: Adapter) -> Callable[[np.ndarray], np.ndarray] | None:
    cod = tested.codomain()
    if cod is None or not (np.isfinite(cod[0]) or np.isfinite(cod[1])):
        return None
    return preimage(ref)


def strategy(
    ctx: CheckContext,
    tested: Adapter,
    ref: Adapter,
    *,
    huge: float | None = None,
    mixes: tuple[str, ...] | None = None,
) -> SearchStrategy[np.ndarray]:
    """:func:`wide_inputs` for the layer: its domain and codomain, the float64 copy's inverse
    as the preimage, up to :data:`ROWS` rows."""
    return wide_inputs(
        ctx.features,
        dtype=ctx.dtype,
        domain=tested.domain(),
        codomain=tested.codomain(),
        preimage=_codomain_preimage(tested, ref),
        max_rows=ROWS,
        huge=huge,
        mixes=mixes,
    )


def explicit(
    ctx: CheckContext,
    tested: Adapter,
    ref: Adapter,
    *,
    huge: float | None = None,
    mix: str = "mixed",
) -> list[np.ndarray]:
    """One full batch of ``mix`` (seeded with the context's seed), run before the search."""
    return [
        wide_batch(
            ctx.features,
            seed=ctx.seed,
            mix=mix,
            rows=ROWS,
            dtype=ctx.dtype,
            domain=tested.domain(),
            codomain=tested.codomain(),
            preimage=_codomain_preimage(tested, ref),
            huge=huge,
        )
    ]


def out_of_reach(ref: Adapter, y: np.ndarray, y_ref: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Among ``rows`` (bool (b,)), those whose tested-dtype ``y`` (b, n) differs from the float64
    copy's ``y_ref`` and that the float64 copy cannot invert (non-finite x or log|det|, or it
    raises): rounding to the dtype put y outside the map's range — σ(22.6) is 1.0 in float32,
    σ(−172) is 0 — and its exact preimage is ±∞, so a non-finite inverse there is right."""
    out = np.zeros(y.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(rows & (y != y_ref).any(axis=1) & np.isfinite(y).all(axis=1))
    if cand.size:
        out[cand] = ~_inverse_ok(ref, y[cand])
    return out


def inside_codomain(y: np.ndarray, codomain: tuple[float, float] | None) -> np.ndarray:
    """Rows (b,) of ``y`` (b, n) that are finite and strictly inside ``codomain``."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(y).all(axis=1)
        if codomain is not None:
            ok &= ((y > codomain[0]) & (y < codomain[1])).all(axis=1)
    return ok


@dataclass
class Judged:
    """The rows of a batch a value check judges: ``index`` (m,) into the batch, ``x`` (m, n)
    those rows, ``loc`` the float64 copy at them; ``dropped`` rows beyond 1e4 that the float64
    copy does not compute (not judged)."""

    index: np.ndarray
    x: np.ndarray
    loc: Local
    dropped: int


def _inverse_ok(ref: Adapter, y: np.ndarray) -> np.ndarray:
    """Rows (r,) of ``y`` the float64 copy inverts to a finite x and log|det| (row by row when
    the batch raises)."""

    def ok(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xr, lr = ref.inverse(torch.as_tensor(rows))
        xr = numpy64(xr).reshape(rows.shape[0], -1)
        lr = numpy64(torch.as_tensor(lr)).reshape(-1)
        fin = np.isfinite(xr).all(axis=1)
        return fin & np.isfinite(lr) if lr.shape == fin.shape else fin & np.isfinite(lr).all()

    try:
        return ok(y)
    except Unsupported:
        raise
    except Exception:  # the float64 copy raises on some row: find which, one by one
        out = np.zeros(y.shape[0], dtype=bool)
        for i in range(y.shape[0]):
            try:
                out[i] = bool(ok(y[i : i + 1])[0])
            except Unsupported:
                raise
            except Exception:
                out[i] = False
        return out


def judged_rows(
    ref: Adapter,
    x: np.ndarray,
    codomain: tuple[float, float] | None,
    *,
    inverse: bool = True,
    dtype: str = "float64",
) -> Judged:
    """The rows of ``x`` (b, n) a value check judges and the float64 copy at them: every row
    with all |xᵢ| ≤ 1e4, and beyond that the rows the float64 copy computes (finite y, J and
    log|det|; with ``inverse``, its inverse of its own y — where y is strictly inside the
    codomain — finite and not raising). Rows whose exact y or log|det| (the float64 copy's)
    lies beyond the largest finite value of ``dtype`` are not judged either: there ±inf is the
    correctly rounded answer, not a defect. An exception of the float64 copy on rows within 1e4
    is the layer's and propagates."""
    near = (np.abs(x) <= LARGE_INPUT).all(axis=1)
    keep = np.ones(x.shape[0], dtype=bool)
    try:
        loc = local(ref, x)
    except Unsupported:
        raise
    except Exception:
        if near.all():
            raise
        keep = near
        loc = local(ref, x[keep])
    far = ~near[keep]
    if far.any():
        ok = reference_finite(loc) | ~far
        if inverse:
            ask = np.flatnonzero(far & ok & inside_codomain(loc.y, codomain))
            if ask.size:
                ok[ask] = _inverse_ok(ref, loc.y[ask])
        idx = np.flatnonzero(keep)
        keep = np.zeros(x.shape[0], dtype=bool)
        keep[idx[ok]] = True
        loc = subset(loc, ok)
    top = float(np.finfo(np.dtype(dtype)).max)

    def beyond(v: np.ndarray) -> np.ndarray:  # finite in float64, not representable in dtype
        with np.errstate(invalid="ignore"):
            return np.isfinite(v) & (np.abs(v) > top)

    fits = ~beyond(loc.y).any(axis=1)
    if loc.ladj is not None and loc.ladj.shape == fits.shape:
        fits &= ~beyond(loc.ladj)
    if not fits.all():
        idx = np.flatnonzero(keep)
        keep = np.zeros(x.shape[0], dtype=bool)
        keep[idx[fits]] = True
        loc = subset(loc, fits)
    index = np.flatnonzero(keep)
    return Judged(index, x[index], loc, int(x.shape[0] - index.size))


def nonfinite_probe(
    bad: NonFinite, x: np.ndarray, index: np.ndarray | None = None, **extra: object
) -> Probe:
    """The failure "``what`` is ``value`` at row j" on a finite input inside the domain (``x``
    the batch, ``bad.row`` counted in ``index`` when given)."""
    j = bad.row if index is None else int(index[bad.row])
    msg = (
        f"{bad.what} is {bad.value} at row {j} for the finite input x = {x[j].tolist()}"
        f" (outputs must be finite on finite inputs inside the domain)"
    )
    example = {"x": x, "row": j, "output": bad.what, "value": bad.value, **extra}
    return Probe(ok=False, ratio=float("inf"), message=msg, example=example, judged=0)
