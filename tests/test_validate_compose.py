"""Composition, save/load and torch.compile checks (issue 19, parts 3-5): each broken twin of
``validate_broken`` fails its check alone and its correct twin passes; invlin's and zuko's
layers pass; ``compile`` runs only when named, from the API and from the CLI."""

from __future__ import annotations

import json
import pickle
import textwrap

import pytest
import torch
from torch.distributions import ExpTransform
from validate_broken import (
    compile_follows_weight,
    compile_frozen_weight,
    correct_linear,
    detaching_cache_transform,
    elementwise_scale_transform,
    event_dim_kept_transform,
    held_inverse_transform,
    pickle_drops_buffer,
    pickle_keeps_buffer,
    scale_transform,
    single_sample_logdet,
    unexpanded_logdet_transform,
    weak_inverse_transform,
)

from invlin.cli import main
from invlin.nn import P4InvLinear
from invlin.validate.checks import CHECKS, KNOWN, OPT_IN
from invlin.validate.checks.persistence import TORCH_INV_PICKLE
from invlin.validate.runner import validate

RUN = {"features": 3, "profile": "dev", "max_examples": 10, "dtypes": ("float64",)}

#: (check, broken layer, its correct twin, words the failure message must contain)
PAIRS = [
    ("composition", single_sample_logdet, correct_linear, "shape (1,), expected ()"),
    ("composition", event_dim_kept_transform, scale_transform, "has shape (3,), expected ()"),
    (
        "composition",
        unexpanded_logdet_transform,
        elementwise_scale_transform,
        "IndependentTransform(t, 1)",
    ),
    ("persistence", pickle_drops_buffer, pickle_keeps_buffer, "after torch.save/torch.load"),
    (
        "persistence",
        weak_inverse_transform,
        held_inverse_transform,
        "pickle of t.inv raised TypeError",
    ),
    ("persistence", detaching_cache_transform, scale_transform, "cache_size 1 vs 0"),
    ("compile", compile_frozen_weight, compile_follows_weight, "after a parameter update"),
]


def _alone(factory, check: str, **kw):
    report = validate(factory, checks=[check], **{**RUN, **kw})
    assert report.error is None, report.error
    return report.results


@pytest.mark.parametrize(
    ("check", "broken", "twin", "words"), PAIRS, ids=[f"{p[0]}-{p[1].__name__}" for p in PAIRS]
)
def test_broken_twin_fails_and_correct_twin_passes(check, broken, twin, words):
    (bad,) = _alone(broken, check)
    assert bad.check == check and bad.status == "fail", (bad.status, bad.message)
    assert words in bad.message, bad.message
    assert bad.example and bad.repro and broken.__name__ in bad.repro
    (good,) = _alone(twin, check)
    assert good.status == "pass", (good.status, good.message)
    assert good.cases and good.cases > 0


def test_pickled_torch_inverse_is_noted_where_torch_loses_it():
    """torch's own inverse class drops its transform when pickled (torch PR 191370): on such a
    torch the check says so and does not fail the layer; elsewhere it judges the copy."""
    lost = pickle.loads(pickle.dumps(ExpTransform().inv))._inv is None
    (r,) = _alone(scale_transform, "persistence")
    assert r.status == "pass", r.message
    assert (TORCH_INV_PICKLE in r.message) == lost


def _p4(features: int) -> P4InvLinear:
    layer = P4InvLinear(features, init="orthogonal")
    with torch.no_grad():
        layer.u.normal_(0.0, 0.3)
    return layer


def _zuko_maf(features: int):
    """One zuko masked autoregressive transform (a lazy layer, not a whole flow)."""
    zuko = pytest.importorskip("zuko")
    return zuko.flows.MaskedAutoregressiveTransform(features, hidden_features=(16,))


@pytest.mark.parametrize("factory", [_p4, _zuko_maf], ids=["invlin-P4InvLinear", "zuko-MAF"])
def test_real_layers_pass_composition_persistence_and_compile(factory):
    factory(3)  # skips here, not inside the validator, when the library is not installed
    report = validate(
        factory,
        checks=[*OPT_IN, "composition", "persistence"],
        **{**RUN, "dtypes": ("float64", "float32")},
    )
    assert report.error is None
    assert {(r.check, r.dtype) for r in report.results} >= {
        (c, d) for c in ("composition", "persistence", "compile") for d in ("float64", "float32")
    }
    bad = [(r.check, r.dtype, r.status, r.message) for r in report.results if r.status != "pass"]
    assert not bad


def test_compile_is_opt_in():
    assert "compile" in KNOWN and "compile" not in CHECKS
    report = validate(correct_linear, **{**RUN, "max_examples": 2})
    assert {r.check for r in report.results} == set(CHECKS)
    with pytest.raises(ValueError, match="compile"):
        validate(correct_linear, checks=["no_such_check"], **RUN)


GOOD = """
from invlin.nn import P4InvLinear


def make(features):
    return P4InvLinear(features, init="orthogonal")
"""


def test_cli_runs_compile_only_when_named(tmp_path, capsys):
    path = tmp_path / "good.py"
    path.write_text(textwrap.dedent(GOOD))
    base = ["validate", f"{path}:make", "--profile", "dev", "--dtype", "float64"]
    status = main([*base, "--check", "compile", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    (layer,) = data["layers"]
    assert [(r["check"], r["status"]) for r in layer["results"]] == [("compile", "pass")]
    status = main([*base, "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    checks = {r["check"] for r in data["layers"][0]["results"]}
    assert "compile" not in checks and {"composition", "persistence"} <= checks
