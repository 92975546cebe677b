"""The reference Jacobian's cross-check: a float64 reverse-mode Jacobian that is itself wrong
must not fail a layer (issue 19: sbi's MAF at |x| ~ 1e47), a wrong log|det| must still fail.

The layers are in ``validate_broken.py`` ("a reference Jacobian that reverse-mode autograd gets
wrong"): a diagonal affine map whose backward cancels in floating point for large |x| while its
forward-mode rule and its log|det| are exact; the same with a log|det| off by 0.5 exactly where
the reverse mode is unreliable; the same without forward-mode AD; and the exact twin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from validate_broken import (
    cancelling_backward,
    cancelling_backward_no_forward_ad,
    cancelling_backward_wrong_logdet,
    exact_backward,
    sigmoid,
    vanishing_backward,
    vanishing_backward_no_forward_ad,
)

from invlin.testing import THRESHOLD, forward_ratio
from invlin.validate.checks.base import CheckContext
from invlin.validate.checks.logdet import logdet_autograd
from invlin.validate.checks.truth import cross_check, local
from invlin.validate.runner import validate

RUN = {"features": 3, "profile": "dev", "max_examples": 10, "dtypes": ("float64",)}

#: an ordinary row and one where the cancelling backward loses ε·|x|/d ≈ 1e-10 of each entry
ROWS = np.array([[0.5, -1.0, 2.0], [1e5, 3.0, -2e6]])


def _float64(factory) -> object:
    adapter = factory(3)
    adapter.to(dtype=torch.float64)
    return adapter


def _alone(factory, check: str = "logdet_autograd"):
    report = validate(factory, checks=[check], **RUN)
    assert report.error is None, report.error
    (result,) = report.results
    return result


@pytest.mark.parametrize("factory", [exact_backward, sigmoid])
def test_forward_mode_local_equals_reverse_mode_on_an_exact_layer(factory):
    """Both modes compute the same derivatives of an exact layer: J to within ε₆₄·‖J‖ (κ = 1
    per row, LAPACK ratio), the same y and log|det|, ∂ℓ/∂x alike."""
    adapter = _float64(factory)
    x = np.array([[0.25, -0.5, 0.75], [2.0, 0.1, -3.0]])
    rev, fwd = local(adapter, x), local(adapter, x, mode="forward")
    for i in range(x.shape[0]):
        r = forward_ratio(fwd.jac[i].ravel(), rev.jac[i].ravel(), kappa=1.0, dtype="float64")
        assert r.passed(THRESHOLD), (i, r.value)
    np.testing.assert_array_equal(fwd.y, rev.y)
    np.testing.assert_array_equal(fwd.ladj, rev.ladj)
    np.testing.assert_array_equal(fwd.sign, rev.sign)
    assert fwd.grad_ladj is not None and rev.grad_ladj is not None
    assert fwd.grad_ladj.shape == rev.grad_ladj.shape == x.shape


def test_local_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'reverse' or 'forward'"):
        local(_float64(exact_backward), ROWS, mode="central")


def test_cross_check_disputes_the_reverse_mode_only_where_it_is_wrong():
    adapter = _float64(cancelling_backward)
    rev = local(adapter, ROWS)
    cc = cross_check(adapter, ROWS, rev, "float64")
    assert cc.forward is not None and cc.reason == ""
    assert cc.disputed.tolist() == [False, True], cc.ratio
    assert cc.ratio[0] <= THRESHOLD < cc.ratio[1]
    # forward mode is exact here: its log|det| is the layer's Σ log dᵢ
    np.testing.assert_allclose(cc.forward.logabsdet, rev.ladj, rtol=0, atol=1e-15)
    assert "reference Jacobian unreliable" in cc.describe(1, rev)
    assert "reference Jacobian corroborated" in cc.describe(0, rev)


def test_cross_check_of_an_exact_layer_disputes_nothing():
    adapter = _float64(exact_backward)
    cc = cross_check(adapter, ROWS, local(adapter, ROWS), "float64")
    assert not cc.disputed.any() and np.all(cc.ratio <= THRESHOLD), cc.ratio


def test_cross_check_without_forward_mode_ad_says_why_and_disputes_nothing():
    adapter = _float64(cancelling_backward_no_forward_ad)
    cc = cross_check(adapter, ROWS, local(adapter, ROWS), "float64")
    assert cc.forward is None and not cc.disputed.any()
    assert "forward-mode AD failed: NotImplementedError" in cc.reason
    assert "no forward-mode estimate" in cc.describe(0, local(adapter, ROWS))


def test_an_inaccurate_reverse_mode_reference_no_longer_fails_the_layer():
    """The layer is right; only its reference's reverse-mode derivative is wrong at large |x|:
    those rows are not judged, with the reason, and the ordinary rows still pass."""
    r = _alone(cancelling_backward)
    assert r.status == "pass", (r.status, r.message)
    assert "not judged" in r.message and "reference Jacobian unreliable" in r.message, r.message


def test_a_wrong_logdet_where_the_reference_is_disputed_still_fails():
    """log|det| off by 0.5 only where the reverse mode is unreliable: the forward-mode estimate
    is right there, the layer is beyond both, so it fails."""
    r = _alone(cancelling_backward_wrong_logdet)
    assert r.status == "fail", (r.status, r.message)
    assert "reference Jacobian unreliable" in r.message, r.message
    assert "the layer is beyond both" in r.message, r.message
    assert abs(r.example["ladj"] - r.example["forward_mode_slogdet"] - 0.5) < 1e-12


def test_without_forward_mode_ad_the_failure_stands_and_says_why():
    r = _alone(cancelling_backward_no_forward_ad)
    assert r.status == "fail", (r.status, r.message)
    assert "no forward-mode estimate of the reference Jacobian" in r.message, r.message


def test_the_exact_twin_passes_with_no_row_left_unjudged():
    r = _alone(exact_backward)
    assert r.status == "pass", (r.status, r.message)
    assert "not judged" not in r.message, r.message


def test_a_batch_of_disputed_rows_only_is_no_failure_but_hides_no_bug():
    """A replayed batch whose every row is at |x| ≳ 1e5 (every reference disputed): the right
    layer is not failed, the broken twin fails on the same rows."""
    x = np.array([[1e5, -3e5, 2e6], [-4e5, 1e6, 7e4]])
    ctx = CheckContext(features=3, profile="dev", max_examples=2, replay=(x,))
    assert logdet_autograd(lambda: cancelling_backward(3), ctx).status != "fail"
    bad = logdet_autograd(lambda: cancelling_backward_wrong_logdet(3), ctx)
    assert bad.status == "fail", bad.message


def test_logdet_oracle_takes_a_disputed_rows_jacobian_from_forward_mode():
    """logdet_oracle first requires adapter.matrix() to be the layer's Jacobian: a reverse-mode
    J that is wrong at large |x| no longer fails it, a wrong log|det| still does."""
    r = _alone(cancelling_backward, "logdet_oracle")
    assert r.status == "pass", (r.status, r.message)
    assert "taken from forward mode" in r.message, r.message
    bad = _alone(cancelling_backward_wrong_logdet, "logdet_oracle")
    assert bad.status == "fail" and "disagrees with the oracle" in bad.message, bad.message
    assert _alone(exact_backward, "logdet_oracle").status == "pass"


def test_logdet_oracle_without_forward_mode_ad_keeps_failing():
    r = _alone(cancelling_backward_no_forward_ad, "logdet_oracle")
    assert r.status == "fail" and "is not the layer's Jacobian" in r.message, r.message
    assert "no forward-mode estimate" in r.message, r.message


# -- the real case: sbi's unconditional MAF (zuko MAF, MAF, z-scoring) at |x| ~ 1e47 ------------
SBI_ROW = np.array(
    [[1.1143455059147042e30, 202.37296660601686, 3.3542558433738344e47, 3.31578239749415e23]]
)


def _sbi_maf():
    pytest.importorskip("sbi")
    from invlin.validate.adapters import adapt
    from invlin.validate.catalog import FACTORIES

    return adapt(FACTORIES.sbi.UnconditionalMAF(features=4), 4, name="UnconditionalMAF")


def test_sbi_maf_reverse_mode_reference_is_disputed_at_the_reported_row():
    """The triaged row: reverse mode gives det sign −1 for a map monotone in every layer;
    forward mode gives sbi's own log|det|."""
    adapter = _sbi_maf()
    adapter.to(dtype=torch.float64)
    rev = local(adapter, SBI_ROW)
    cc = cross_check(adapter, SBI_ROW, rev, "float64")
    assert rev.sign[0] == -1.0 and cc.forward is not None and cc.forward.sign[0] == 1.0
    assert cc.disputed[0] and "reference Jacobian unreliable" in cc.describe(0, rev)


def test_sbi_maf_is_not_failed_for_its_reference_at_the_reported_row():
    make = _sbi_maf
    ctx = CheckContext(features=4, profile="dev", max_examples=2, replay=(SBI_ROW,))
    r = logdet_autograd(make, ctx)
    assert r.status != "fail", r.message


def test_sbi_maf_reverse_and_forward_jacobians_disagree_where_the_forward_one_is_ill_conditioned():
    """The validator's perturbed MAF at x ~ [1e80, −1.5e3, 5e63, −4e108]: the reverse-mode J
    (κ ≈ 2e14) gives ℓ* = 49.4 for sbi's −2.72; the forward-mode J is so ill-conditioned
    (κ ≈ 1e28) that its ℓ* alone cannot dispute that, but the two matrices differ by O(‖J‖)."""
    from invlin.validate.perturbation import perturb

    adapter = _sbi_maf()
    perturb([adapter], 0, scale=1.0)
    adapter.to(dtype=torch.float64)
    x = np.array(
        [[9.684790239274681e79, -1511.2276047449586, 4.830384236185423e63, -3.6019952162435674e108]]
    )
    rev = local(adapter, x)
    cc = cross_check(adapter, x, rev, "float64")
    assert cc.forward is not None and cc.disputed[0], cc.ratio


# -- invertibility: a reverse-mode Jacobian that looks singular --------------------------------
def test_a_reverse_mode_jacobian_that_looks_singular_is_not_called_singular():
    """Every row's reverse-mode J is zero, forward mode of full rank: nothing can be judged
    (insufficient, with the reason), and the layer is not failed."""
    report = validate(vanishing_backward, features=3, checks=["invertibility"], profile="dev")
    for r in report.results:
        assert r.status == "insufficient", r
        assert "reverse-mode Jacobian singular, forward mode of full rank" in r.message, r


def test_invertibility_still_fails_a_layer_singular_in_both_modes():
    report = validate(
        vanishing_backward_no_forward_ad, features=3, checks=["invertibility"], profile="dev"
    )
    for r in report.results:
        assert r.status == "fail" and "does not depend on the input" in r.message, r
