"""P4InvLinear.merge: the map unchanged by a merge, guard refusals, agreement with the NumPy
reference and the oracle, the drift monitor after merges, and the in-place path (bit-identical
to the checked out-of-place one, taken only while an overflow bound holds for that state)."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from p4_helpers import explicit_matrix, make_layer, same_state, tracked_state

from invlin.nn import P4InvLinear
from invlin.nn.monitor import DriftMonitor
from invlin.nn.p4 import MergeReading
from invlin.oracle import ExactMatrix, evaluate
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing import assert_forward, assert_inverse, assert_logabsdet, assert_sign, kappa1


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
        max_a, max_x = layer._bound.max_a, layer._bound.max_x
        assert float(layer.weight.abs().max()) <= max_a
        assert float(layer.weight_inverse.abs().max()) <= max_x


def test_merged_max_refuses_to_bound_overflowing_or_nan_products(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    big = torch.finfo(torch.float64).max

    def bound(max_a, max_x, mu, mv, mxu, mvx, alpha):
        reading = MergeReading(mu, mv, mxu, mvx, 0.0, 0.0, True, max_a, max_x)
        return layer._merged_max(reading, alpha)

    assert bound(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is not None
    assert bound(1.0, 1.0, 1e200, 1e200, 1.0, 1.0, -1.0) is None  # u vᵀ overflows
    # Products a kernel may form first, though α·Xu·vᵀX itself is finite: Xu·vᵀX, α·vᵀX.
    assert bound(1.0, 1.0, 1.0, 1.0, 1e300, 1e300, -1e-300) is None
    assert bound(1.0, 1.0, 1.0, 1.0, 1e-300, 1e300, -1e300) is None
    assert bound(big / 4, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is None
    assert bound(math.nan, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0) is None
    assert bound(1.0, 1.0, 1.0, 1.0, 1.0, math.inf, -1.0) is None


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


def test_merge_leaves_function_unchanged_and_resets_perturbation(scalar_form):
    layer = make_layer(8, seed=3)
    x = torch.randn(10, 8, dtype=torch.float64)
    y0, ld0 = layer(x)
    xi0, ldi0 = layer.inverse(y0.detach())
    m = explicit_matrix(layer)
    assert layer.merge()
    assert torch.count_nonzero(layer.u) == 0
    y1, ld1 = layer(x)
    xi1, ldi1 = layer.inverse(y0.detach())
    kappa = kappa1(m)
    assert_forward(out=y1.detach(), expected=y0.detach(), kappa=kappa, dtype="float64", updates=1)
    assert_forward(out=xi1.detach(), expected=xi0.detach(), kappa=kappa, dtype="float64", updates=1)
    # The same lemma is evaluated before and after: log|det| agrees to rounding of one addition.
    assert_logabsdet(out=ld1.detach(), expected=ld0.detach(), n=8, kappa=kappa, dtype="float64")
    assert_logabsdet(out=ldi1.detach(), expected=ldi0.detach(), n=8, kappa=kappa, dtype="float64")
    assert_inverse(m, out=layer.weight_inverse, updates=1)


def test_guard_refusal_keeps_state_and_perturbation(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([math.exp(-7.0) - 1, 0, 0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([1.0, 0, 0], dtype=torch.float64))
    before, u = tracked_state(layer), layer.u.detach().clone()
    assert layer.merge() is False
    assert same_state(before, tracked_state(layer)) and torch.equal(layer.u, u)
    assert layer.merge(force=True) is True  # forced: bounds skipped
    assert float(layer.logabsdet) == pytest.approx(-7.0)


def test_agrees_with_numpy_reference_and_oracle_after_merges(scalar_form):
    n, k = 10, 200
    g = torch.Generator().manual_seed(7)
    layer = P4InvLinear(n, init="orthogonal", generator=g, dtype=torch.float64, guard=Guard.off())
    ref = TrackedMatrix(layer.weight.numpy(), guard=Guard.off())
    exact = ExactMatrix.from_float(layer.weight.numpy())
    for _ in range(k):
        with torch.no_grad():
            layer.u.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.05 / n**0.5)
        u, v = layer.u.detach().numpy().copy(), layer.v.detach().numpy().copy()
        assert layer.merge()
        ref.update(u, v)
        exact.apply(u, v)
    truth = evaluate(exact)
    assert_sign(out=int(layer.sign), expected=truth.sign)
    assert int(layer.sign) == ref.sign
    assert_inverse(exact.to_float(), out=layer.weight_inverse, updates=k)
    assert_forward(
        out=layer.weight_inverse,
        expected=ref.inverse,
        kappa=truth.kappa,
        dtype="float64",
        updates=k,
    )
    assert_logabsdet(
        out=float(layer.logabsdet),
        expected=truth.logabsdet,
        n=n,
        kappa=truth.kappa,
        dtype="float64",
        updates=k,
    )


def test_monitor_corrects_planted_drift_and_refreshes_large_drift(scalar_form):
    layer = P4InvLinear(12, init="orthogonal", dtype=torch.float64, monitor=DriftMonitor())
    with torch.no_grad():
        layer.weight_inverse.add_(1e-9 * torch.randn(12, 12, dtype=torch.float64))
    reading = layer.probe()
    assert reading.ratio > 100
    assert layer.check_drift() == "correct" and layer.corrections == 1
    assert_inverse(layer.weight, out=layer.weight_inverse)
    with torch.no_grad():
        layer.weight_inverse.add_(torch.randn(12, 12, dtype=torch.float64))
        layer.logabsdet.add_(0.5)
    assert layer.check_drift() == "refresh" and layer.refreshes == 1
    assert_inverse(layer.weight, out=layer.weight_inverse)
    assert float(layer.logabsdet) == pytest.approx(0.0, abs=1e-12)  # orthogonal: |det| = 1
    assert layer.check_drift() == "none"


def test_merge_accepts_finite_state_whose_sum_overflows_and_refuses_overflow(scalar_form):
    # The merge proves finiteness by two sums and checks entry by entry only when a sum is not
    # finite: a finite state whose sum overflows must still merge ...
    a = torch.diag(torch.tensor([0.9e308, 0.9e308, 1.0, 1.0], dtype=torch.float64))
    layer = P4InvLinear(4, init=a, dtype=torch.float64)
    assert not math.isfinite(float(layer.weight.sum()))
    with torch.no_grad():
        layer.u.copy_(torch.tensor([0.0, 0.0, 1e-3, 0.0]))
        layer.v.copy_(torch.tensor([0.0, 0.0, 0.1, 0.1]))
    assert layer.merge(force=True)
    assert torch.isfinite(layer.weight).all() and layer.merges == 1
    # ... and an update that overflows is refused with the state untouched (c = 1 is fine).
    layer = P4InvLinear(4, dtype=torch.float64)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([1e300, 0.0, 0.0, 0.0], dtype=torch.float64))
        layer.v.copy_(torch.tensor([0.0, 1e10, 0.0, 0.0]))
    assert float(layer.factor().detach()) == 1.0
    assert not layer.merge(force=True)
    assert torch.equal(layer.weight, torch.eye(4, dtype=torch.float64))
    assert layer.refusals == 1 and layer.nonfinite_resets == 0


@pytest.mark.parametrize("device", [False, True])
def test_merge_layers_equals_merging_one_by_one_with_one_read(device):
    # merge_layers plans every layer, reads all the decisions together (device form: one read
    # for all the layers), then applies each: the same results and states as merge() per layer.
    from benchmarks.ops import count_ops
    from invlin.nn import merge_layers, p4_ops

    together = [make_layer(5, seed=s, guard=Guard.off()) for s in range(3)]
    alone = [make_layer(5, seed=s, guard=Guard.off()) for s in range(3)]
    with torch.no_grad():
        for group in (together, alone):
            group[1].u.fill_(float("nan"))  # reset, not merged
    results = []
    with p4_ops.device_form() if device else contextlib.nullcontext():
        reads = count_ops(lambda: results.append(merge_layers(together)))["reads"]
        assert results == [[True, False, True]] == [[layer.merge() for layer in alone]]
    if device:  # (the host form reads CPU values, which waits for nothing)
        assert reads == 1
    for a, b in zip(together, alone, strict=True):
        assert same_state(tracked_state(a), tracked_state(b)) and a.counters == b.counters
