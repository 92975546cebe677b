"""The validator's checks: each broken layer fails exactly its checks, invlin's layers pass all."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from validate_broken import (
    BROKEN,
    correct_linear,
    removed_torch_api,
    wrong_dims_logdet,
    wrong_sign_logdet,
)

from invlin.nn import (
    BentIdentity,
    InvertibleSequential,
    LeakySoftplus,
    LULinear,
    LUNet,
    P4InvLinear,
)
from invlin.testing import THRESHOLD
from invlin.testing.strategies import batch_shapes, edge_inputs, layer_inputs
from invlin.validate.checks import CHECKS, CheckContext
from invlin.validate.results import Conformance, LayerReport
from invlin.validate.runner import validate, validate_all
from invlin.validate.search import Probe, jsonable, search

FEATURES = 3
#: dev profile, 10 cases per search: enough to hit every bug class here, and a quick file.
RUN = {"features": FEATURES, "profile": "dev", "max_examples": 10}
DTYPES = ("float64", "float32")


def _p4_live(features: int) -> P4InvLinear:
    """P4InvLinear with a random orthogonal A and a live perturbation u vᵀ (u ≠ 0)."""
    layer = P4InvLinear(features, init="orthogonal")
    with torch.no_grad():
        layer.u.normal_(0.0, 0.3)
    return layer


def _sequence(features: int) -> InvertibleSequential:
    return InvertibleSequential(LULinear(features), BentIdentity(), _p4_live(features),
                                LeakySoftplus())


def _lunet(features: int) -> LUNet:
    return LUNet(features, blocks=3)


def _lulinear(features: int) -> LULinear:
    return LULinear(features)


#: invlin's layers (and the unbroken control of the broken linear layers) → checks skipped.
CORRECT = {
    _p4_live: (),
    _lulinear: (),
    _lunet: ("logdet_oracle", "conditioning"),
    _sequence: ("logdet_oracle", "conditioning"),
    correct_linear: (),
}


@pytest.fixture(scope="module")
def broken_reports() -> dict:
    return {f: validate(f, **RUN) for f in BROKEN}


@pytest.fixture(scope="module")
def correct_reports() -> dict:
    return {f: validate(f, **RUN) for f in CORRECT}


def _by_dtype(report: LayerReport, dtype: str) -> dict:
    return {r.check: r for r in report.results if r.dtype == dtype}


@pytest.mark.parametrize("factory", list(BROKEN), ids=lambda f: f.__name__)
def test_each_broken_layer_fails_exactly_the_checks_meant_to_catch_it(broken_reports, factory):
    report = broken_reports[factory]
    assert report.error is None
    assert len(report.results) == len(CHECKS) * len(DTYPES)
    for dtype in DTYPES:
        status, expected = BROKEN[factory][dtype]
        results = _by_dtype(report, dtype)
        flagged = {c for c, r in results.items() if r.status in ("fail", "error")}
        assert flagged == set(expected), (dtype, {c: results[c].message for c in flagged})
        for check in expected:
            r = results[check]
            assert r.status == status, (dtype, check, r.status, r.message)
            assert r.message
            assert r.example, (dtype, check)  # the (shrunk) failing case
            assert r.repro and "adapter" in r.repro and factory.__name__ in r.repro
            if r.status == "fail" and r.ratio is not None:
                assert not r.ratio <= r.allowed == THRESHOLD
            if r.status == "error":
                assert r.exception and r.exception.split(":")[0].isidentifier()
    assert not report.passed


def test_failure_messages_name_the_bug(broken_reports):
    def res(f, check, dtype="float64"):
        return _by_dtype(broken_reports[f], dtype)[check]

    r = res(wrong_sign_logdet, "logdet_autograd")
    assert "autograd" in r.message and r.example["ladj"] == pytest.approx(-r.example["slogdet"])
    r = res(wrong_dims_logdet, "batch_shape")
    assert "log|det| has shape" in r.message and len(r.example["x_shape"]) == 3
    for dtype in DTYPES:
        r = res(removed_torch_api, "round_trip", dtype)
        assert r.exception == "AttributeError: module 'torch' has no attribute 'trtrs'"
    from validate_broken import deviceless_eye, ill_conditioned_inverse, non_finite_at_edges

    r = res(deviceless_eye, "dtype_device")
    assert "dtype" in r.exception and "Float" in r.exception
    r = res(ill_conditioned_inverse, "conditioning")
    # κ²ε against κε: the ratio grows like κ; the shrunk case sits near the smallest κ that fails.
    assert r.example["kappa1"] >= 10 and r.ratio > THRESHOLD
    r = res(non_finite_at_edges, "edges")
    assert r.example["value"] in ("-inf", "inf", "nan") and abs(
        np.asarray(r.example["x"])[r.example["row"]]).max() > 100


@pytest.mark.parametrize("factory", list(CORRECT), ids=lambda f: f.__name__.strip("_"))
def test_correct_layers_pass_every_check_in_both_dtypes(correct_reports, factory):
    report = correct_reports[factory]
    assert report.error is None
    bad = [(r.dtype, r.check, r.status, r.message) for r in report.results
           if r.status in ("fail", "error")]
    assert not bad
    skips = {(r.dtype, r.check) for r in report.results if r.status == "skip"}
    assert skips == {(d, c) for d in DTYPES for c in CORRECT[factory]}
    for r in report.results:
        if r.ratio is not None:
            assert 0 <= r.ratio <= r.allowed == THRESHOLD, (r.dtype, r.check, r.ratio)
    assert report.passed


def test_results_are_json_serialisable(broken_reports, correct_reports):
    table = Conformance(layers=[broken_reports[f] for f in BROKEN] +
                        [correct_reports[_p4_live]], meta={"profile": "dev"})
    data = table.to_dict()
    for layer in data["layers"]:
        for r in layer["results"]:
            for key in ("ratio", "allowed"):
                if isinstance(r[key], float) and not math.isfinite(r[key]):
                    r[key] = jsonable(r[key])
    text = json.dumps(data, allow_nan=False)
    back = Conformance.from_dict(json.loads(text))
    assert [x.name for x in back.layers] == [x.name for x in table.layers]


def test_the_reproduction_snippet_reruns_the_failure(broken_reports):
    r = _by_dtype(broken_reports[wrong_sign_logdet], "float32")["logdet_autograd"]
    scope: dict = {}
    exec(compile(r.repro, "<repro>", "exec"), scope)
    x = torch.tensor(r.example["x"], dtype=torch.float32)
    _, ladj = scope["adapter"].forward(x)
    assert float(ladj.detach()[r.example["row"]]) == pytest.approx(r.example["ladj"], rel=1e-6)


def test_validate_all_and_meta():
    table = validate_all([("control", correct_linear), {"factory": wrong_dims_logdet}],
                         features=FEATURES, profile="dev", max_examples=3, dtypes=("float32",),
                         checks=["batch_shape"])
    assert [x.name for x in table.layers] == ["control", "WrongDimsLogdet"]
    assert [x.passed for x in table.layers] == [True, False]
    meta = table.meta
    assert meta["profile"] == "dev" and meta["checks"] == ["batch_shape"]
    assert "torch" in meta["versions"] and "numpy" in meta["versions"] and meta["date"]


def test_a_raising_factory_or_layer_never_crashes_the_run():
    def broken_factory(features):
        raise RuntimeError("cannot build")

    report = validate(broken_factory, **RUN)
    assert report.error == "RuntimeError: cannot build" and report.results == []
    assert not report.passed

    class NotALayer:
        def __call__(self, x):
            return x  # not (y, log|det|)

        def inverse(self, y):
            return y, y

    report = validate(lambda features: NotALayer(), checks=["round_trip", "edges"], **RUN)
    assert {r.status for r in report.results} == {"error"}
    assert all(r.exception.startswith("TypeError") for r in report.results)


def test_unavailable_devices_are_skipped_and_bad_arguments_refused():
    if not torch.cuda.is_available():
        report = validate(correct_linear, devices=("cuda",), checks=["round_trip"], **RUN)
        assert [r.status for r in report.results] == ["skip", "skip"]
        assert "CUDA" in report.results[0].message
    with pytest.raises(ValueError, match="checks"):
        validate(correct_linear, checks=["no_such_check"], **RUN)
    with pytest.raises(ValueError, match="dtypes"):
        validate(correct_linear, dtypes=("float16",), **RUN)
    with pytest.raises(ValueError, match="features"):
        validate(correct_linear, features=0, profile="dev")
    with pytest.raises(ValueError, match="profile"):
        CheckContext(profile="fast")


def test_search_shrinks_to_a_minimal_failing_case():
    # Fails once any entry reaches 3: the minimal case is a single row holding one 3.0.
    def probe(x):
        worst = float(np.abs(x).max())
        return Probe(ok=worst < 3.0, ratio=worst, allowed=3.0, message=f"max {worst}")

    out = search(layer_inputs(2, bound=8.0), probe, profile="dev", max_examples=100,
                 describe=lambda x: {"x": x})
    assert out.failure is not None and not out.failure.ok
    x = np.asarray(out.failure.example["x"])
    assert x.shape == (1, 2) and sorted(np.abs(x).ravel().tolist()) == [0.0, 3.0]
    assert out.raised is None and out.examples >= 1


def test_search_reports_what_the_layer_raised_with_its_case():
    def probe(x):
        if np.abs(x).max() >= 1.0:
            raise ZeroDivisionError("boom")
        return Probe(ok=True, ratio=0.0, allowed=30.0)

    out = search(layer_inputs(2), probe, profile="dev", max_examples=50,
                 describe=lambda x: {"x": x}, snippet=lambda x: "adapter.forward(x)")
    assert out.raised == "ZeroDivisionError: boom"
    assert np.abs(np.asarray(out.failure.example["x"])).max() == 1.0
    assert out.failure.repro == "adapter.forward(x)"


def test_the_ci_profile_search_is_deterministic():
    def probe(x):
        return Probe(ok=True, ratio=float(np.abs(x).sum()), allowed=1e9)

    a = search(layer_inputs(3), probe, profile="ci", max_examples=15)
    b = search(layer_inputs(3), probe, profile="ci", max_examples=15)
    assert a.worst.ratio == b.worst.ratio and a.examples == b.examples == 15


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_input_strategies_are_exact_in_the_dtype_and_inside_the_domain(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    domain = data.draw(st.sampled_from([None, (0.0, 1.0), (-1.0, 1.0), (0.0, math.inf)]))
    x = data.draw(layer_inputs(3, dtype=dtype, domain=domain))
    e = data.draw(edge_inputs(3, dtype=dtype, domain=domain))
    shape = data.draw(batch_shapes())
    assert 1 <= len(shape) <= 3 and all(1 <= s <= 4 for s in shape)
    for a in (x, e):
        assert a.ndim == 2 and a.shape[1] == 3
        assert np.array_equal(a.astype(dtype).astype(np.float64), a)
        if domain is not None:
            assert np.all(a > domain[0]) and np.all(a < domain[1])
    if domain is None:
        nonzero = np.abs(x[x != 0])
        assert np.all((nonzero >= 2.0**-8) & (nonzero <= 8.0))
        assert np.abs(e).max() <= 1e4


def test_edges_draws_points_next_to_the_ends_of_a_bounded_domain():
    from invlin.validate.adapters import GenericAdapter

    seen: list[np.ndarray] = []

    class Logit(torch.nn.Module):
        """y = log(x/(1 − x)) on (0, 1), with a stable log|det| = −log x − log1p(−x)."""

        def forward(self, x):
            seen.append(x.detach().double().numpy().copy())
            return torch.log(x) - torch.log1p(-x), (-torch.log(x) - torch.log1p(-x)).sum(-1)

        def inverse(self, y):
            return torch.sigmoid(y), (torch.nn.functional.logsigmoid(y)
                                      + torch.nn.functional.logsigmoid(-y)).sum(-1)

    class UnitInterval(GenericAdapter):
        def domain(self):
            return (0.0, 1.0)

    report = validate(lambda features: UnitInterval(Logit(), features), checks=["edges"],
                      dtypes=("float64",), **RUN)
    assert [r.status for r in report.results] == ["pass"]
    xs = np.concatenate([a.ravel() for a in seen])
    assert xs.min() > 0 and xs.max() < 1
    assert xs.min() < 1e-12 and 1 - xs.max() < 1e-12  # the ends, to within a few ulps
