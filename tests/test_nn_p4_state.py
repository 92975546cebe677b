"""P4InvLinear's tracked state is validated where it enters (issue 21, item 2)."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from p4_helpers import make_layer, same_state, tracked_state

from invlin.nn import P4InvLinear, p4_state
from invlin.nn.p4_state import (
    LOAD_RATIO_BOUND,
    InvalidStateError,
    StateRepairedWarning,
    repairing,
)
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing.tolerance import THRESHOLD, inverse_ratio

N = 8
EPS64 = 2.0**-53


def _trained(seed: int = 1, merges: int = 6, monitor: bool = True) -> P4InvLinear:
    """A float64 layer taken through a few merges (a state a user would save)."""
    g = torch.Generator().manual_seed(seed)
    kwargs = {} if monitor else {"monitor": None}
    layer = P4InvLinear(
        N, init="orthogonal", generator=g, dtype=torch.float64, guard=Guard.off(), **kwargs
    )
    for _ in range(merges):
        with torch.no_grad():
            layer.u.copy_(0.4 * torch.randn(N, generator=g, dtype=torch.float64))
        assert layer.merge()
    return layer


def _state(layer: P4InvLinear) -> list[torch.Tensor]:
    return [getattr(layer, k).detach().clone() for k in p4_state.STATE]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _refused(sd: dict, *buffers: str) -> InvalidStateError:
    """Load ``sd`` into a fresh layer: it must be refused naming ``buffers``, layer untouched."""
    target = _trained(seed=7, merges=2)
    before = _state(target)
    with pytest.raises(InvalidStateError) as info:
        target.load_state_dict(sd)
    named = {i.buffer for i in info.value.issues}
    assert named == set(buffers), info.value
    for name in buffers:
        assert name in str(info.value)
    assert _same(before, _state(target))  # nothing was copied
    return info.value


# -- load_state_dict: the issue's corrupt states ---------------------------------------------------
def test_weight_inconsistent_with_its_inverse_is_refused():
    # the issue's case: A replaced, X and log|det| kept from another matrix (log|det| 0 vs 4.39)
    sd = P4InvLinear(N, dtype=torch.float64).state_dict()  # identity: X = I, log|det| = 0
    g = torch.Generator().manual_seed(3)
    a = torch.randn(N, N, generator=g, dtype=torch.float64) + 3 * torch.eye(N, dtype=torch.float64)
    sd["weight"] = a
    assert abs(float(torch.linalg.slogdet(a)[1])) > 1  # far from the loaded log|det| = 0
    err = _refused(sd, "weight_inverse", "logabsdet", *(["sign"] if torch.det(a) < 0 else []))
    assert "repairing()" in str(err)


def test_nan_entries_are_refused():
    sd = _trained().state_dict()
    sd["weight_inverse"][2, 3] = float("nan")
    _refused(sd, "weight_inverse")
    sd = _trained().state_dict()
    sd["weight"][0, 1] = float("nan")
    err = _refused(sd, "weight")
    assert "cannot be repaired" in str(err)
    with repairing(), pytest.raises(InvalidStateError):  # a bad A is never repaired
        _trained().load_state_dict(sd)


def test_infinite_logabsdet_is_refused():
    sd = _trained().state_dict()
    sd["logabsdet"] = torch.tensor(float("inf"), dtype=torch.float64)
    _refused(sd, "logabsdet")


def test_sign_not_plus_or_minus_one_is_refused():
    sd = _trained().state_dict()
    sd["sign"] = torch.tensor(0.5, dtype=torch.float64)
    _refused(sd, "sign")
    sd["sign"] = -_trained().sign  # ±1, but the wrong one
    _refused(sd, "sign")


def test_complex_values_are_refused_not_truncated():
    sd = _trained().state_dict()
    sd["weight"] = sd["weight"].to(torch.complex128) + 1e-3j
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "discards the imaginary part" warning either
        with pytest.raises(ValueError, match=r"state_dict\['weight'\] is complex"):
            _trained().load_state_dict(sd)
    sd = _trained().state_dict()
    sd["u"] = sd["u"].to(torch.complex64)
    with pytest.raises(ValueError, match=r"state_dict\['u'\] is complex"):
        _trained().load_state_dict(sd)


@pytest.mark.filterwarnings("ignore:Complex modules:UserWarning")  # torch's, before _apply
def test_to_complex_is_refused_and_changes_nothing():
    layer = _trained()
    before = _state(layer)
    with pytest.raises(ValueError, match="complex"):
        layer.to(torch.complex64)
    assert layer.u.dtype == torch.float64 and layer.weight.dtype == torch.float64
    assert _same(before, _state(layer))


def test_prefix_names_the_buffer_inside_a_parent():
    parent = torch.nn.Sequential(_trained(), _trained(seed=2))
    sd = parent.state_dict()
    sd["1.logabsdet"] = sd["1.logabsdet"] + 1.0
    with pytest.raises(InvalidStateError, match=r"1\.logabsdet is"):
        torch.nn.Sequential(_trained(), _trained(seed=2)).load_state_dict(sd)


# -- the bound: the probe proves a ratio, the engine's allowance decides ------------------------
def _scaled_inverse_state(layer: P4InvLinear, ratio: float) -> dict:
    """A state whose X = (1 + δ) A⁻¹, so I − XA = −δI and every probe sees exactly the LAPACK
    ratio δ / (n‖A‖₁‖X‖₁ε) = ``ratio``."""
    sd = layer.state_dict()
    a, x = sd["weight"], sd["weight_inverse"]
    exact = torch.linalg.inv(a)
    scale = N * float(torch.linalg.matrix_norm(a, 1)) * float(torch.linalg.matrix_norm(exact, 1))
    delta = ratio * scale * EPS64
    x.copy_((1 + delta) * exact)
    return sd


def test_x_probe_uses_the_named_bound():
    layer = _trained()
    ok = _scaled_inverse_state(layer, 0.5 * LOAD_RATIO_BOUND)
    _trained(seed=7).load_state_dict(ok)  # drift within the allowance: accepted
    bad = _scaled_inverse_state(layer, 2.0 * LOAD_RATIO_BOUND)
    err = _refused(bad, "weight_inverse")
    assert "LOAD_RATIO_BOUND" in str(err)


def test_logabsdet_uses_the_named_bound():
    layer = _trained()
    a = layer.weight.detach()
    kappa = float(torch.linalg.cond(a, 1))
    unit = N * kappa * EPS64 * LOAD_RATIO_BOUND
    sd = layer.state_dict()
    sd["logabsdet"] = layer.logabsdet + 0.5 * unit
    _trained(seed=7).load_state_dict(sd)
    sd["logabsdet"] = layer.logabsdet + 2.0 * unit
    _refused(sd, "logabsdet")


# -- repair on request ---------------------------------------------------------------------------
def test_repairing_recomputes_the_named_buffers_and_says_so():
    layer = _trained()
    sd = layer.state_dict()
    sd["weight_inverse"] = torch.eye(N, dtype=torch.float64)
    sd["sign"] = torch.tensor(0.5, dtype=torch.float64)
    target = _trained(seed=7)
    with repairing(), pytest.warns(StateRepairedWarning, match="weight_inverse, sign") as rec:
        target.load_state_dict(sd)
    assert "logabsdet" not in str(rec[0].message)
    assert inverse_ratio(target.weight, target.weight_inverse).value <= THRESHOLD
    assert float(target.sign) == float(torch.linalg.slogdet(target.weight)[0])
    assert torch.equal(target.logabsdet, layer.logabsdet)  # consistent: kept as loaded
    assert not p4_state.repair_requested()  # the option ends with the block


# -- refresh / check_drift / inverse with a bad A -------------------------------------------------
@pytest.mark.parametrize("call", ["refresh", "check_drift"])
def test_nonfinite_weight_is_refused_when_factorising(call):
    layer = _trained()
    with torch.no_grad():
        layer.weight[1, 2] = float("inf")
    before = _state(layer)
    with pytest.raises(ValueError, match=r"weight holds non-finite values \(inf at index \(1, 2\)"):
        getattr(layer, call)()
    assert _same(before, _state(layer))
    assert torch.isfinite(layer.logabsdet) and torch.isfinite(layer.weight_inverse).all()


def test_nan_written_into_weight_stops_inverse_from_answering_from_stale_x():
    layer = _trained()
    y = torch.randn(3, N, dtype=torch.float64)
    layer.inverse(y)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"weight holds non-finite values \(nan at index \(0, 0\)"):
        layer.inverse(y)


def test_weight_written_without_refresh_is_noticed_and_refresh_clears_it():
    layer = _trained()
    y = torch.randn(3, N, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.mul_(2.0)
    with pytest.raises(ValueError, match="call refresh"):
        layer.inverse(y)
    layer.refresh()  # the correct twin: A written, then refreshed
    x, _ = layer.inverse(y)
    y2, _ = layer(x)
    assert torch.allclose(y2, y, rtol=0, atol=1e-12)


def test_merges_corrections_and_state_copies_keep_inverse_usable():
    layer = _trained()
    other = _trained(seed=4)
    y = torch.randn(2, N, dtype=torch.float64)
    with torch.no_grad():
        for name in p4_state.STATE:  # A and X written together: consistent
            getattr(layer, name).copy_(getattr(other, name))
    layer.inverse(y)
    with torch.no_grad():
        layer.weight_inverse.mul_(1 + 1e-9)
    assert layer.correct()
    layer.inverse(y)


# -- unpickling ----------------------------------------------------------------------------------
def _round_trips(layer):
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    yield torch.load(buf, weights_only=False)
    yield pickle.loads(pickle.dumps(layer))
    yield copy.deepcopy(layer)


def test_a_trained_state_round_trips_everywhere():
    for monitor in (True, False):
        layer = _trained(merges=40, monitor=monitor)
        x = torch.randn(5, N, dtype=torch.float64)
        fresh = P4InvLinear(N, dtype=torch.float64)
        fresh.load_state_dict(layer.state_dict())
        assert _same(_state(layer), _state(fresh))
        for other in _round_trips(layer):
            assert _same(_state(layer), _state(other))
            assert torch.equal(layer(x)[0], other(x)[0])
            assert torch.equal(layer.inverse(x)[0], other.inverse(x)[0])


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "torch.save"])
def test_unpickling_a_corrupt_layer_is_refused_or_repaired(how):
    def load(layer):
        if how == "pickle":
            return pickle.loads(pickle.dumps(layer))
        if how == "deepcopy":
            return copy.deepcopy(layer)
        buf = io.BytesIO()
        torch.save(layer, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=False)

    layer = _trained()
    with torch.no_grad():
        layer.sign.fill_(0.5)
    with pytest.raises(InvalidStateError, match=r"unpickling refused.*sign is 0\.5"):
        load(layer)
    with repairing(), pytest.warns(StateRepairedWarning, match="sign"):
        other = load(layer)
    assert float(other.sign) == float(torch.linalg.slogdet(other.weight)[0])


# -- the NumPy reference's public arrays ----------------------------------------------------------
@pytest.mark.parametrize("prop", ["a", "inverse"])
def test_reference_arrays_cannot_be_made_writable(prop):
    rng = np.random.default_rng(0)
    t = TrackedMatrix(rng.standard_normal((4, 4)) + 4 * np.eye(4))
    before = t.state()
    arr = getattr(t, prop)
    for candidate in (arr, arr.base):
        if isinstance(candidate, np.ndarray):
            with pytest.raises(ValueError):
                candidate.setflags(write=True)
    with pytest.raises(ValueError):
        arr[0, 0] = 5.0
    after = t.state()
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    # still the tracked values, and a new one after an update
    assert np.array_equal(arr, before[0] if prop == "a" else before[1])
    t.update(0.1 * rng.standard_normal(4), rng.standard_normal(4))
    assert not np.array_equal(getattr(t, prop), arr)


def test_state_dtype_survives_to_and_float32_compute():
    layer = P4InvLinear(4, init="orthogonal").float()
    assert layer.weight.dtype == torch.float64 and layer.u.dtype == torch.float32
    x = torch.randn(3, 4)
    y, ld = layer(x)
    assert y.dtype == torch.float32 and ld.dtype == torch.float32
    assert layer.inverse(y)[0].dtype == torch.float32
    follow = P4InvLinear(4, state_dtype=None).double()
    assert follow.weight.dtype == torch.float64
    follow = follow.float()
    assert follow.weight.dtype == torch.float32


def test_state_dict_round_trip_is_exact():
    layer = make_layer(6, seed=5)
    for _ in range(5):
        with torch.no_grad():
            layer.u.normal_(std=0.1)
        layer.merge()
    sd = layer.state_dict()
    other = P4InvLinear(6, dtype=torch.float64)
    other.load_state_dict(sd)
    assert same_state(tracked_state(layer), tracked_state(other))
    x = torch.randn(2, 6, dtype=torch.float64)
    assert torch.equal(layer(x)[0], other(x)[0])
