"""Each validator check, run alone, fails its own broken layer and passes that layer's correct twin.

Every other test of the validator runs all checks together, where one check's failure can hide
that another check lost its power (issue 21, item 6: a log|det| consistency check comparing
magnitudes only and a batch-shape check skipping 3-D inputs survived a mutation run). Here the
runner is restricted to one check and one dtype, so each check must find its bug by itself.
"""

from __future__ import annotations

import pytest
from validate_broken import (
    compile_follows_weight,
    compile_frozen_weight,
    conditional_affine,
    constant_map,
    context_ignoring_inverse,
    correct_linear,
    detached_bias,
    first_batch_axis_logdet,
    float32_logdet,
    ill_conditioned_inverse,
    inverse_logdet_same_sign,
    low_precision_eval_cache,
    non_finite_at_edges,
    pickle_drops_buffer,
    pickle_keeps_buffer,
    removed_torch_api,
    sigmoid,
    single_sample_logdet,
    stale_cache,
    unmovable,
    wrong_dims_logdet,
    wrong_sign_logdet,
    zero_init_coupling_twin,
    zero_init_shift_coupling,
)

from invlin.validate.checks import KNOWN
from invlin.validate.runner import validate

RUN = {"features": 3, "profile": "dev", "max_examples": 10, "dtypes": ("float64",)}

#: check → (a layer only that check must catch, its correct twin), all judged in float64.
PAIRS = {
    "invertibility": (constant_map, correct_linear),
    "round_trip": (zero_init_shift_coupling, zero_init_coupling_twin),
    "logdet_autograd": (wrong_sign_logdet, correct_linear),
    "logdet_oracle": (wrong_sign_logdet, correct_linear),
    "logdet_consistency": (inverse_logdet_same_sign, correct_linear),
    "batch_shape": (first_batch_axis_logdet, correct_linear),  # wrong only for 3-D batches
    "dtype_device": (float32_logdet, correct_linear),
    "modes": (low_precision_eval_cache, correct_linear),
    "cache": (stale_cache, correct_linear),
    "edges": (non_finite_at_edges, sigmoid),
    "conditioning": (ill_conditioned_inverse, correct_linear),
    "gradients": (detached_bias, correct_linear),
    "composition": (single_sample_logdet, correct_linear),  # wrong only for the () batch
    "persistence": (pickle_drops_buffer, pickle_keeps_buffer),
    "context": (context_ignoring_inverse, conditional_affine),
    "compile": (compile_frozen_weight, compile_follows_weight),
}

#: extra arguments of the checks that need them (a conditional layer's context width)
EXTRA = {"context": {"context_features": 2}}


def _alone(factory, check: str):
    report = validate(factory, checks=[check], **RUN, **EXTRA.get(check, {}))
    assert report.error is None, report.error
    (result,) = report.results
    assert result.check == check
    return result


def test_every_check_has_a_broken_layer_and_a_twin():
    assert set(PAIRS) == set(KNOWN)  # default, conditional and opt-in checks alike


@pytest.mark.parametrize("check", list(PAIRS))
def test_broken_layer_fails_the_check_alone(check):
    broken, _ = PAIRS[check]
    r = _alone(broken, check)
    assert r.status == "fail", (broken.__name__, r.status, r.message)
    assert r.message and r.example


@pytest.mark.parametrize("check", list(PAIRS))
def test_correct_twin_passes_the_check_alone(check):
    _, twin = PAIRS[check]
    r = _alone(twin, check)
    assert r.status == "pass", (twin.__name__, r.status, r.message)
    assert r.cases and r.cases > 0


@pytest.mark.parametrize("check", ["round_trip", "edges", "conditioning"])
def test_a_raising_layer_is_an_error_in_every_check(check):
    r = _alone(removed_torch_api, check)
    assert r.status == "error", (r.status, r.message)
    assert r.exception and r.exception.startswith("AttributeError")


@pytest.mark.parametrize("check", ["round_trip", "edges", "modes"])
def test_a_layer_raising_outside_the_search_is_an_error(check):
    r = _alone(unmovable, check)  # .to() raises: before any case is searched
    assert r.status == "error", (r.status, r.message)
    assert r.exception == "RuntimeError: this layer cannot be moved"
    assert "the layer raised RuntimeError" in r.message


def test_wrong_dims_logdet_is_caught_by_the_batch_shape_check_alone():
    r = _alone(wrong_dims_logdet, "batch_shape")  # wrong for 1-D and 3-D batches
    assert r.status == "fail", (r.status, r.message)


@pytest.mark.parametrize("check", ["logdet_oracle", "conditioning"])
def test_a_matrix_beyond_the_oracle_budget_is_not_judged_rather_than_blamed(check, monkeypatch):
    """The oracle refuses work beyond its budget (OracleBudgetError); a check that needs it must
    report 'insufficient' with the reason, not an error or a failure of the layer."""
    from invlin.oracle import budget

    monkeypatch.setattr(budget, "DEFAULT_BUDGET", 1.0)  # below the cost of any evaluation
    result = _alone(correct_linear, check)
    assert result.status == "insufficient", result
    assert "budget" in result.message
