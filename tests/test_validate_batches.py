"""The batch-shape check on batches as users run them: sizes 1, not a power of two and above
100, every row recomputed in another composition of the batch (issue 18, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from validate_broken import (
    BROKEN,
    blocked_coupling,
    large_batch_centering,
    never_centering,
    wrong_rows_blocked_logdet,
)

from invlin.testing import THRESHOLD
from invlin.validate.adapters import GenericAdapter, adapt
from invlin.validate.checks import CHECKS, shapes
from invlin.validate.checks.shapes import CHUNKS, ROWS, centre, recomposition
from invlin.validate.checks.truth import worst_logdet, worst_rows
from invlin.validate.perturbation import standard_inputs
from invlin.validate.runner import validate

FEATURES = 3
RUN = {"features": FEATURES, "profile": "dev", "max_examples": 10}
DTYPES = ("float64", "float32")
TWINS = {wrong_rows_blocked_logdet: blocked_coupling, large_batch_centering: never_centering}


def test_the_recomposition_covers_sizes_one_odd_and_above_one_hundred():
    assert ROWS == sum(CHUNKS) >= 100 and ROWS > 128  # every block of 16 … 128 ends inside
    assert 1 in CHUNKS and max(CHUNKS) > 64
    assert any(c & (c - 1) for c in CHUNKS)  # sizes that are not powers of two
    order = recomposition(5)
    assert sorted(order.tolist()) == list(range(ROWS)) and order[0] == 0
    assert np.array_equal(order, recomposition(5)) and not np.array_equal(order, recomposition(6))
    assert (order != np.arange(ROWS)).mean() > 0.9  # almost every row moves
    assert centre(None) == 0.0 and centre((0.0, 1.0)) == 0.5 and centre((0.0, np.inf)) == 1.0


@pytest.mark.parametrize("broken", list(TWINS), ids=lambda f: f.__name__)
def test_the_defects_are_invisible_in_small_batches(broken):
    """Both bugs need more than 16 / 64 rows: the checks' earlier batches (≤ 8 rows, the
    first three rows alone) passed them."""
    twin = TWINS[broken]
    x = torch.as_tensor(standard_inputs(FEATURES, ROWS, seed=1), dtype=torch.float64)
    bad, good = broken(FEATURES).double(), twin(FEATURES).double()
    for rows in (1, 8, 16):
        for a, b in zip(bad(x[:rows]), good(x[:rows]), strict=True):
            assert torch.equal(a, b)
    yb, lb = bad(x)
    yg, lg = good(x)
    assert not (torch.equal(yb, yg) and torch.equal(lb, lg))


@pytest.fixture(scope="module")
def reports() -> dict:
    return {f: validate(f, **RUN) for f in [*TWINS, *TWINS.values()]}


@pytest.mark.parametrize("broken", list(TWINS), ids=lambda f: f.__name__)
def test_each_batch_defect_fails_batch_shape_and_its_twin_passes_everything(reports, broken):
    """The broken layer fails exactly its BROKEN checks, batch_shape among them (logdet_autograd
    too: its wide batches reach 128 rows); the twin, differing only in the defect, passes."""
    for dtype in DTYPES:
        status, expected = BROKEN[broken][dtype]
        assert status == "fail" and "batch_shape" in expected
    for factory, expected in ((broken, set(BROKEN[broken]["float64"][1])), (TWINS[broken], set())):
        report = reports[factory]
        assert report.error is None
        assert len(report.results) == len(CHECKS) * len(DTYPES)
        flagged = {(r.dtype, r.check) for r in report.results if r.status in ("fail", "error")}
        assert flagged == {(d, c) for d in DTYPES for c in expected}, [
            (r.dtype, r.check, r.message) for r in report.results if r.status != "pass"
        ]


def _position(seed: int, row: int) -> tuple[int, int]:
    """(size of the chunk, index in it) of ``row`` of the whole batch once recomposed."""
    pos = int(np.argsort(recomposition(seed))[row])
    ends = np.cumsum(CHUNKS)
    k = int(np.searchsorted(ends, pos, side="right"))
    return CHUNKS[k], pos - (int(ends[k - 1]) if k else 0)


def test_the_failures_name_the_row_and_the_composition(reports):
    for dtype in DTYPES:
        r = next(
            r
            for r in reports[wrong_rows_blocked_logdet].results
            if r.check == "batch_shape" and r.dtype == dtype
        )
        assert "values depend on the batch layout" in r.message
        assert "forward log|det|" in r.message and f"one batch of {ROWS}" in r.message
        assert r.ratio > r.allowed == THRESHOLD
        ex = r.example
        assert ex["compared"] == "forward log|det|" and ex["rows"] == ROWS
        assert ex["chunks"] == list(CHUNKS)
        # the row sits at position ≥ 16 in the whole batch or in its chunk
        assert ex["row"] >= 16 or _position(ex["seed"], ex["row"])[1] >= 16
        assert ex["whole"] != ex["recomposed"]
    r = next(r for r in reports[large_batch_centering].results if r.check == "batch_shape")
    assert "values depend on the batch layout" in r.message and r.example["rows"] == ROWS


def test_every_row_is_judged_and_counted(reports):
    for factory in TWINS.values():
        for r in reports[factory].results:
            if r.check == "batch_shape":
                assert r.status == "pass" and r.cases >= ROWS, (r.cases, r.message)
                assert f"every row of a batch of {ROWS}" in r.message


class _Spy(torch.nn.Module):
    """y = 2x + 1 recording the input of every call, per direction."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.calls: dict[str, list[np.ndarray]] = {"forward": [], "inverse": []}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls["forward"].append(x.detach().double().numpy().reshape(-1, x.shape[-1]))
        return self.scale * x + 1, self.scale.log().expand(x.shape[:-1]) * x.shape[-1]

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls["inverse"].append(y.detach().double().numpy().reshape(-1, y.shape[-1]))
        return (y - 1) / self.scale, -self.scale.log().expand(y.shape[:-1]) * y.shape[-1]


def test_every_row_is_computed_in_two_compositions_in_both_directions():
    spies: list[_Spy] = []

    def factory(features: int) -> GenericAdapter:
        spy = _Spy()
        spies.append(spy)
        return GenericAdapter(spy, features)

    report = validate(
        factory, checks=["batch_shape"], dtypes=("float64",), **{**RUN, "max_examples": 3}
    )
    assert [r.status for r in report.results] == ["pass"], report.results[0].message
    tested = max(spies, key=lambda s: len(s.calls["forward"]))  # the copies are deep copies
    for direction in ("forward", "inverse"):
        calls = tested.calls[direction]
        sizes = [c.shape[0] for c in calls]
        assert 1 in sizes and ROWS in sizes and any(s & (s - 1) for s in sizes)
        whole = next(c for c in calls if c.shape[0] == ROWS)
        recomposed = [c for c in calls if c.shape[0] in CHUNKS][-len(CHUNKS) :]
        assert [c.shape[0] for c in recomposed] == list(CHUNKS)
        rows = np.concatenate(recomposed)
        assert sorted(map(tuple, rows)) == sorted(map(tuple, whole))  # every row, elsewhere
        assert not np.array_equal(rows, whole)
        if direction == "forward":
            assert np.all(whole[0] == 0.0) and np.all(recomposed[0] == 0.0)  # centre, alone


def test_flattening_adapters_hand_two_dimensional_batches_to_the_layer_unchanged():
    """nflows, normflows and FrEIA read every axis after the first as an *event* axis (image
    channels and pixels): given (2, 3, n) their layers return one log|det| per leading index,
    or raise. So their adapters must flatten a multi-axis batch to (B, n); the (B, n) batches
    of the recomposition reach the layer as they are, so its own batch handling is checked."""
    nt = pytest.importorskip("nflows.transforms")
    ActNorm = pytest.importorskip("FrEIA.modules").ActNorm

    x = torch.randn(2, 3, 4)
    _, ld = nt.LULinear(4)(x)
    assert tuple(ld.shape) == (2,)  # (3, 4) taken as one event
    freia = ActNorm([(4,)])
    freia.init_on_next_batch = False  # its data-dependent initialisation insists on (B, n)
    _, jac = freia([x], rev=False, jac=True)
    assert tuple(jac.shape) == (2,)

    seen: list[torch.Tensor] = []

    class Recording(nt.LULinear):
        def forward(self, inputs, context=None):
            seen.append(inputs)
            return super().forward(inputs, context)

    adapter = adapt(Recording(4), 4)
    flat = torch.randn(37, 4)
    adapter.forward(flat)
    assert seen[-1] is flat
    _, ld = adapter.forward(x)
    assert tuple(seen[-1].shape) == (6, 4) and tuple(ld.shape) == (2, 3)


def test_vectorised_worst_rows_agree_with_the_per_row_engine():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 4))
    b = a + 1e-15 * rng.standard_normal((50, 4))
    a[3] = 0.0
    b[3] = 0.0
    b[7, 1] = 0.0
    a[9, 2] = b[9, 2] = np.inf  # the same infinity in both: no layout difference
    scales = np.abs(rng.standard_normal(50)) * 10
    scales[11] = np.inf  # not judged
    w = shapes._worst_rows(a, b, scales, "float64")
    keep = np.isfinite(scales)
    ref = worst_rows(
        np.where(np.isinf(a), 0, a)[keep],
        np.where(np.isinf(b), 0, b)[keep],
        scales[keep],
        "float64",
    )
    assert w.value == ref.value and w.skipped == 1 and w.row == 7
    la, lb = rng.standard_normal(50), rng.standard_normal(50)
    kap = np.abs(rng.standard_normal(50)) + 1
    wl = shapes._worst_logdet(la, lb, kap, 4, "float32")
    assert wl.value == worst_logdet(la, lb, kap, 4, "float32").value
    lb[5] = np.nan
    assert shapes._worst_logdet(la, lb, kap, 4, "float32").value == np.inf


def test_the_recomposition_repro_shows_the_difference_in_a_fresh_interpreter(reports):
    r = next(
        r
        for r in reports[wrong_rows_blocked_logdet].results
        if r.check == "batch_shape" and r.dtype == "float64"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    done = subprocess.run(
        [sys.executable, "-c", r.repro],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = dict(line.split(" largest difference ") for line in done.stdout.splitlines())
    assert float(lines["log|det|"].split()[0]) > 1e-3  # the wrong rows, reproduced
    assert float(lines["y"].split()[0]) < 1e-12  # y itself is right


class _OneLogdet(torch.nn.Module):
    """y = 2x + 1 with one log|det| for the whole batch, shape (1,) (FrEIA's
    LearnedElementwiseScaling returns such a value): right only for a batch of one."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2 * x + 1, torch.full((1,), x.shape[-1] * np.log(2.0), dtype=x.dtype)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - 1) / 2, torch.full((1,), -y.shape[-1] * np.log(2.0), dtype=y.dtype)


def test_a_log_det_of_one_element_for_a_whole_batch_is_a_wrong_shape():
    """Even when the short search draws only batches of one (a dev profile with 1 example):
    the explicit shapes and the recomposition's chunks are wider."""
    report = validate(
        lambda features: _OneLogdet(), checks=["batch_shape"], **{**RUN, "max_examples": 1}
    )
    assert [r.status for r in report.results] == ["fail", "fail"]
    assert all("has shape (1,), expected the batch shape" in r.message for r in report.results)
    good = validate(lambda features: _Spy(), checks=["batch_shape"], **{**RUN, "max_examples": 1})
    assert [r.status for r in good.results] == ["pass", "pass"]
