"""P4InvLinear and P4Scheduler refuse bad arguments and singular inputs, naming them."""

from __future__ import annotations

import math

import pytest
import torch
from p4_helpers import (
    make_layer,
    same_state,
    tracked_state,
)

from invlin.nn import P4InvLinear
from invlin.nn.scheduler import P4Scheduler


def test_bad_inputs_and_nonfinite_perturbation(scalar_form):
    layer = make_layer(4, seed=6)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\)"):
        layer(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating"):
        layer(torch.ones(2, 4, dtype=torch.int64))
    before = tracked_state(layer)
    with torch.no_grad():
        layer.v[1] = float("nan")
    assert layer.merge() is False
    assert same_state(before, tracked_state(layer))
    assert torch.count_nonzero(layer.u) == 0 and torch.isfinite(layer.v).all()
    assert layer.counters["nonfinite_resets"] == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"penalty_bounds": ("a", 1.0)}, "penalty_bounds"),
        ({"penalty_bounds": (math.nan, 1.0)}, "penalty_bounds"),
        ({"penalty_bounds": (0.0, 1.0, 2.0)}, "penalty_bounds"),
        ({"penalty_bounds": (3.0, 1.0)}, "penalty_bounds"),
        ({"state_dtype": torch.int64}, "state_dtype"),
        ({"dtype": torch.int32}, "dtype"),
        ({"dtype": torch.complex64}, "dtype"),
        ({"monitor": "every merge"}, "monitor"),
        ({"guard": (0.0, 1.0)}, "guard"),
    ],
)
def test_bad_constructor_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        P4InvLinear(3, **kwargs)


@pytest.mark.parametrize("weight", [-0.1, math.inf, math.nan, "0.1", None, True])
def test_penalty_refuses_a_bad_weight(weight):
    layer = make_layer(4)
    before = tracked_state(layer)
    with pytest.raises(ValueError, match=r"^weight must be a finite number >= 0"):
        layer.penalty(weight=weight)
    assert same_state(before, tracked_state(layer))
    assert float(layer.penalty(weight=0).detach()) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"merge_every": None}, "merge_every"),
        ({"merge_every": True}, "merge_every"),
        ({"force_every": 0}, "force_every"),
        ({"correct_every": 2.0}, "correct_every"),
        ({"reset": ("w",)}, "reset"),
        ({"reset": "weight"}, "reset"),
        ({"reset": (1,)}, "reset"),
    ],
)
def test_scheduler_refuses_bad_settings_by_name(kwargs, name):
    layer = make_layer(3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=f"^{name} must"):
        P4Scheduler(layer, opt, **kwargs)
    with pytest.raises(ValueError, match=r"^optimizer must be a torch\.optim\.Optimizer"):
        P4Scheduler(layer, [opt])
    assert P4Scheduler(layer, opt, reset="bias").reset == ("bias",)  # one name as a string


def test_inverse_raises_on_singular_factor_even_after_a_cached_check(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    y = torch.randn(2, 3, dtype=torch.float64)
    layer.inverse(y)  # c checked and remembered for these parameters
    with torch.no_grad():  # c = 1 + vᵀu = 0 now, with A = I
        layer.v.copy_(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
        layer.u.copy_(torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="singular"):
        layer.inverse(y)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([-1.0, math.inf, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="singular"):
        layer.inverse(y)


@pytest.mark.parametrize("order", [1, 2.0, True])
def test_correct_refuses_an_order_below_two_by_name(order):
    layer = P4InvLinear(3)
    before = tracked_state(layer)
    with pytest.raises(ValueError, match=r"^order must be an integer ≥ 2, got "):
        layer.correct(order=order)
    assert same_state(before, tracked_state(layer))
