"""Validating and repairing the tracked state of a P4InvLinear layer where it enters.

The state is ``weight`` = A (n×n, primary) and, derived from it, ``weight_inverse`` = X ≈ A⁻¹,
``sign`` = sign(det A), ``logabsdet`` = log|det A| (0-dim). A state entering a layer by
``load_state_dict`` or unpickling (``pickle``, ``torch.load``, ``copy.deepcopy``) is checked:

* every buffer real, of its shape, finite; ``sign`` ∈ {−1, +1};
* X against A by an O(n²) probe: for fixed ±1 vectors z_j the ratio
  ρ = max_j ‖(XA − I) z_j‖₁ / (n ‖A‖₁ ‖X‖₁ ε ‖z_j‖₁) (computed in float64, ε of the state
  dtype) is a lower bound of the tolerance engine's inverse ratio ‖I − XA‖₁ / (n‖A‖₁‖X‖₁ε),
  since ‖Mz‖₁ ≤ ‖M‖₁‖z‖₁; so ρ > :data:`LOAD_RATIO_BOUND` proves the state inconsistent
  (never a false alarm from sampling; float64 rounding in forming ρ adds at most about 2);
* sign and log|det| against an LU of A in float64: the sign exactly, log|det| by the engine's
  log|det| ratio |ℓ − ℓ_LU| / (n κ₁ ε) ≤ :data:`LOAD_RATIO_BOUND` with κ₁ = ‖A‖₁‖A⁻¹‖₁ (the
  larger κ₁ peak the layer recorded, when it recorded one).

The allowance grows as THRESHOLD·(1 + k) after k updates and a state dict does not record k:
:data:`LOAD_MERGES` = 2²⁰ is assumed (or an unpickled layer's own larger merge count), so a
layer's own drift is accepted and corruption (X or log|det| of another matrix, NaN, ±inf, sign
0.5) refused: :class:`InvalidStateError` naming each buffer, the layer as it was. Inside
:func:`repairing` inconsistent derived buffers are recomputed from A by LU instead (with a
:class:`StateRepairedWarning`); a bad A itself is always refused.

Also here: :func:`lu_state` (the one LU deriving X, sign and log|det| from A) and
:class:`InverseWatch` (notices A changed in place without a refresh before ``inverse`` answers
from the stale X).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch

from invlin._dtypes import eps
from invlin.testing.tolerance import allowed_ratio

__all__ = [
    "LOAD_MERGES",
    "LOAD_RATIO_BOUND",
    "STATE",
    "InvalidStateError",
    "InverseWatch",
    "LUState",
    "StateIssue",
    "StateRepairedWarning",
    "check_state",
    "incoming_state",
    "lu_state",
    "refuse_complex_target",
    "repair",
    "repair_requested",
    "repairing",
    "require_finite",
    "settle",
]

#: The tracked buffers, A first.
STATE = ("weight", "weight_inverse", "logabsdet", "sign")

#: Merges a loaded X and log|det| are allowed to have been through since they were last
#: computed from A (a state dict does not record it).
LOAD_MERGES = 1 << 20
#: The largest inverse / log|det| ratio a loaded state may show: the tolerance engine's
#: worst-case allowance after :data:`LOAD_MERGES` updates, THRESHOLD·(1 + 2²⁰) ≈ 3.1e7.
LOAD_RATIO_BOUND = allowed_ratio(LOAD_MERGES)

_PROBES = 4  # fixed ±1 probe vectors (deterministic: a load never fails by chance)
_PROBE_SEED = 0x5EED

_repair: contextvars.ContextVar[bool] = contextvars.ContextVar("p4_state_repair", default=False)


class InvalidStateError(ValueError):
    """A P4InvLinear state was refused; ``issues`` lists what is wrong, buffer by buffer."""

    def __init__(self, message: str, issues: tuple[StateIssue, ...]) -> None:
        super().__init__(message)
        self.issues = issues


class StateRepairedWarning(UserWarning):
    """Buffers of a loaded P4InvLinear state were recomputed from A (inside :func:`repairing`)."""


@dataclass(frozen=True)
class StateIssue:
    """One defect of a tracked state: the ``buffer`` it is in, why, and whether recomputing that
    buffer from A by LU can repair it (``repairable``)."""

    buffer: str
    message: str
    repairable: bool


class LUState(NamedTuple):
    """X = A⁻¹ (n×n), sign(det A) and log|det A| (0-dim), from one LU of A, in A's dtype."""

    inverse: torch.Tensor
    sign: torch.Tensor
    logabsdet: torch.Tensor


@contextlib.contextmanager
def repairing() -> Iterator[None]:
    """Within this block, P4InvLinear states loaded by ``load_state_dict`` or unpickled have
    their inconsistent derived buffers (X, sign, log|det|) recomputed from A by LU, with a
    :class:`StateRepairedWarning` naming them, instead of being refused.

    >>> with repairing():
    ...     repair_requested()
    True
    """
    token = _repair.set(True)
    try:
        yield
    finally:
        _repair.reset(token)


def repair_requested() -> bool:
    """Whether the caller is inside :func:`repairing` (this thread / context)."""
    return _repair.get()


def _first_bad(t: torch.Tensor) -> str:
    bad = ~torch.isfinite(t)
    first = tuple(int(i) for i in torch.nonzero(bad)[0]) if t.ndim else ()
    value = float(t[first]) if t.ndim else float(t)
    return f"{value} at index {first}" if t.ndim else str(value)


def require_finite(t: torch.Tensor, name: str, doing: str) -> None:
    """Raise ValueError naming ``name`` and the first non-finite entry unless ``t`` is finite."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds non-finite values ({_first_bad(t)}): {doing}")


def lu_state(a: torch.Tensor, name: str = "weight") -> LUState:
    """X = A⁻¹, sign(det A) and log|det A| of the n×n matrix ``a`` by one LU (O(n³)).

    sign = (−1)^(row swaps + negative pivots), log|det A| = Σ log|u_ii|. torch has no
    half-precision LU: a float16/bfloat16 A is decomposed in float32 and the results are rounded
    back. Raises ValueError (naming ``name``) for a non-finite A, a zero pivot or an inverse that
    overflows."""
    require_finite(a, name, "A has no LU (write a finite A, then refresh())")
    work = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
    lu, piv, _ = torch.linalg.lu_factor_ex(work)
    diag = torch.diagonal(lu)
    if bool((diag == 0).any()):
        raise ValueError(f"{name} must be invertible: its LU has a zero pivot")
    eye = torch.eye(work.shape[0], dtype=work.dtype, device=work.device)
    inv = torch.linalg.lu_solve(lu, piv, eye)
    if not bool(torch.isfinite(inv).all()):
        raise ValueError(f"{name} must be invertible: its inverse overflows")
    swaps = int((piv != torch.arange(1, piv.numel() + 1, device=piv.device)).sum())
    negatives = int((diag < 0).sum())
    sign = torch.tensor(-1.0 if (swaps + negatives) % 2 else 1.0, device=a.device)
    return LUState(inv.to(a.dtype), sign.to(a.dtype), torch.log(diag.abs()).sum().to(a.dtype))


def refuse_complex_target(dtype: torch.dtype, what: str) -> None:
    """Raise ValueError when ``dtype`` is complex: P4InvLinear is a real layer (a complex A or
    perturbation would otherwise be truncated to its real part)."""
    if dtype.is_complex:
        raise ValueError(
            f"{what} is complex ({dtype}): P4InvLinear holds real values only and refuses "
            f"complex ones rather than dropping their imaginary part"
        )


def incoming_state(
    buffers: Mapping[str, torch.Tensor],
    parameters: Mapping[str, torch.Tensor | None],
    state_dict: Mapping[str, object],
    prefix: str,
    *,
    assign: bool = False,
) -> dict[str, torch.Tensor]:
    """The tracked state a ``load_state_dict`` would leave: each of :data:`STATE` from
    ``state_dict`` (key ``prefix + name``) converted to the buffer's dtype and device (as
    ``copy_`` would; as it is when ``assign``), else the current buffer. Refuses (ValueError
    naming the key) complex values for any buffer or parameter, and a tracked buffer of the
    wrong shape — before anything is copied."""
    for name, current in (*buffers.items(), *parameters.items()):
        value = state_dict.get(prefix + name)
        if isinstance(value, torch.Tensor) and current is not None:
            refuse_complex_target(value.dtype, f"state_dict[{prefix + name!r}]")
    out = {}
    for name in STATE:
        current = buffers[name]
        value = state_dict.get(prefix + name)
        if not isinstance(value, torch.Tensor):
            out[name] = current
            continue
        if tuple(value.shape) != tuple(current.shape):
            raise InvalidStateError(
                f"state_dict[{prefix + name!r}] has shape {tuple(value.shape)}, the layer's "
                f"{name} has {tuple(current.shape)}",
                (StateIssue(name, "wrong shape", False),),
            )
        value = value.detach()
        out[name] = value if assign else value.to(device=current.device, dtype=current.dtype)
    return out


def _probe_ratio(a64: torch.Tensor, x64: torch.Tensor, unit: float) -> float:
    """max_j ‖(XA − I)z_j‖₁ / (n‖A‖₁‖X‖₁ ε ‖z_j‖₁) over fixed ±1 vectors z_j (O(n²))."""
    n = a64.shape[0]
    gen = torch.Generator().manual_seed(_PROBE_SEED)
    z = (torch.randint(0, 2, (n, _PROBES), generator=gen, dtype=torch.float64) * 2 - 1).to(
        a64.device
    )
    r = x64 @ (a64 @ z) - z
    scale = n * float(a64.abs().sum(0).max()) * float(x64.abs().sum(0).max()) * unit
    worst = float(r.abs().sum(0).max()) / n  # ‖z_j‖₁ = n
    return worst / scale if scale > 0 else math.inf


def check_state(
    state: Mapping[str, torch.Tensor],
    *,
    merges: int = 0,
    kappa_peak: float | None = None,
) -> tuple[StateIssue, ...]:
    """The defects of a tracked state ``state`` (name → tensor for each of :data:`STATE`),
    empty when it is consistent (see the module docstring for the checks and the bound
    ``allowed_ratio(max(LOAD_MERGES, merges))``). Costs one float64 LU of A (O(n³))."""
    a, x = state["weight"], state["weight_inverse"]
    sign, ld = state["sign"], state["logabsdet"]
    issues = [
        StateIssue(name, f"is complex ({t.dtype})", name != "weight")
        for name, t in state.items()
        if t.is_complex()
    ]
    if issues:
        return tuple(issues)
    n = a.shape[-1]
    if a.ndim != 2 or a.shape[0] != n or tuple(x.shape) != (n, n) or sign.ndim or ld.ndim:
        return (StateIssue("weight", "the buffers' shapes do not fit together", False),)
    if not bool(torch.isfinite(a).all()):
        return (StateIssue("weight", f"holds non-finite values ({_first_bad(a)})", False),)
    try:
        ref = lu_state(a.double())
    except ValueError as exc:
        return (StateIssue("weight", str(exc).removeprefix("weight "), False),)
    bound = allowed_ratio(max(LOAD_MERGES, int(merges)))
    unit = eps(a.dtype)
    if not bool(torch.isfinite(x).all()):
        issues.append(
            StateIssue("weight_inverse", f"holds non-finite values ({_first_bad(x)})", True)
        )
    else:
        rho = _probe_ratio(a.double(), x.double(), unit)
        if not rho <= bound:
            issues.append(
                StateIssue(
                    "weight_inverse",
                    f"is not an inverse of weight: probe ratio ‖(XA − I)z‖₁/(n‖A‖₁‖X‖₁ε‖z‖₁) = "
                    f"{rho:.3g} > LOAD_RATIO_BOUND {bound:.3g}",
                    True,
                )
            )
    s = float(sign)
    if s not in (-1.0, 1.0):
        issues.append(StateIssue("sign", f"is {s}, not -1 or +1", True))
    elif s != float(ref.sign):
        issues.append(
            StateIssue("sign", f"is {s:+g} but det(weight) has sign {float(ref.sign):+g}", True)
        )
    ell = float(ld)
    if not math.isfinite(ell):
        issues.append(StateIssue("logabsdet", f"is {ell}, not finite", True))
    else:
        kappa = float(a.double().abs().sum(0).max()) * float(ref.inverse.abs().sum(0).max())
        kappa = max(kappa, kappa_peak or 0.0, 1.0)
        ratio = abs(ell - float(ref.logabsdet)) / (n * kappa * unit)
        if not ratio <= bound:
            issues.append(
                StateIssue(
                    "logabsdet",
                    f"is {ell:.9g} but log|det(weight)| = {float(ref.logabsdet):.9g} "
                    f"(ratio |Δ|/(nκ₁ε) = {ratio:.3g} > LOAD_RATIO_BOUND {bound:.3g})",
                    True,
                )
            )
    return tuple(issues)


def settle(
    state: Mapping[str, torch.Tensor],
    *,
    prefix: str = "",
    where: str = "load_state_dict",
    merges: int = 0,
    kappa_peak: float | None = None,
) -> tuple[str, ...]:
    """Check ``state`` (see :func:`check_state`) and decide: () when consistent; the names of
    the derived buffers to recompute from A when inconsistent inside :func:`repairing` (and
    repairable); else raise :class:`InvalidStateError` naming every buffer (with ``prefix``)."""
    issues = check_state(state, merges=merges, kappa_peak=kappa_peak)
    if not issues:
        return ()
    fixable = all(i.repairable for i in issues)
    if fixable and repair_requested():
        return tuple(dict.fromkeys(i.buffer for i in issues))
    lines = "; ".join(f"{prefix}{i.buffer} {i.message}" for i in issues)
    advice = (
        "load it inside invlin.nn.p4_state.repairing() to recompute "
        + ", ".join(prefix + i.buffer for i in issues)
        + " from weight by LU"
        if fixable
        else "weight itself cannot be repaired"
    )
    raise InvalidStateError(
        f"P4InvLinear {where} refused an inconsistent state: {lines} ({advice})", issues
    )


def repair(buffers: Mapping[str, torch.Tensor], names: tuple[str, ...], prefix: str = "") -> None:
    """Recompute the derived buffers ``names`` from ``buffers["weight"]`` by :func:`lu_state`, in
    place, and warn naming them (nothing when ``names`` is empty)."""
    if not names:
        return
    inverse, sign, logabsdet = lu_state(buffers["weight"])
    fresh = {"weight_inverse": inverse, "sign": sign, "logabsdet": logabsdet}
    with torch.no_grad():
        for name in names:
            buffers[name].copy_(fresh[name])
    warnings.warn(
        "P4InvLinear state repaired: recomputed "
        + ", ".join(prefix + n for n in names)
        + " from weight by LU (the loaded values were inconsistent with it)",
        StateRepairedWarning,
        stacklevel=3,
    )


class InverseWatch:
    """Refuses an ``inverse`` after A was changed in place by hand (without
    :meth:`~invlin.nn.P4InvLinear.refresh`): X would be stale.

    A merge writes A and log|det| once each (a correction writes X alone; a refresh or load
    re-syncs), so the difference of their version counters stays what :meth:`sync` recorded;
    a hand write into A raises it. O(1), nothing read from the device; writes through ``.data``
    are not seen."""

    __slots__ = ("a", "logabsdet", "offset")

    def __init__(self, a: torch.Tensor, logabsdet: torch.Tensor) -> None:
        self.sync(a, logabsdet)

    def sync(self, a: torch.Tensor, logabsdet: torch.Tensor) -> None:
        """Record A and log|det| as consistent with X (after an LU, a load or a move)."""
        self.a, self.logabsdet, self.offset = a, logabsdet, a._version - logabsdet._version

    def check(self, a: torch.Tensor, logabsdet: torch.Tensor) -> None:
        """Raise ValueError (naming ``weight``; its first non-finite entry if any) when A was
        written more often than log|det| since the last :meth:`sync`."""
        if a is not self.a or logabsdet is not self.logabsdet:  # new buffers: start over
            self.sync(a, logabsdet)
            return
        if a._version - logabsdet._version <= self.offset:
            return
        doing = "inverse refuses to answer from the stale weight_inverse; write a finite A"
        require_finite(a, "weight", doing + " and call refresh()")
        raise ValueError(
            "weight was changed in place after weight_inverse and logabsdet were computed from "
            "it (not by a merge): call refresh() after writing A by hand"
        )
