"""The drift monitor is on by default: what the default probes, that it can be switched off, that
each of its two criteria acts alone, and that a default layer keeps its bounds through 20,000
random merges (where a layer without the monitor does not)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invlin.drift.policies import POLICIES, LayerTrack, policy_spec
from invlin.nn import DriftMonitor, DriftReading, P4InvLinear, P4Scheduler
from invlin.oracle import evaluate
from invlin.testing import assert_logabsdet, assert_sign
from invlin.testing.tolerance import THRESHOLD, inverse_ratio


def test_a_default_layer_has_the_default_monitor_and_it_can_be_switched_off():
    layer = P4InvLinear(4)
    assert layer.monitor == DriftMonitor.default()
    assert layer.monitor.every > 1 and layer.monitor.max_ratio < THRESHOLD
    assert P4InvLinear(4).monitor is not layer.monitor  # one per layer, not a shared instance
    assert P4InvLinear(4, monitor=None).monitor is None
    mine = DriftMonitor(every=3)
    assert P4InvLinear(4, monitor=mine).monitor is mine


def test_drift_report_baselines_keep_the_monitor_off_unless_the_policy_is_monitored():
    a0 = np.eye(4)
    for policy in POLICIES:
        layer = LayerTrack(a0, "float64", policy_spec(policy)).layer
        if policy == "monitored":
            assert layer.monitor == DriftMonitor(**policy_spec(policy).monitor)
        else:
            assert layer.monitor is None, policy


def _merge_random(layer: P4InvLinear, g: torch.Generator) -> bool:
    """Offer one random merge: u ~ N(0, 0.05²/n), v ~ N(0, I) (in the parameters' dtype)."""
    n = layer.features
    with torch.no_grad():
        layer.u.copy_(torch.randn(n, generator=g) * (0.05 / math.sqrt(n)))
        layer.v.copy_(torch.randn(n, generator=g))
    return layer.merge()


def test_the_default_monitor_probes_every_eighth_merge():
    layer = P4InvLinear(6, init="orthogonal", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    merged = 0
    while merged < 7:
        merged += _merge_random(layer, g)
    assert layer.last_reading is None
    while merged < 8:
        merged += _merge_random(layer, g)
    assert layer.last_reading is not None


def test_a_default_layer_under_the_scheduler_repairs_a_planted_drift():
    layer = P4InvLinear(12, init="orthogonal", dtype=torch.float64)
    sched = P4Scheduler(torch.nn.Sequential(layer), torch.optim.SGD(layer.parameters(), lr=0.0))
    with torch.no_grad():
        layer.weight_inverse.add_(1e-9 * torch.randn(12, 12, dtype=torch.float64))
    assert inverse_ratio(layer.weight, layer.weight_inverse).value > 1e3
    for _ in range(8):
        sched.step()
    assert layer.merges == 8 and layer.corrections + layer.refreshes >= 1
    assert inverse_ratio(layer.weight, layer.weight_inverse).value <= THRESHOLD


def _reading(*, ratio: float, logdet_ratio: float, residual: float) -> DriftReading:
    return DriftReading(residual, ratio, 0.0, logdet_ratio, 1.0)


@pytest.mark.parametrize("monitor", [DriftMonitor(), DriftMonitor.default()])
def test_either_criterion_alone_triggers_the_monitor(monitor):
    """Only the inverse ratio, or only the log|det| ratio, above ``max_ratio``: either calls for
    action (a monitor that acts only when both exceed would answer "none")."""
    big, ok = 10 * monitor.max_ratio, 0.1 * monitor.max_ratio
    small, large = 0.1 * monitor.max_correctable, 2 * monitor.max_correctable
    assert monitor.decide(_reading(ratio=ok, logdet_ratio=ok, residual=small)) == "none"
    assert monitor.decide(_reading(ratio=big, logdet_ratio=ok, residual=small)) == "correct"
    assert monitor.decide(_reading(ratio=ok, logdet_ratio=big, residual=small)) == "correct"
    assert monitor.decide(_reading(ratio=big, logdet_ratio=ok, residual=large)) == "refresh"
    assert monitor.decide(_reading(ratio=ok, logdet_ratio=big, residual=large)) == "refresh"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_a_default_layer_keeps_its_bounds_through_20000_random_merges(seed):
    """A default ``P4InvLinear(64)`` (float32 parameters, float64 state, default guard and
    monitor) offered 20,000 random merges (about 2,000 pass the guard; κ₁ ends at 10⁶–10⁹):
    the tracked inverse's LAPACK ratio against the held A stays within the threshold of a fresh
    inverse, and sign and log|det| agree with the oracle's on the threshold of a fresh
    computation. Without the monitor the same runs end with ratios of 265–1650."""
    torch.manual_seed(seed)
    layer = P4InvLinear(64, generator=torch.Generator().manual_seed(100 + seed))
    g = torch.Generator().manual_seed(seed)
    for _ in range(20_000):
        _merge_random(layer, g)
    assert layer.merges > 1000  # the run did merge
    a, x = layer.weight.numpy(), layer.weight_inverse.numpy()
    ratio = inverse_ratio(a, x).value
    assert ratio <= THRESHOLD, f"inverse ratio {ratio:.3g} after {layer.merges} merges"
    truth = evaluate(a)
    assert_sign(out=int(layer.sign), expected=truth.sign)
    assert_logabsdet(
        out=float(layer.logabsdet),
        expected=truth.logabsdet,
        n=64,
        kappa=truth.kappa,
        dtype="float64",
    )
