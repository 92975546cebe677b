"""Parameters moved off their initialisation, so that no layer is judged at a trivial point.

Many layers start as the identity (a coupling whose last layer is zero-initialised, an
LU layer with L = U = I, P4InvLinear with u = 0): every check passes there whatever the code
does away from it. :func:`move_off_init` adds a seeded perturbation to every trainable
parameter, δ = c·N(0, 1)·(s·|p| + a) with (s, a) = :data:`PERTURBATION` and c = 1, ½, ¼, …,
keeping the first c for which the layer is still valid (no exception, finite outputs, a
float64 Jacobian that is no more singular than before) on a seeded standard batch
(:func:`standard_inputs`). :func:`perturb` is that formula (an optimizer step's worth of
change; the cache and gradient checks use it too) and :func:`is_identity` tells whether a
layer computes y = x with log|det| = 0.

The layer under test and its float64 reference must carry the same parameters: perturb the
layer first and deep-copy it afterwards, or apply the same :class:`Perturbation` again with
:func:`reapply` (same seed, same scale, hence the same δ, to a freshly built layer).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from invlin._validation import positive_int
from invlin.testing import eps
from invlin.validate.isolation import one_thread
from invlin.validate.protocol import Adapter, Unsupported

__all__ = [
    "HALVINGS",
    "PERTURBATION",
    "Perturbation",
    "is_identity",
    "move_off_init",
    "perturb",
    "reapply",
    "standard_inputs",
]

#: (s, a) of δ = N(0, 1)·(s·|p| + a): 10 % of each entry plus an absolute 0.05, so that a zero
#: parameter (a zero-initialised last layer, u = 0) moves as well.
PERTURBATION: tuple[float, float] = (0.1, 0.05)

#: How often :func:`move_off_init` halves the scale before it gives up (scales 1 … 2⁻⁴).
HALVINGS = 4

_SCREEN_ROWS = 16  # rows of the standard batch the validity screen runs on
_IDENTITY_ROWS = 32  # rows on which is_identity compares y with x
_KAPPA_LIMIT = 1e4  # screen: κ₁(J) may grow up to max(1e4, 10·κ₁ before the perturbation)
_KAPPA_GROWTH = 10.0
_ULPS = 8.0  # is_identity: |y − x| ≤ 8ε|x| and |log|det|| ≤ 8nε


def standard_inputs(
    features: int,
    rows: int,
    *,
    seed: int,
    dtype: str | torch.dtype = "float64",
    domain: tuple[float, float] | None = None,
) -> np.ndarray:
    """A seeded standard batch, shape (rows, features), float64 values exact in ``dtype``.

    Gaussian draws g ~ N(0, 1) placed in ``domain`` (lo, hi): on all of R, g with |g| clipped to
    [2⁻⁸, 4] (no tiny nonzero entries, whose products underflow); on a bounded interval,
    lo + (hi − lo)(0.05 + 0.9·σ(g)); on a half-line, lo + e^g or hi − e^g. Then rounded to
    ``dtype``; the same (features, rows, seed, dtype, domain) always give the same batch.
    """
    features = positive_int(features, "features")
    rows = positive_int(rows, "rows")
    name = str(dtype).removeprefix("torch.")
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    g = np.random.default_rng(int(seed)).standard_normal((rows, features))
    lo, hi = (-math.inf, math.inf) if domain is None else (float(domain[0]), float(domain[1]))
    if not lo < hi:
        raise ValueError(f"domain must be an interval (lo, hi) with lo < hi, got {domain!r}")
    if math.isfinite(lo) and math.isfinite(hi):
        x = lo + (hi - lo) * (0.05 + 0.9 / (1 + np.exp(-g)))
    elif math.isfinite(lo):
        x = lo + np.exp(g)
    elif math.isfinite(hi):
        x = hi - np.exp(g)
    else:
        x = np.sign(g) * np.clip(np.abs(g), 2.0**-8, 4.0)
    return x.astype(name).astype(np.float64)


@torch.no_grad()
def perturb(adapters: Sequence[Adapter], seed: int, *, scale: float = 1.0) -> int:
    """Add the same δ = scale·N(0, 1)·(s·|p| + a) ((s, a) = :data:`PERTURBATION`) in place to
    the i-th trainable parameter of every adapter in ``adapters``; returns how many parameter
    tensors were changed. δ is drawn (seeded, in float64 on the CPU) from the first adapter's
    parameters, so the same seed and scale give the same δ for every copy of a layer."""
    lists = [a.parameters() for a in adapters]
    first = lists[0]
    if any(len(p) != len(first) for p in lists):
        raise ValueError("the adapters must have the same parameters")
    gen = torch.Generator().manual_seed(int(seed))
    rel, absolute = PERTURBATION
    for i, p in enumerate(first):
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        delta = scale * noise * (rel * p.detach().abs().to("cpu", torch.float64) + absolute)
        for params in lists:
            q = params[i]
            q.add_(delta.to(device=q.device, dtype=q.dtype))
    return len(first)


@dataclass(frozen=True)
class Perturbation:
    """What :func:`move_off_init` did to a layer.

    ``seed``: the seed of δ; ``scale``: the factor c applied to δ = c·N(0, 1)·(s·|p| + a)
    (0 when the layer was left as it was), so the relative scale used is ``scale``·s and the
    absolute one ``scale``·a (:attr:`relative`, :attr:`absolute`); ``changed``: parameter tensors
    moved; ``identity_before`` / ``identity``: whether the layer computed y = x with
    log|det| = 0 before / after (:func:`is_identity`, in the parameters' dtype); ``message``:
    one line for a report.
    """

    seed: int
    scale: float
    changed: int
    identity_before: bool
    identity: bool
    message: str

    @property
    def relative(self) -> float:
        """s·c: the perturbation's size relative to each entry."""
        return PERTURBATION[0] * self.scale

    @property
    def absolute(self) -> float:
        """a·c: the perturbation's absolute part."""
        return PERTURBATION[1] * self.scale


class _Screen(NamedTuple):
    """Validity of a layer on the standard batch: ``failed`` names what went wrong ("raised",
    "non-finite", "singular Jacobian"), ``kappa`` the largest κ₁(J) (∞ when
    singular, NaN when not measured)."""

    failed: frozenset[str]
    kappa: float


def _dtype_of(adapter: Adapter) -> torch.dtype:
    params = adapter.parameters()
    return params[0].dtype if params and params[0].is_floating_point() else torch.float32


def _copy(adapter: Adapter, dtype: torch.dtype | None) -> Adapter | None:
    """A deep copy (moved to ``dtype`` when given and possible), or ``None``."""
    try:
        twin = copy.deepcopy(adapter)
    except Exception:  # not copyable (a called torch Transform holding non-leaf tensors)
        return None
    if dtype is not None:
        try:
            twin.to(dtype=dtype)
        except Unsupported:
            pass  # evaluated in its own dtype
    return twin


def _screen(adapter: Adapter, seed: int) -> _Screen:
    """Run a float64 copy of ``adapter`` on the standard batch (see :class:`_Screen`)."""
    twin = _copy(adapter, torch.float64)
    if twin is None:
        return _Screen(frozenset({"not copyable"}), math.nan)
    n = twin.features
    dt = _dtype_of(twin)
    try:
        x0 = standard_inputs(n, _SCREEN_ROWS, seed=seed, dtype="float64", domain=twin.domain())
        x = torch.tensor(x0, dtype=dt, requires_grad=True)
        with torch.enable_grad():
            y, ld = twin.forward(x)
            jac = None
            if isinstance(y, torch.Tensor) and y.requires_grad and tuple(y.shape) == x.shape:
                jac = np.zeros((x.shape[0], n, n))
                for i in range(n):
                    (g,) = torch.autograd.grad(
                        y[:, i].sum(), x, retain_graph=True, allow_unused=True
                    )
                    if g is not None:
                        jac[:, i, :] = g.detach().to(torch.float64).numpy()
        with torch.no_grad():
            xb, li = twin.inverse(y.detach().clone())
    except Exception:  # the layer raised: a failure the perturbation must not introduce
        return _Screen(frozenset({"raised"}), math.nan)
    failed = set()
    values = [t.detach().to(torch.float64) for t in (y, ld, xb, li)]
    if not all(bool(torch.isfinite(v).all()) for v in values):
        failed.add("non-finite")
    # No round-trip criterion: whether the inverse undoes the forward at the moved parameters is
    # what the checks judge, and a screen that refused such moves would hide an inverse that is
    # right only at the initialisation (a zero-initialised shift added instead of subtracted).
    kappa = math.nan
    if jac is not None:
        with np.errstate(all="ignore"):  # κ₁ per sample; singular → inf, NaN entries → NaN
            kappas = np.linalg.cond(jac, 1)
        kappa = float(np.max(np.where(np.isfinite(kappas), kappas, math.inf)))
        if not math.isfinite(kappa):
            failed.add("singular Jacobian")
    return _Screen(frozenset(failed), kappa)


def _acceptable(after: _Screen, before: _Screen) -> bool:
    """No criterion fails that did not fail before, and κ₁ stays within its allowance:
    max(10⁴, 10·κ₁ before) (10⁴ when κ₁ was not measured before; anything when the Jacobian
    was singular already)."""
    if not after.failed <= before.failed:
        return False
    if math.isnan(after.kappa) or math.isinf(before.kappa):
        return True
    limit = (
        _KAPPA_LIMIT
        if math.isnan(before.kappa)
        else max(_KAPPA_LIMIT, _KAPPA_GROWTH * before.kappa)
    )
    return after.kappa <= limit


def is_identity(adapter: Adapter, dtype: str | torch.dtype = "float64", *, seed: int = 0) -> bool:
    """True when a copy of ``adapter`` in ``dtype`` maps the standard batch (32 rows,
    :func:`standard_inputs`) to itself with log|det| = 0, to within rounding:
    |y − x| ≤ 8ε|x| entrywise and |log|det|| ≤ 8nε (ε of ``dtype``), so that an identity built
    from rounded parameters (nflows' LULinear: softplus(raw) + eps = 1 ± ε) counts as well.

    ``False`` when the layer raises, returns other shapes, or cannot be copied.
    """
    name = str(dtype).removeprefix("torch.")
    torch_dtype = {"float64": torch.float64, "float32": torch.float32}.get(name)
    if torch_dtype is None:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    twin = _copy(adapter, torch_dtype)
    if twin is None:
        return False
    n = twin.features
    x0 = standard_inputs(n, _IDENTITY_ROWS, seed=seed, dtype=name, domain=twin.domain())
    x = torch.tensor(x0, dtype=torch_dtype)
    try:
        with torch.no_grad():
            y, ld = twin.forward(x)
    except Exception:
        return False
    if (
        not isinstance(y, torch.Tensor)
        or tuple(y.shape) != x.shape
        or not isinstance(ld, torch.Tensor)
    ):
        return False
    y64, ld64 = (
        y.detach().to("cpu", torch.float64).numpy(),
        ld.detach().to("cpu", torch.float64).numpy(),
    )
    u = eps(name)
    with np.errstate(invalid="ignore"):
        same = np.all(np.abs(y64 - x0) <= _ULPS * u * np.abs(x0))
        flat = np.all(np.abs(ld64) <= _ULPS * n * u)
    return bool(same and flat)


@torch.no_grad()
def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    for p, s in zip(params, saved, strict=True):
        p.copy_(s)


def move_off_init(adapter: Adapter, seed: int) -> Perturbation:
    """Move every trainable parameter of ``adapter`` (in place) away from its initialisation.

    δ = c·N(0, 1)·(s·|p| + a) (:func:`perturb`, seeded with ``seed``) for c = 1, ½, …, 2⁻⁴:
    the first c after which a float64 copy, on a seeded standard batch of 16 rows, raises no
    exception, gives finite outputs (forward and inverse) and has a
    nonsingular Jacobian with κ₁ ≤ max(10⁴, 10·κ₁ before) — or, for a criterion the unperturbed
    layer already failed, fails no more criteria than it did. When no c qualifies the layer is
    left exactly as it was and the message says why. The layer itself is never called (the
    screen runs on copies), so caches and data-dependent initialisations stay untouched.

    Deterministic: a freshly built layer with the same parameters gets the same δ and c.
    """
    with one_thread():
        return _move_off_init(adapter, int(seed))


def _move_off_init(adapter: Adapter, seed: int) -> Perturbation:
    params = adapter.parameters()
    dtype = _dtype_of(adapter)
    ident = is_identity(adapter, dtype)
    if not params:
        what = "the identity" if ident else "not the identity"
        return Perturbation(
            seed, 0.0, 0, ident, ident, f"no trainable parameters: nothing moved ({what})"
        )
    before = _screen(adapter, seed)
    if "not copyable" in before.failed:
        return Perturbation(
            seed,
            0.0,
            0,
            ident,
            ident,
            "the layer cannot be deep-copied, so a "
            "perturbation could not be verified: parameters left as built",
        )
    saved = [p.detach().clone() for p in params]
    tried = []
    for k in range(HALVINGS + 1):
        scale = 0.5**k
        changed = perturb([adapter], seed, scale=scale)
        after = _screen(adapter, seed)
        if _acceptable(after, before):
            now = is_identity(adapter, dtype)
            s, a = PERTURBATION
            msg = (
                f"{changed} parameter tensors moved by δ = N(0, 1)·({s * scale:g}·|p| + "
                f"{a * scale:g}) (seed {seed})"
            )
            if ident:
                msg += "; the layer was the identity before"
            if now:
                msg += "; still the identity afterwards"
            return Perturbation(seed, scale, changed, ident, now, msg)
        _restore(params, saved)
        problems = sorted(after.failed - before.failed)
        tried.append(
            f"{scale:g}: "
            + (
                ", ".join(problems)
                if problems
                else f"κ₁ {after.kappa:.3g} (before {before.kappa:.3g})"
            )
        )
    return Perturbation(
        seed,
        0.0,
        0,
        ident,
        ident,
        "no scale kept the layer valid (" + "; ".join(tried) + "): parameters left as built",
    )


def reapply(adapter: Adapter, perturbation: Perturbation) -> int:
    """Apply the δ that ``perturbation`` recorded (its seed and scale) to ``adapter`` — a layer
    built exactly as the one :func:`move_off_init` screened — without screening again; returns
    the number of parameter tensors changed (0 when the layer was left as built)."""
    if perturbation.scale == 0.0 or not adapter.parameters():
        return 0
    return perturb([adapter], perturbation.seed, scale=perturbation.scale)
