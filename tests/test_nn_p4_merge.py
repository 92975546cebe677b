"""P4InvLinear.merge's in-place path: bit-identical to the checked out-of-place one, and taken
only while an overflow bound holds for the very state it was computed for."""

from __future__ import annotations

import math

import pytest
import torch

from invlin.nn import P4InvLinear
from invlin.reference.rank_one import Guard


def _pair(n=6, dtype=torch.float64):
    layers = []
    for _ in range(2):
        g = torch.Generator().manual_seed(0)
        layers.append(
            P4InvLinear(n, init="orthogonal", generator=g, dtype=dtype, guard=Guard.off())
        )
    return layers


def _state(layer):
    return tuple(
        getattr(layer, k).detach().clone()
        for k in ("weight", "weight_inverse", "logabsdet", "sign")
    )


def _same(s1, s2):
    return all(torch.equal(a, b) for a, b in zip(s1, s2, strict=True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_place_merges_equal_out_of_place_merges_bit_for_bit(dtype, monkeypatch, scalar_form):
    fast, slow = _pair(dtype=dtype)
    monkeypatch.setattr(slow, "_merged_max", lambda *args: None)  # always the checked path
    taken = []
    real = fast._merged_max
    monkeypatch.setattr(fast, "_merged_max", lambda *args: taken.append(1) or real(*args))
    g = torch.Generator().manual_seed(1)
    for step in range(30):
        u = 0.3 * torch.randn(6, generator=g, dtype=dtype)
        v = torch.randn(6, generator=g, dtype=dtype)
        for layer in (fast, slow):
            with torch.no_grad():
                layer.u.copy_(u)
                layer.v.copy_(v)
            assert layer.merge(force=step % 3 == 0)
        assert _same(_state(fast), _state(slow))
    assert len(taken) == 30 and fast._bound  # the in-place path ran every time


def test_bound_is_dropped_when_the_state_changes_in_place(scalar_form):
    # After an in-place merge the layer knows max|A|; an in-place change of A afterwards must
    # make it read max|A| again, or the next merge would overflow A in place and leave inf in
    # the state instead of refusing with the state untouched.
    layer = P4InvLinear(4, dtype=torch.float64, guard=Guard.off())
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0], dtype=torch.float64))
    assert layer.merge() and layer._bound
    with torch.no_grad():
        layer.weight[1, 2] = 1.7e308  # an in-place change: A's version moves on
        # u vᵀ alone stays below the bound's limit (max/4 ≈ 4.5e307) ...
        layer.u.copy_(torch.tensor([0.0, 2e154, 0.0, 0.0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([0.0, 0.0, 2e153, 0.0], dtype=torch.float64))
    before = _state(layer)
    assert float(layer.factor().detach()) == 1.0
    assert not layer.merge(force=True)  # ... but 1.7e308 + 4e307 overflows: refused
    assert _same(_state(layer), before)
    assert layer.refusals == 1


def test_bound_grows_with_each_merge_and_covers_the_state(scalar_form):
    layer = P4InvLinear(
        5,
        init="orthogonal",
        dtype=torch.float64,
        guard=Guard.off(),
        generator=torch.Generator().manual_seed(2),
    )
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        with torch.no_grad():
            layer.u.copy_(torch.randn(5, generator=g, dtype=torch.float64))
        assert layer.merge()
        max_a, max_x = layer._bound[3], layer._bound[4]
        assert float(layer.weight.abs().max()) <= max_a
        assert float(layer.weight_inverse.abs().max()) <= max_x


def test_merged_max_refuses_to_bound_overflowing_or_nan_products(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    big = torch.finfo(torch.float64).max
    assert layer._merged_max(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is not None
    assert layer._merged_max(1.0, 1.0, 1e200, 1e200, 1.0, 1.0, -1.0) is None  # u vᵀ overflows
    # Products a kernel may form first, though α·Xu·vᵀX itself is finite: Xu·vᵀX, α·vᵀX.
    assert layer._merged_max(1.0, 1.0, 1.0, 1.0, 1e300, 1e300, -1e-300) is None
    assert layer._merged_max(1.0, 1.0, 1.0, 1.0, 1e-300, 1e300, -1e300) is None
    assert layer._merged_max(big / 4, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is None
    assert layer._merged_max(math.nan, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is None
    assert layer._merged_max(1.0, 1.0, 1.0, 1.0, 1.0, math.inf, -1.0) is None


@pytest.mark.parametrize(
    "state_dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16]
)
def test_nonfinite_perturbation_resets_and_overflow_in_the_state_dtype_refuses(
    state_dtype, scalar_form
):
    layer = P4InvLinear(4, state_dtype=state_dtype, guard=Guard.off())
    before = _state(layer)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.1, math.nan, 0.0, 0.0]))
    assert not layer.merge(force=True)
    assert layer.nonfinite_resets == 1 and torch.count_nonzero(layer.u) == 0
    assert _same(_state(layer), before)
    # Finite in float32 but not in a float16 state: refused (not reset), state untouched.
    with torch.no_grad():
        layer.u.copy_(torch.tensor([1e5, 0.0, 0.0, 0.0]))
        layer.v.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    merged = layer.merge(force=True)
    assert layer.nonfinite_resets == 1
    if state_dtype == torch.float16:
        assert not merged and _same(_state(layer), before)
    else:
        assert merged and torch.isfinite(layer.weight).all()
