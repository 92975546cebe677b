"""The benchmark suite's machinery: paired ratios, goals, rendering, and a tiny end-to-end run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.goals import judge
from benchmarks.render import render
from benchmarks.run import main
from benchmarks.timing import Timing, compare, ratio


def test_ratio_is_the_median_of_paired_samples():
    # A load spike in round 2 slows both candidates: paired ratios stay 2, medians would not.
    num = Timing(0.0, (2.0, 20.0, 2.0, 2.0, 2.0))
    den = Timing(0.0, (1.0, 10.0, 1.0, 1.0, 1.0))
    assert ratio(num, den)["ratio"] == 2.0
    assert ratio(Timing(0.0, (3.0, 1.0, 2.0)), Timing(0.0, (1.0, 1.0, 1.0)))["ratio"] == 2.0


def test_compare_orders_work_by_cost():
    t = compare(
        {"one": lambda: sum(range(1000)), "ten": lambda: sum(range(10000))}, repeats=5, target=0.002
    )
    assert ratio(t["ten"], t["one"])["ratio"] > 2  # ~10 on any machine
    with pytest.raises(ValueError, match="repeats"):
        compare({"x": lambda: None}, repeats=0)


def test_goals_apply_only_where_the_issue_states_them():
    rows = judge(
        [
            {"case": "p4_forward", "n": 64, "mode": "grad", "ratio": 3.0},
            {"case": "p4_forward", "n": 256, "mode": "grad", "ratio": 1.1},
            {"case": "p4_forward", "n": 256, "mode": "no_grad", "ratio": 2.0},
            {"case": "lu_inverse", "n": 1024, "ratio": 2.5},
            {"case": "report_wall_time", "seconds": 30.0},
            {"case": "lu_forward", "n": 1024, "ratio": 9.0},
        ]
    )
    assert [(r["goal"], r["met"]) for r in rows] == [
        (None, None),
        (1.15, True),
        (None, None),
        (2.0, False),
        (60.0, True),
        (None, None),
    ]


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_json_and_markdown(tmp_path):
    assert (
        main(
            [
                "--sizes",
                "8",
                "--merge-sizes",
                "8",
                "16",
                "--batch",
                "16",
                "--repeats",
                "2",
                "--cases",
                "p4",
                "merge",
                "lu",
                "leaky",
                "accuracy",
                "training",
                "ops",
                "compiled",
                "--compile-backend",
                "aot_eager",  # no C++ compiler needed
                "--ulp-points",
                "500",
                "--machine",
                "tiny",
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "tiny.json").read_text())
    cases = {r["case"] for r in result["rows"]}
    assert {
        "p4_forward",
        "p4_inverse",
        "p4_forward_fresh",
        "p4_inverse_fresh",
        "p4_inverse_vs_solve",
        "merge_vs_inv",
        "lu_forward",
        "lu_inverse",
        "leaky_softplus_inverse",
        "training_step",
        "training_step_compiled",
        "training_step_compiled_vs_eager",
    } <= cases
    timed = [r for r in result["rows"] if r["case"] != "ops_per_call"]
    assert all(r["ratio"] > 0 and r["num_ms"] > 0 for r in timed)
    assert result["accuracy"][0]["max_ulp"] < 6
    text = (tmp_path / "tiny.md").read_text()
    assert "P4InvLinear forward ÷ nn.Linear forward" in text and "## Goals" in text
    assert "## Tensor operations per call" in text
    assert "backend='aot_eager'" in text
    assert "| P4InvLinear forward | 2 + 2 reads |" in text  # host form: W reused
    assert render(result, baseline=result).count("| before |") >= 1


def test_a_failed_compilation_is_reported_as_skipped():
    import torch

    from benchmarks.training import compiled_training_rows

    def broken(gm, inputs):
        raise RuntimeError("no compiler here")

    rows = compiled_training_rows(
        [4], device="cpu", dtype=torch.float32, batch=8, repeats=1, compile={"backend": broken}
    )
    assert [r["case"] for r in rows] == [
        "training_step_compiled",
        "training_step_compiled_vs_eager",
    ]
    assert all("no compiler here" in r["skipped"] for r in rows)
    text = render(
        {
            "machine": "m",
            "date": "d",
            "label": "",
            "rows": rows,
            "accuracy": [],
            "environment": {"device_name": "cpu", "torch": "t", "python": "p", "threads": 1},
            "settings": {"repeats": 1, "batch": 8},
        }
    )
    assert "Skipped: torch.compile failed" in text


def test_an_unknown_compile_backend_is_refused_before_running(tmp_path):
    with pytest.raises(SystemExit, match="--compile-backend: unknown"):
        main(["--cases", "compiled", "--compile-backend", "nope", "--out-dir", str(tmp_path)])


def test_operation_counts_separate_kernels_views_and_reads():
    import torch

    from benchmarks.ops import count_ops

    x = torch.ones(4, 3)
    counts = count_ops(lambda: (x.t().contiguous() + 1).sum().item())
    # t: a view; contiguous: a copy kernel; + 1 and sum: kernels; item: a host read
    assert counts == {"kernels": 3, "free": 1, "reads": 1}
    # tolist and numpy copy to the host without dispatching an operation: reads all the same
    # (numpy dispatches an alias, counted as free)
    assert count_ops(lambda: (x.tolist(), x.numpy())) == {"kernels": 0, "free": 1, "reads": 2}


def test_operation_counts_show_the_cache_and_the_device_form():
    import torch

    from benchmarks.ops import device_form, ops_rows
    from invlin.nn import p4_ops

    rows = {
        (r["item"], r["form"]): r
        for r in ops_rows([8], device="cpu", dtype=torch.float32, batch=16)
    }
    assert rows[("nn.Linear forward", "host")]["kernels"] == 1
    # A repeated call reuses W: its one matrix product plus the log|det| fill, and the two
    # value checks of u and v; nothing is formed again.
    assert rows[("P4InvLinear forward", "host")]["kernels"] == 2
    assert rows[("P4InvLinear forward", "host")]["reads"] == 2
    # Off the CPU nothing is cached and the scalars are tensors: more kernels, no reads.
    dev = rows[("P4InvLinear forward", "device")]
    assert dev["kernels"] > rows[("P4InvLinear forward, u changed", "host")]["kernels"] > 2
    assert dev["reads"] == 0
    # With u changed the inverse checks c ≠ 0 once: one read (the merged check)
    assert rows[("P4InvLinear inverse, u changed", "device")]["reads"] == 1
    # Inside cached_products() both forms keep the products: a repeated forward is its one
    # matrix product plus the log|det| copy, an inverse also y − b, and nothing is read.
    for form in ("host", "device"):
        fwd = rows[("P4InvLinear forward, cached_products()", form)]
        inv = rows[("P4InvLinear inverse, cached_products()", form)]
        assert (fwd["kernels"], fwd["reads"], inv["kernels"], inv["reads"]) == (2, 0, 3, 0)
    step = "training step, 4-layer P4Inv flow"
    assert (
        rows[(step + ", cached_products()", "device")]["kernels"]
        < rows[(step, "device")]["kernels"]
    )  # the penalty reuses the forward's c
    assert p4_ops.on_host(torch.empty(0))  # the forced form is undone afterwards
    with device_form():
        assert not p4_ops.on_host(torch.empty(0))


def test_the_operations_table_merges_sizes_with_equal_counts():
    from benchmarks.render import _ops_table

    def r(item, form, n, k):
        return {"item": item, "form": form, "n": n, "kernels": k, "reads": 0}

    rows = [
        r("a", "host", 8, 2),
        r("a", "host", 16, 2),
        r("a", "device", 8, 5),
        r("a", "device", 16, 6),
    ]
    header = _ops_table(rows)[5]
    assert header == "| call | host, n = 8, 16 | device, n = 8 | device, n = 16 |"
    assert _ops_table(rows)[7] == "| a | 2 | 5 | 6 |"


def test_reports_name_the_invlin_they_measured(tmp_path):
    import invlin
    from benchmarks.run import code_version

    code = code_version()
    assert code["path"] == str(Path(invlin.__file__).resolve().parent.parent)
    head = subprocess.run(
        ["git", "-C", code["path"], "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0:  # a checkout: the short commit is a prefix of HEAD's full hash
        assert code["commit"] and head.stdout.strip().startswith(code["commit"])
        assert isinstance(code["dirty"], bool)
    else:  # an installed copy: nothing invented
        assert code["commit"] is None and code["dirty"] is None
    result = {
        "machine": "m",
        "label": "",
        "date": "d",
        "rows": [],
        "accuracy": [],
        "environment": {
            "device_name": "CPU: x",
            "torch": "t",
            "python": "p",
            "threads": 1,
            "invlin": {"commit": "abc1234", "dirty": True},
        },
        "settings": {"repeats": 1, "batch": 1, "note": ""},
    }
    before = {
        **result,
        "environment": {**result["environment"], "invlin": {"commit": "def5678", "dirty": False}},
    }
    text = render(result, baseline=before)
    assert "· invlin abc1234 + uncommitted changes" in text.splitlines()[2]
    assert "(m, d, invlin def5678)." in text
    del result["environment"]["invlin"]  # reports written before this field still render
    assert "invlin" not in render(result).splitlines()[2]


def test_validation_row_is_the_ratio_of_medians_and_is_judged(monkeypatch):
    import benchmarks.validation as bv
    from benchmarks.goals import judge

    times = iter([1.0, 5.0, 2.0, 9.0, 1.5, 6.0])  # torch, validate, torch, validate, ...
    calls = []

    def fake(argv):
        calls.append(argv)
        return next(times), 0

    monkeypatch.setattr(bv, "_seconds", fake)
    (row,) = judge(bv.validation_rows(repeats=3))
    assert row["ratio"] == pytest.approx(6.0 / 1.5) and row["goal"] == 4.0 and row["met"]
    assert calls[0][-1] == "import torch" and "validate" in calls[1]
    assert "benchmarks.validation:lulinear" in calls[1] and "--profile" in calls[1]
    assert bv.lulinear(6) is not None
