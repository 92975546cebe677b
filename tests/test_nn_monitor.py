"""The drift monitor's decisions, and its κ rule: after an ill-conditioned stretch the tracked
log|det| is recomputed once κ has come back down (no O(n²) probe sees that error)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from invlin.drift.policies import LayerTrack, ReferenceTrack, policy_spec
from invlin.drift.regimes import generate
from invlin.nn import DriftMonitor, DriftReading, P4InvLinear, probe_drift
from invlin.oracle import evaluate, exact_path
from invlin.testing import ToleranceError, assert_logabsdet, assert_sign


def _reading(*, ratio=1.0, residual=1e-12, kappa=1e3):
    return DriftReading(residual, ratio, 0.0, ratio, kappa)


def test_decide_refreshes_when_kappa_has_fallen_below_its_peak():
    m = DriftMonitor()  # max_kappa_drop = 100
    assert m.decide(_reading()) == "none"  # no peak known: no κ rule
    assert m.decide(_reading(), kappa_peak=1e5) == "none"  # exactly 100×: not yet
    assert m.decide(_reading(), kappa_peak=1.01e5) == "refresh"
    assert m.decide(_reading(kappa=None), kappa_peak=1e9) == "none"  # κ not measured
    assert m.decide(_reading(ratio=1e3), kappa_peak=1e3) == "correct"
    assert m.decide(_reading(ratio=1e3), kappa_peak=1e9) == "refresh"  # refresh covers both
    assert DriftMonitor(max_kappa_drop=None).decide(_reading(), kappa_peak=1e9) == "none"
    assert DriftMonitor(max_kappa_drop=10.0).decide(_reading(), kappa_peak=1.1e4) == "refresh"


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_kappa_drop", 1.0),
        ("max_kappa_drop", -3.0),
        ("max_kappa_drop", float("nan")),
        ("max_kappa_drop", "100"),
        ("every", 0),
        ("every", 2.5),
        ("every", True),
        ("order", 1),
        ("order", "2"),
        ("probes", 0),
        ("max_ratio", 0.0),
        ("max_ratio", "a"),
        ("max_correctable", 0.0),
        ("max_correctable", 1.5),
        ("action", "fix"),
    ],
)
def test_bad_settings_are_refused_by_name(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must"):
        DriftMonitor(**{name: bad})


def test_probe_reads_kappa_of_the_held_pair():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 7, dtype=torch.float64, generator=g)
    x = torch.linalg.inv(a)
    reading = probe_drift(a, x, generator=g)
    want = float(a.abs().sum(0).max() * x.abs().sum(0).max())
    assert reading.kappa == pytest.approx(want, rel=1e-14)
    bad = probe_drift(a, torch.full_like(x, float("nan")), generator=g)
    assert bad.kappa == float("inf")


def test_layer_keeps_the_kappa_peak_until_a_refresh():
    layer = P4InvLinear(6, init="orthogonal", dtype=torch.float64, monitor=DriftMonitor())
    assert layer.kappa_peak is None
    assert layer.check_drift() == "none"
    first = layer.kappa_peak
    assert first == pytest.approx(layer.last_reading.kappa)
    layer.kappa_peak = 1e3 * first  # as if κ had been 1000× higher since the last LU
    assert layer.check_drift() == "refresh" and layer.refreshes == 1
    assert layer.kappa_peak is None  # forgotten with the refresh
    assert layer.check_drift() == "none" and layer.kappa_peak == pytest.approx(first)


def _run_approach(engine, drop, *, n=8, updates=400, seed=0):
    """The approach regime (κ up by 10¹⁰ at constant det, then back) through a monitored
    float64 track; returns the tracked (sign, log|det|), the oracle's truth of the exact
    path of the merged updates, the number of merges and of refreshes."""
    seq = generate("approach", n, updates, seed=seed, depth=1e-10)
    track = engine(seq.a0, "float64", policy_spec("monitored", max_kappa_drop=drop), seed=seed)
    merged = [(u, v) for u, v in zip(seq.u, seq.v, strict=True) if track.propose(u, v)]
    state = track.state()
    refreshes = track.refreshes if engine is ReferenceTrack else track.layer.refreshes
    return state, evaluate(exact_path(seq.a0, merged)), len(merged), refreshes


@pytest.mark.parametrize("engine", [ReferenceTrack, LayerTrack])
@pytest.mark.parametrize("seed", [0, 1])
def test_monitor_restores_log_det_after_an_ill_conditioned_stretch(engine, seed):
    """With the κ rule the end state's log|det| passes the tolerance engine against the oracle;
    without it (corrections repair X only) the error made at κ ≈ 10¹⁰ stays, about 10⁵ times
    over the allowance once κ is back near 10."""
    state, truth, merged, refreshes = _run_approach(engine, 100.0, seed=seed)
    assert truth.kappa < 100 and refreshes >= 3  # back down, after several refreshes
    n = truth.inverse.shape[0]
    assert_logabsdet(
        out=state.logabsdet,
        expected=truth.logabsdet,
        n=n,
        kappa=truth.kappa,
        dtype="float64",
        updates=merged,
    )
    assert_sign(out=state.sign, expected=truth.sign)

    state, truth, merged, refreshes = _run_approach(engine, None, seed=seed)
    assert refreshes == 0
    with pytest.raises(ToleranceError, match=re.escape("log|det| check failed")):
        assert_logabsdet(
            out=state.logabsdet,
            expected=truth.logabsdet,
            n=n,
            kappa=truth.kappa,
            dtype="float64",
            updates=merged,
        )
    assert np.isfinite(state.logabsdet)


def test_load_state_dict_forgets_the_kappa_peak():
    layer = P4InvLinear(4, dtype=torch.float64, monitor=DriftMonitor())
    layer.kappa_peak = 1e12
    layer.load_state_dict(P4InvLinear(4, dtype=torch.float64).state_dict())
    assert layer.kappa_peak is None
    assert layer.check_drift() == "none"


def test_a_probe_reads_the_device_once():
    from benchmarks.ops import count_ops

    a = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = torch.linalg.inv(a)
    assert count_ops(lambda: probe_drift(a, x))["reads"] == 1
