"""The drift monitor's decision and probe scale, pinned exactly (issue 21, item 6).

A monitor acting only when *both* of its criteria exceed, and a probe ratio missing its factor
n, survived a mutation run: no test gave the monitor a reading where only one criterion exceeds,
and the probe's test accepted a ratio off by a factor 10√n. Here each criterion exceeds alone,
and the probe's ratios are compared with residual / (n‖A‖₁‖X‖₁ε) computed from the same reading.
"""

from __future__ import annotations

import pytest
import torch

from invlin._dtypes import eps
from invlin.nn import DriftMonitor, DriftReading, probe_drift

SMALL = 1e-12  # a residual far below max_correctable: "correct" is possible


def _reading(ratio: float, logdet_ratio: float, residual: float = SMALL) -> DriftReading:
    return DriftReading(residual, ratio, 0.0, logdet_ratio, kappa=1.0)


@pytest.mark.parametrize(
    ("ratio", "logdet_ratio", "action"),
    [
        (1.0, 1.0, "none"),
        (100.0, 100.0, "none"),  # on the threshold: still within
        (101.0, 1.0, "correct"),  # the inverse ratio alone exceeds
        (1.0, 101.0, "correct"),  # the log|det| ratio alone exceeds
        (101.0, 101.0, "correct"),
    ],
)
def test_either_criterion_alone_triggers_the_action(ratio, logdet_ratio, action):
    m = DriftMonitor(max_ratio=100.0, max_kappa_drop=None)
    assert m.decide(_reading(ratio, logdet_ratio)) == action
    # a residual too large for the hyperpower step: refresh instead of correct
    big = m.decide(_reading(ratio, logdet_ratio, residual=0.5))
    assert big == ("none" if action == "none" else "refresh")


def test_refresh_action_replaces_the_correction_for_either_criterion():
    m = DriftMonitor(max_ratio=100.0, action="refresh", max_kappa_drop=None)
    assert m.decide(_reading(101.0, 1.0)) == "refresh"
    assert m.decide(_reading(1.0, 101.0)) == "refresh"
    assert m.decide(_reading(1.0, 1.0)) == "none"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [2, 16])
def test_probe_ratios_are_on_the_n_norms_eps_scale(dtype, n):
    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, n, dtype=torch.float64, generator=g) + n * torch.eye(n, dtype=torch.float64)
    # a tracked inverse off by a relative 1e-4 (a residual far above round-off)
    noise = torch.randn(n, n, dtype=torch.float64, generator=g)
    x = torch.linalg.inv(a) @ (torch.eye(n, dtype=torch.float64) + 1e-4 * noise)
    a, x = a.to(dtype), x.to(dtype)
    r = probe_drift(a, x, probes=4, generator=g)
    na = float(a.abs().sum(dim=0).max())
    nx = float(x.abs().sum(dim=0).max())
    scale = n * na * nx * eps(dtype)
    assert r.residual > 0 and r.logdet_drift != 0
    assert r.ratio == pytest.approx(r.residual / scale, rel=1e-6)
    assert r.logdet_ratio == pytest.approx(abs(r.logdet_drift) / scale, rel=1e-6)
    assert r.kappa == pytest.approx(na * nx, rel=1e-6)
