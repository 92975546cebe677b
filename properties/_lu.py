"""LU layers and LU-Nets built from generated factors, and the round-trip error scale of a flow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invlin.nn.lu import LULinear
from invlin.nn.lunet import LUNet as TorchLUNet
from invlin.oracle import exact_path
from invlin.reference.activations import LeakySoftplus
from invlin.reference.lu import LULayer, LUNet
from invlin.testing.cases import LUCase

__all__ = ["Stage", "exact_lu", "roundtrip_scale", "stages", "torch_layer", "torch_net"]

ALPHA = 0.1  # leaky-softplus slope of the LU-Nets under test


def torch_layer(case: LUCase, dtype: torch.dtype) -> LULinear:
    """A torch LULinear holding the factors of ``case`` (rounded to ``dtype``)."""
    layer = LULinear(case.n, dtype=dtype)
    with torch.no_grad():
        layer.lower_entries.copy_(torch.from_numpy(case.lower))
        layer.upper_entries.copy_(torch.from_numpy(case.upper))
        layer.upper_diag.copy_(torch.from_numpy(case.diag))
        layer.bias.copy_(torch.from_numpy(case.bias))
    return layer


def torch_net(blocks: list[LUCase], dtype: torch.dtype) -> TorchLUNet:
    """A torch LUNet (leaky softplus α = 0.1) whose LU layers hold ``blocks``."""
    net = TorchLUNet(blocks[0].n, blocks=len(blocks), alpha=ALPHA, dtype=dtype)
    lus = [m for m in net.layers if isinstance(m, LULinear)]
    for layer, case in zip(lus, blocks, strict=True):
        src = torch_layer(case, dtype)
        layer.load_state_dict(src.state_dict())
    return net


def reference_net(blocks: list[LUCase]) -> LUNet:
    """The NumPy LUNet (leaky softplus α = 0.1) of ``blocks``."""
    return LUNet([LULayer(c.lower, c.upper, c.bias) for c in blocks], LeakySoftplus(ALPHA))


def held_factors(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, U, b) as a layer (torch LULinear or NumPy LULayer) holds them, in float64."""
    if isinstance(layer, LULinear):
        with torch.no_grad():
            return (
                layer.lower_matrix().double().numpy(),
                layer.upper_matrix().double().numpy(),
                layer.bias.double().numpy(),
            )
    return layer.lower, layer.upper, layer.bias


def exact_lu(lower: np.ndarray, upper: np.ndarray):
    """The exact product L·U as an ExactMatrix (sum of the outer products of columns and rows)."""
    n = lower.shape[0]
    return exact_path(np.zeros((n, n)), [(lower[:, k], upper[k, :]) for k in range(n)])


@dataclass(frozen=True)
class Stage:
    """One stage of a flow: ``lin`` (factors L, U, bias b, ‖A⁻¹‖₁) or ``act`` (slope α)."""

    kind: str
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    bias: np.ndarray | None = None
    inv_norm: float = 1.0


def stages(factors: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> list[Stage]:
    """LU-Net stages: lin, act, lin, …, lin for (L, U, b, ‖A⁻¹‖₁) per block."""
    out: list[Stage] = []
    for i, (low, up, b, inv_norm) in enumerate(factors):
        if i:
            out.append(Stage("act"))
        out.append(Stage("lin", low, up, b, inv_norm))
    return out


def _norm(v: np.ndarray) -> float:
    return float(np.abs(v).sum())


def roundtrip_scale(
    flow: list[Stage], values: list[np.ndarray], direction: str, eps: float
) -> float:
    """First-order error unit (1-norm) of a round trip through ``flow`` for one sample.

    ``values``: the sample at every level (level 0 the input of stage 0, level s the output of
    stage s − 1), from a float64 pass. ``direction``: ``"inverse∘forward"`` (x → z → x) or
    ``"forward∘inverse"`` (z → x → z). Each stage, run either way, commits at its level an error
    of one unit: nε‖|L||U|‖‖input‖ + ε(‖output‖ + ‖b‖) for an LU stage (two backward-stable
    triangular operations, Higham Thm 8.5, or the product with fl(LU)), ε·‖value‖ for the
    activation and its Newton inverse (a few ulp). Errors reach the end of the trip through the
    remaining maps, bounded by their Lipschitz constants: ‖A⁻¹‖₁ and 1/α backwards, ‖A‖₁ and 1
    (f′ < 1) forwards. The sum of all is the unit; a LAPACK-style threshold of 30 applies to the
    ratio error/unit.
    """
    if direction not in ("inverse∘forward", "forward∘inverse"):
        raise ValueError(
            f"direction must be 'inverse∘forward' or 'forward∘inverse', got {direction!r}"
        )
    n_stages = len(flow)
    local = []  # (level, size) of the unit error each stage commits, once per direction
    for s, st in enumerate(flow):
        vin, vout = values[s], values[s + 1]
        if st.kind == "lin":
            n = st.lower.shape[0]
            lu = np.abs(st.lower) @ np.abs(st.upper)
            size = n * eps * float(lu.sum(axis=0).max()) * _norm(vin) + eps * (
                _norm(vout) + _norm(st.bias)
            )
            local += [(s + 1, size), (s + 1, size)]  # forward product; inverse residual
        else:
            local += [(s + 1, eps * _norm(vout)), (s, eps * _norm(vin))]
    total = 0.0
    for level, size in local:
        if direction == "inverse∘forward":  # carried back to level 0 by the inverse maps
            gain = 1.0
            for st in flow[:level]:
                gain *= st.inv_norm if st.kind == "lin" else 1.0 / ALPHA
        else:  # carried forward to the last level by the forward maps
            gain = 1.0
            for st in flow[level:n_stages]:
                if st.kind == "lin":
                    gain *= float(np.abs(st.lower @ st.upper).sum(axis=0).max())
        total += size * gain
    return total
