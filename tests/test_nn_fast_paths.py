"""Fast paths of the torch layers: each shortcut re-checks or falls back when its premise fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import invlin.nn.activations as activations
from invlin.nn import LeakySoftplus, LULinear
from invlin.reference import activations as ref

MAX_ULP = 6.0  # as in tests/test_nn_activations.py


def _ulp_errors(x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    truth = ref.LeakySoftplus(0.1).inverse(y)  # float64, within 3 float64 ulp
    spacing = np.spacing(np.abs(truth).astype(np.float32)).astype(np.float64)
    return np.abs(x.double().reshape(-1).numpy() - truth) / spacing


def _sample() -> np.ndarray:
    rng = np.random.default_rng(7)
    c = 0.9 * np.log(2)
    y = np.concatenate(
        [
            5 * rng.standard_normal(20000),
            c + 1e-6 * rng.standard_normal(2000),
            -(10.0 ** rng.uniform(-30, 30, 2000)),
            10.0 ** rng.uniform(-30, 30, 2000),
        ]
    )
    return y.astype(np.float32).astype(np.float64)


def test_leaky_softplus_fast_path_is_accurate_without_fallback(monkeypatch):
    calls = []
    act = LeakySoftplus(0.1)
    real = act._monotone_solve
    monkeypatch.setattr(act, "_monotone_solve", lambda *a: calls.append(1) or real(*a))
    y = _sample()
    x, _ = act.inverse(torch.from_numpy(y).float().reshape(-1, 100))
    assert not calls  # float32: the one-sync check accepted every element
    assert _ulp_errors(x, y).max() <= MAX_ULP


def test_leaky_softplus_check_catches_an_unconverged_start(monkeypatch):
    # Without the cheap Newton steps the two accurate steps cannot converge from the bracket's
    # end: the check must notice and the monotone iteration must finish the job.
    monkeypatch.setitem(activations._CHEAP_STEPS, torch.float32, 0)
    act = LeakySoftplus(0.1)
    y = _sample()
    yt = torch.from_numpy(y).float().reshape(-1, 100)
    x, _ = act.inverse(yt)
    assert _ulp_errors(x, y).max() <= MAX_ULP
    monkeypatch.setattr(act, "_monotone_solve", lambda x, *rest: x)  # what skipping it returns
    x_unchecked, _ = act.inverse(yt)
    assert _ulp_errors(x_unchecked, y).max() > 1e3


def test_leaky_softplus_fast_path_keeps_nonfinite_values():
    act = LeakySoftplus(0.1)
    y = torch.tensor([[float("inf"), float("-inf"), float("nan"), 1.0, -3e38]])
    x, _ = act.inverse(y)
    assert x[0, 0] == float("inf") and x[0, 1] == float("-inf") and torch.isnan(x[0, 2])
    assert torch.isfinite(x[0, 3]) and x[0, 4] == float("-inf")  # root below −max


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lu_inverse_rechecks_the_diagonal_after_an_in_place_change(dtype):
    layer = LULinear(4, dtype=dtype)
    y = torch.randn(3, 4, dtype=dtype)
    layer.inverse(y)  # the nonzero diagonal is checked and remembered
    with torch.no_grad():
        layer.upper_diag[2] = 0.0
    with pytest.raises(ValueError, match="index 2"):
        layer.inverse(y)


def test_lu_inverse_ignores_the_unused_triangles():
    layer = LULinear(5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(4, 5, dtype=torch.float64)
    x, _ = layer.inverse(y)
    with torch.no_grad():  # garbage where the masks cut: the solves must not read it
        layer.lower_entries.add_(torch.triu(torch.full((5, 5), 1e3, dtype=torch.float64)))
        layer.upper_entries.add_(torch.tril(torch.full((5, 5), -1e3, dtype=torch.float64)))
    assert torch.equal(layer.inverse(y)[0], x)
