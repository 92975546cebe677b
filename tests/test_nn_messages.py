"""Error messages of the invlin.nn layers name the real cause of a failure (issue 21, item 5).

A non-finite input or parameter is not a near-zero pivot, and a non-finite u or v does not make
A + u vᵀ singular: each message must say what is actually wrong, and name the tensor.
"""

from __future__ import annotations

import math

import pytest
import torch

from invlin.nn import LULinear, P4InvLinear


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_lu_inverse_of_a_non_finite_input_says_so(bad):
    layer = LULinear(4)
    y = torch.randn(3, 4)
    y[1, 2] = bad
    with pytest.raises(ValueError, match=r"y holds non-finite values") as info:
        layer.inverse(y)
    message = str(info.value)
    assert "(1, 2)" in message  # the first bad entry
    assert "too close to zero" not in message


def test_lu_inverse_with_a_non_finite_parameter_names_it():
    layer = LULinear(4)
    with torch.no_grad():
        layer.lower_entries[2, 0] = math.nan
    with pytest.raises(ValueError, match=r"parameter lower_entries holds non-finite") as info:
        layer.inverse(torch.randn(3, 4))
    assert "too close to zero" not in str(info.value)


def test_lu_inverse_overflow_with_finite_values_still_names_the_small_pivot():
    # The genuine case keeps its message: finite y, finite parameters, a tiny pivot.
    layer = LULinear(3)
    with torch.no_grad():
        layer.upper_diag[1] = 1e-30
        layer.upper_entries[0, 1] = 1e30
    with pytest.raises(ValueError, match=r"upper_diag\[1\] = 1e-30 .* too close to zero"):
        layer.inverse(torch.full((2, 3), 1e10))


@pytest.mark.parametrize("name", ["u", "v"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_p4_inverse_with_non_finite_u_or_v_names_it(scalar_form, name, bad):
    layer = P4InvLinear(4, dtype=torch.float64)
    with torch.no_grad():
        getattr(layer, name)[2] = bad
    with pytest.raises(ValueError, match=rf"^{name} holds non-finite values \(first at index 2\)"):
        layer.inverse(torch.randn(3, 4, dtype=torch.float64))


def test_p4_inverse_with_a_non_finite_tracked_inverse_names_it(scalar_form):
    layer = P4InvLinear(4, dtype=torch.float64)
    with torch.no_grad():
        layer.u.fill_(0.1)
        layer.weight_inverse[1, 3] = math.nan
    with pytest.raises(ValueError, match=r"^weight_inverse holds non-finite values"):
        layer.inverse(torch.randn(3, 4, dtype=torch.float64))


def test_p4_genuinely_singular_factor_keeps_its_message(scalar_form):
    layer = P4InvLinear(3, dtype=torch.float64)
    with torch.no_grad():  # A = I: c = 1 + vᵀu = 0
        layer.v.copy_(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
        layer.u.copy_(torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^A \+ u vᵀ is singular: c = 1 \+ vᵀA⁻¹u = 0\.0$"):
        layer.inverse(torch.randn(2, 3, dtype=torch.float64))


def test_p4_overflowing_factor_with_finite_operands_is_not_called_singular():
    layer = P4InvLinear(3, dtype=torch.float64)
    with torch.no_grad():
        layer.u.fill_(1e200)
        layer.v.fill_(1e200)
    with pytest.raises(ValueError, match=r"= inf is not finite although u, v, weight_inverse are"):
        layer.inverse(torch.randn(2, 3, dtype=torch.float64))
