"""Tests of the drift update sequences, checkpoints, configurations and policies."""

from __future__ import annotations

import numpy as np
import pytest

from invlin.drift.config import checkpoints, plan_sweep
from invlin.drift.policies import ReferenceTrack, policy_spec
from invlin.drift.regimes import REGIMES, cast_vectors, generate
from invlin.testing import allowed_ratio, assert_inverse, inverse_ratio


def _plan_path(seq, upto):
    a = seq.a0.copy()
    for k in range(upto):
        a += np.outer(seq.u[k], seq.v[k])
    return a


@pytest.mark.parametrize("regime", REGIMES)
def test_sequences_are_deterministic_and_shaped(regime):
    a, b = generate(regime, 7, 40, seed=3), generate(regime, 7, 40, seed=3)
    c = generate(regime, 7, 40, seed=4)
    assert a.u.shape == a.v.shape == (40, 7) and a.a0.shape == (7, 7)
    assert np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert not np.array_equal(a.u, c.u)
    assert a.event is None if regime == "walk" else 1 <= a.event <= 40


def test_walk_stays_well_conditioned():
    seq = generate("walk", 12, 600, seed=0)
    kappas = [np.linalg.cond(_plan_path(seq, k), 1) for k in (0, 100, 600)]
    assert max(kappas) < 3 * kappas[0]


def test_approach_reaches_depth_with_det_kept_and_comes_back():
    depth = 1e-8
    seq = generate("approach", 10, 200, seed=1, depth=depth)
    a0 = _plan_path(seq, 0)
    deep = _plan_path(seq, seq.event)
    end = _plan_path(seq, 200)
    k0, kd, ke = (np.linalg.cond(m, 2) for m in (a0, deep, end))
    # κ₂ grows by about 1/depth (the schedule stops one step short of depth itself) ...
    assert 0.01 / depth < kd / k0 < 10 / depth
    # ... while log|det| moves by less than the P4 guard's window, and κ comes back.
    ld = [np.linalg.slogdet(m)[1] for m in (a0, deep, end)]
    assert max(abs(x - ld[0]) for x in ld) < 2.0
    assert ke < 2 * k0


def test_crossing_changes_the_sign_of_det_once_at_the_event():
    seq = generate("crossing", 8, 120, seed=2, depth=1e-9)
    signs = [np.linalg.slogdet(_plan_path(seq, k))[0] for k in range(121)]
    flips = [k for k in range(1, 121) if signs[k] != signs[k - 1]]
    assert flips == [seq.event]
    sv = np.linalg.svd(_plan_path(seq, seq.event), compute_uv=False)
    assert sv[-1] < 1e-8 and abs(seq.sigma[seq.event - 1]) < 1e-8


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="regime"):
        generate("spiral", 5, 20)
    with pytest.raises(ValueError, match="n must"):
        generate("walk", 2, 20)
    with pytest.raises(ValueError, match="updates must be >= 12"):
        generate("crossing", 5, 8)
    with pytest.raises(ValueError, match="depth"):
        generate("approach", 5, 20, depth=0.0)


def test_cast_vectors_rounds_exactly():
    x = np.array([1.0 + 2.0**-30, np.pi, -1e-3])
    f32 = cast_vectors(x, "float32")
    assert f32.dtype == np.float32 and np.array_equal(f32, x.astype(np.float32))
    bf = cast_vectors(x, "bfloat16")
    # bfloat16 keeps 8 significant bits: the float32 bit pattern has 16 zero low bits.
    assert bf.dtype == np.float32 and np.all(bf.view(np.uint32) & 0xFFFF == 0)
    with pytest.raises(ValueError, match="dtype"):
        cast_vectors(x, "float8")


def test_checkpoints_are_log_spaced_and_dense_around_the_event():
    assert checkpoints(1000)[:7] == (1, 2, 5, 10, 20, 50, 100)
    assert checkpoints(1000)[-1] == 1000
    pts = checkpoints(1000, event=500)
    assert {484, 496, 499, 500, 501, 504, 516} <= set(pts)
    with pytest.raises(ValueError, match="event"):
        checkpoints(10, event=11)


def test_plan_sweep_validates_arguments():
    configs = plan_sweep(
        dims=[5],
        updates=[30],
        regimes=["walk", "crossing"],
        dtypes=["float64"],
        policies=["plain"],
        engines=["reference"],
    )
    assert [c.label for c in configs] == ["walk-n5-k30-float64", "crossing-n5-k30-float64"]
    assert configs[0].sequence_seed().entropy == configs[0].sequence_seed().entropy
    with pytest.raises(ValueError, match="bfloat16"):
        plan_sweep(dtypes=["bfloat16"])
    with pytest.raises(ValueError, match="policies"):
        plan_sweep(policies=["magic"])
    with pytest.raises(ValueError, match="dims"):
        plan_sweep(dims=[1])
    with pytest.raises(ValueError, match="device"):
        plan_sweep(device="tpu")


def test_reference_policies_refuse_refresh_and_monitor():
    rng = np.random.default_rng(0)
    a0 = np.eye(5)
    guarded = ReferenceTrack(a0, "float64", policy_spec("guarded"))
    plain = ReferenceTrack(a0, "float64", policy_spec("plain"))
    u, v = np.zeros(5), np.zeros(5)
    u[0], v[0] = -1.0 + 1e-4, 1.0  # c = 1e-4: log|c| < -6, refused by the P4 guard only
    assert not guarded.propose(u, v) and guarded.refused == 1
    assert plain.propose(u, v) and plain.applied == 1
    refresh = ReferenceTrack(a0, "float64", policy_spec("refresh", refresh_every=3))
    for _ in range(7):
        refresh.propose(0.01 * rng.standard_normal(5), rng.standard_normal(5))
    assert refresh.refreshes == 2
    # The monitor corrects a planted drift of X and leaves a good inverse.
    mon = ReferenceTrack(a0, "float64", policy_spec("monitored"))
    mon._t._inv = mon._t._inv + 1e-9 * rng.standard_normal((5, 5))
    st = mon.state()
    assert inverse_ratio(st.a, st.x, dtype="float64").value > allowed_ratio(1)
    assert mon.propose(0.01 * rng.standard_normal(5), rng.standard_normal(5))
    assert mon.corrections == 1
    st = mon.state()
    assert_inverse(st.a, out=st.x, dtype="float64", updates=1)
