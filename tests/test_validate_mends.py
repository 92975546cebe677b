"""Validator mends: a run with a whole flow records every check it ran and counts the flow's
inner transforms in its progress; shared argument checks name their argument; the seeded
search helper; the zuko adapter's library name."""

from __future__ import annotations

import importlib.util
import io
import itertools
import re

import pytest
from validate_broken import affine_flow, correct_linear

from invlin.validate.catalog import seeded
from invlin.validate.checks.base import CheckContext
from invlin.validate.command import run_validation
from invlin.validate.distribution import DIST_CHECKS
from invlin.validate.meta import checks_run
from invlin.validate.progress import ProgressLine
from invlin.validate.render import render
from invlin.validate.results import CheckEvent, CheckResult, LayerReport
from invlin.validate.runner import validate, validate_all
from invlin.validate.search import Probe
from invlin.validate.target import UsageError

FLOW = "tests/validate_broken.py:affine_flow"
ONE = {"dtypes": ("float64",), "devices": ("cpu",), "profile": "dev"}


def _event(layer: str, check: str = "round_trip", phase: str = "start") -> CheckEvent:
    return CheckEvent(
        layer=layer, check=check, dtype="float64", device="cpu", phase=phase, index=0, total=1
    )


class _Recorder(ProgressLine):
    """A progress line on a string buffer, enabled, that keeps every line it drew."""

    def __init__(self) -> None:
        ticks = itertools.count()
        super().__init__(io.StringIO(), enabled=True, clock=lambda: float(next(ticks)))

    def _width(self) -> int:
        return 500

    def lines(self) -> list[str]:
        return [t.strip() for t in self.stream.getvalue().split("\r") if t.strip()]


# -- item 7: a whole flow's checks in the metadata, its inner transforms in the progress ------
def test_checks_run_lists_the_selection_then_every_other_check_with_a_result() -> None:
    flow = LayerReport(name="f", library="torch", target="")
    flow.results = [
        CheckResult(check=c, dtype="float64", device="cpu", status="pass") for c in DIST_CHECKS
    ]
    part = LayerReport(name="f.transforms[0]", library="torch", target="")
    part.results = [CheckResult(check="round_trip", dtype="float64", device="cpu", status="pass")]
    assert checks_run(["round_trip"], [flow, part]) == ["round_trip", *DIST_CHECKS]
    assert checks_run(["round_trip", "cache"], [part]) == ["round_trip", "cache"]


def test_validate_all_metadata_lists_the_distribution_checks_of_a_flow() -> None:
    conf = validate_all([("flow", affine_flow)], features=2, checks=["round_trip"], **ONE)
    assert [layer.name for layer in conf.layers] == ["flow", "flow.transforms[0]: AffineTransform"]
    assert conf.meta["checks"] == ["round_trip", *DIST_CHECKS]
    line = next(t for t in render(conf, "markdown").splitlines() if t.startswith("- checks:"))
    assert line.split()[2:] == ["round_trip", *DIST_CHECKS], line


def test_validate_all_metadata_of_layers_alone_is_the_selection() -> None:
    conf = validate_all([("control", correct_linear)], features=2, checks=["batch_shape"], **ONE)
    assert conf.meta["checks"] == ["batch_shape"]


def test_progress_counts_inner_transforms_announced_later() -> None:
    line = _Recorder()
    line.begin(2)
    line.event(0, "flow", _event("flow", "dist_samples"))
    line.finished(0)
    line.more(2)  # the flow's two inner transforms join the run
    line.event(1, "other", _event("other"))
    line.event((0, 0), "flow.t0", _event("flow.t0"))
    line.finished(1)
    line.event((0, 1), "flow.t1", _event("flow.t1"))
    shown = [re.search(r"\(layer (\d+)/(\d+)", t) for t in line.lines()]
    got = [(m.group(1), m.group(2)) for m in shown if m]
    # the flow's first line was drawn before the others were known; then 4 layers in all
    assert got[0] == ("1", "2") and got[-2:] == [("3", "4"), ("4", "4")], got


def test_progress_numbers_an_inner_transform_by_when_it_starts() -> None:
    line = _Recorder()
    line.begin(1)
    line.event(0, "flow", _event("flow", "dist_samples"))
    line.finished(0)
    line.more(1)
    line.event((0, 0), "flow.t0", _event("flow.t0"))
    assert line.lines()[-1].endswith("(layer 2/2)"), line.lines()


def test_cli_run_of_a_flow_counts_its_parts_and_records_every_check() -> None:
    line = _Recorder()
    conf = run_validation(
        target=FLOW,
        features=2,
        dtypes=("float64",),
        devices=("cpu",),
        checks=("round_trip",),
        profile="dev",
        progress=line,
    )
    assert len(conf.layers) == 2
    assert line.layers == len(conf.layers)
    assert any(t.endswith(f"(layer 2/{len(conf.layers)})") for t in line.lines()), line.lines()
    assert conf.meta["checks"] == ["round_trip", *DIST_CHECKS]


# -- item 6: shared argument checks name their argument ---------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "nightly"}, r"^profile must be one of dev, ci, thorough, got 'nightly'$"),
        ({"max_examples": 0}, r"^max_examples must be a positive integer, got 0$"),
        ({"features": True}, r"^features must be a positive integer, got True$"),
        ({"context_features": -1}, r"^context_features must be an integer >= 0, got -1$"),
    ],
)
def test_check_context_names_the_bad_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CheckContext(**kwargs)


def test_validate_and_catalog_name_the_bad_argument() -> None:
    with pytest.raises(ValueError, match=r"^features must be a positive integer, got 0$"):
        validate(correct_linear, features=0, **ONE)
    with pytest.raises(ValueError, match=r"^profile must be one of dev, ci, thorough, got 'x'$"):
        validate(correct_linear, features=2, **{**ONE, "profile": "x"})
    with pytest.raises(ValueError, match=r"^features must be a positive integer, got 2\.0$"):
        seeded(lambda n: n)(2.0)
    with pytest.raises(UsageError, match=r"^--profile must be one of dev, ci, thorough, got 'x'"):
        run_validation(target=FLOW, profile="x")


# -- item 3: the seeded search ----------------------------------------------------------------
def test_search_seeds_tries_seeds_a_stride_apart() -> None:
    ctx = CheckContext(profile="ci", max_examples=300, seed=5)
    seen: list[int] = []

    def probe(seed: int) -> Probe:
        seen.append(seed)
        return Probe(ok=True, ratio=1.0, allowed=30.0, message="ok")

    out = ctx.search_seeds(probe, stride=7, share=0.01)  # 3 seeds: 5, 12, 19
    assert seen and set(seen) <= {5, 12, 19}, seen
    assert out.failure is None and out.judged >= 1

    def failing(seed: int) -> Probe:
        return Probe(ok=False, ratio=99.0, allowed=30.0, message="bad", example={"seed": seed})

    bad = ctx.search_seeds(failing, stride=7, share=0.01)
    assert bad.failure is not None and bad.failure.example["seed"] in {5, 12, 19}


# -- item 4: the zuko adapter's library -------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("zuko") is None, reason="zuko not installed")
def test_a_user_subclass_of_a_zuko_lazy_transform_is_reported_as_zuko() -> None:
    import zuko

    from invlin.validate.adapters import adapt

    class Exp(zuko.lazy.LazyTransform):  # defined here, not in zuko's modules
        def forward(self, c=None):
            return zuko.transforms.ExpTransform()

    adapter = adapt(Exp(), 2)
    assert type(adapter).__name__ == "ZukoAdapter" and adapter.library == "zuko"
