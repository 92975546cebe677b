"""Drift sweeps of the torch layer on a CUDA device, bfloat16 included (skipped without CUDA)."""

from __future__ import annotations

import math

import pytest
import torch

from invlin.drift.config import plan_sweep
from invlin.drift.runner import run_configuration

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layer_policies_run_on_the_gpu(dtype):
    (config,) = plan_sweep(
        dims=[8], updates=[60], regimes=["walk"], dtypes=[dtype], engines=["layer"], device="cuda"
    )
    result = run_configuration(config)
    assert [t.policy for t in result.tracks] == ["plain", "guarded", "monitored", "refresh"]
    for t in result.tracks:
        assert t.device.startswith("cuda")
        last = t.checkpoints[-1]
        assert last.merged + last.refused == 60
        assert math.isfinite(last.inverse_ratio_exact) and last.sign_tracked in (-1, 1)
    refresh = result.tracks[3]
    assert refresh.checkpoints[-1].refreshes == 0  # 60 merges < refresh_every = 100
    if dtype == "float32":
        assert all(t.summary["passed"] for t in result.tracks)


def test_bfloat16_plain_sm_fails_through_a_crossing_while_the_guard_holds():
    (config,) = plan_sweep(
        dims=[8],
        updates=[60],
        regimes=["crossing"],
        dtypes=["bfloat16"],
        policies=["plain", "guarded"],
        engines=["layer"],
        device="cuda",
    )
    result = run_configuration(config)
    plain, guarded = result.tracks
    assert not plain.summary["passed"]
    assert guarded.checkpoints[-1].refused > 0
