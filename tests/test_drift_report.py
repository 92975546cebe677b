"""End-to-end tests of ``invlin report``: files, schema, verdicts, figures, atomic writes, replay.

This file is also the quick CI variant of the report (``nox -s report_ci``).
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from invlin.cli import main
from invlin.drift.results import SCHEMA_VERSION
from invlin.report import load_schema, validate, write_atomic

pytest.importorskip("matplotlib")
pytest.importorskip("jsonschema")

FILES = {
    "data.json",
    "report.md",
    "report.html",
    "checkpoints.csv",
    "summary.csv",
    "drift.png",
    "logdet.png",
    "policies.png",
    "crossing.png",
    "conditioning.png",
    "estimators.png",
}
SMALL = [
    "report",
    "--dims",
    "6",
    "--updates",
    "48",
    "--regimes",
    "walk",
    "crossing",
    "--dtypes",
    "float32",
    "--engines",
    "reference",
    "--policies",
    "plain",
    "guarded",
    "--no-progress",
]


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "small"
    assert main([*SMALL, "--output", str(out)]) == 0
    return out, json.loads((out / "data.json").read_text())


def _verdicts(data):
    return {
        (c["settings"]["regime"], t["engine"], t["policy"]): t["summary"]["passed"]
        for c in data["configurations"]
        for t in c["tracks"]
    }


def test_small_sweep_writes_every_file_and_matches_the_schema(small_report):
    out, data = small_report
    assert {p.name for p in out.iterdir()} == FILES | {".invlin-output"}  # invlin's marker
    validate(data)
    assert (
        data["schema_version"]
        == SCHEMA_VERSION
        == load_schema()["properties"]["schema_version"]["const"]
    )
    assert data["environment"]["oracle"]["max_bits"] >= 64
    for name in FILES - {"data.json"}:
        assert (out / name).stat().st_size > 0


def test_summary_flags_the_drifting_policy(small_report, capsys):
    """float32 plain Sherman–Morrison through a near-singular crossing must FAIL, while the same
    updates under the P4 guard and the benign walk pass."""
    out, data = small_report
    v = _verdicts(data)
    assert v[("crossing", "reference", "plain")] is False
    assert v[("crossing", "reference", "guarded")] is True
    assert v[("walk", "reference", "plain")] is True
    assert data["summary"] == {
        "configurations": 2,
        "tracks": 4,
        "passed": 3,
        "failed": 1,
        "expected": 1,
        "unexpected": 0,
    }
    md = (out / "report.md").read_text()
    assert re.search(r"\| crossing \| 6 \| float32 \| reference \| plain \|.*\| FAIL", md)
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 5 and sum("FAIL" in line for line in summary) == 1


def test_html_is_self_contained_and_md_links_the_pngs(small_report):
    out, _ = small_report
    html = (out / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html
    md = (out / "report.md").read_text()
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / png).is_file()


def test_checkpoint_csv_has_one_row_per_checkpoint(small_report):
    out, data = small_report
    rows = (out / "checkpoints.csv").read_text().splitlines()
    count = sum(len(t["checkpoints"]) for c in data["configurations"] for t in c["tracks"])
    assert len(rows) == count + 1 and rows[0].startswith("label,regime,n,")


def test_headline_figure_plots_the_data(small_report, monkeypatch):
    """The drift figure's lines are exactly the inverse ratios stored in data.json."""
    from invlin.report import figures

    _, data = small_report
    captured = []
    monkeypatch.setattr(figures, "_png", lambda fig: captured.append(fig) or b"")
    figures.drift_figure(data)
    lines = {ln.get_label(): ln for ax in captured[0].axes for ln in ax.get_lines()}
    crossing = next(c for c in data["configurations"] if c["settings"]["regime"] == "crossing")
    plain = next(t for t in crossing["tracks"] if t["policy"] == "plain")
    want = [float(cp["inverse_ratio_exact"]) for cp in plain["checkpoints"]]
    got = [ln for ln in captured[0].axes[1].get_lines() if ln.get_label().startswith("plain")]
    assert lines and got and np.array_equal(got[0].get_ydata(), want)


def _drawn(monkeypatch, make, data):
    """The matplotlib figure that ``make(data)`` draws, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from invlin.report import figures

    captured = []
    monkeypatch.setattr(figures, "_png", lambda fig: captured.append(fig) or b"")
    make(data)
    (fig,) = captured
    FigureCanvasAgg(fig).draw()
    return fig


def test_figure_tick_labels_do_not_overlap(small_report, monkeypatch):
    from invlin.report import figures

    _, data = small_report
    for make in (figures.drift_figure, figures.estimators_figure, figures.crossing_figure):
        fig = _drawn(monkeypatch, make, data)
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            for axis, lo, hi in ((ax.xaxis, "x0", "x1"), (ax.yaxis, "y0", "y1")):
                boxes = sorted(
                    (t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_text()),
                    key=lambda b: getattr(b, lo),
                )
                for a, b in itertools.pairwise(boxes):
                    assert getattr(a, hi) <= getattr(b, lo), (make.__name__, ax.get_title())


def test_drift_figure_shares_one_x_scale_and_names_coinciding_policies(small_report, monkeypatch):
    """Every panel has the same x scale; where two policies draw the same curve (plain and
    guarded on the benign walk), the panel says so instead of hiding one."""
    _, data = small_report
    from invlin.report import figures

    fig = _drawn(monkeypatch, figures.drift_figure, data)
    assert len(fig.axes) == 2 and len({ax.get_xscale() for ax in fig.axes}) == 1
    titles = {ax.get_title().split(",")[0]: ax.get_title() for ax in fig.axes}
    assert "same curve: plain = guarded" in titles["walk"]
    assert "same curve" not in titles["crossing"]  # plain drifts away from guarded there


@pytest.mark.slow
def test_sweep_is_deterministic(tmp_path, small_report):
    _, first = small_report
    out = tmp_path / "again"
    assert main([*SMALL, "--output", str(out)]) == 0
    again = json.loads((out / "data.json").read_text())

    def strip(x):
        if isinstance(x, dict):
            return {
                k: strip(v)
                for k, v in x.items()
                if k not in ("seconds", "seconds_per_update", "wall_seconds", "environment")
            }
        return [strip(v) for v in x] if isinstance(x, list) else x

    assert strip(again) == strip(first)


@pytest.fixture()
def no_figures(monkeypatch):
    """Skip drawing PNGs (the slow part) in tests about verdicts and exit codes."""
    from invlin.report import writer

    monkeypatch.setattr(writer, "render_figures", lambda data: {})


def test_exit_status_is_nonzero_for_unexpected_failures_only(
    tmp_path, no_figures, monkeypatch, capsys
):
    """Plain Sherman–Morrison failing on the crossing is the declared demonstration: exit 0
    (1 with --strict). With no rule declaring it expected, the same failure exits 1."""
    args = [
        "report",
        "--dims",
        "5",
        "--updates",
        "30",
        "--regimes",
        "crossing",
        "--dtypes",
        "float32",
        "--engines",
        "reference",
        "--policies",
        "plain",
        "--no-progress",
        "--output",
        str(tmp_path / "r"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict") and re.search(r"^EXPECTED\s+plain\s+crossing", out, re.M)
    assert "exit status 0" in out
    assert main([*args, "--strict"]) == 1
    from invlin.drift import expectations

    monkeypatch.setattr(expectations, "EXPECTATIONS", ())
    capsys.readouterr()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert re.search(r"^UNEXPECTED\s+plain\s+crossing", out, re.M)
    assert re.search(r"^UNEXPECTED  crossing n=5 float32 reference plain: .* at update", out, re.M)


def test_atomic_write_keeps_the_old_report_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "rep"
    write_atomic({"a.txt": b"old", "b.txt": b"old"}, target)

    class Exploding(dict):
        def items(self):
            yield "a.txt", b"new"
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(Exploding(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert (target / "a.txt").read_bytes() == b"old" and (target / "b.txt").read_bytes() == b"old"
    write_atomic({"c.txt": b"new"}, target)
    assert [p.name for p in target.iterdir()] == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    with pytest.raises(ValueError, match="plain names"):
        write_atomic({"../x": b""}, target)
    # Interrupted between moving the old report aside and renaming the new one into place:
    # the old one is put back.
    from invlin import outputs

    real = outputs.os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_atomic({"d.txt": b"newer"}, target)
    monkeypatch.setattr(outputs.os, "replace", real)
    assert [p.name for p in target.iterdir()] == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_schema_rejects_a_broken_document(small_report):
    _, data = small_report
    bad = json.loads(json.dumps(data))
    bad["configurations"][0]["tracks"][0]["checkpoints"][0]["inverse_ratio_exact"] = "huge"
    with pytest.raises(ValueError, match="inverse_ratio_exact"):
        validate(bad)
    del bad["schema_version"]
    with pytest.raises(ValueError, match="schema_version"):
        validate(bad)


def test_bad_arguments_are_usage_errors(capsys):
    for args, message in (
        (["--dims", "0"], "positive integer"),
        (["--dtypes", "bfloat16"], "bfloat16"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--executor dask"),
        (["--depth", "2"], "(0, 1)"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["report", *args])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


def _history(tmp_path, steps=30):
    import torch

    from invlin.nn import P4InvLinear, P4Scheduler

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    layer = P4InvLinear(4, init="orthogonal", generator=g)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    sched = P4Scheduler(layer, opt, record=True)
    target = torch.randn(4, 4, generator=g)
    for _ in range(steps):
        x = torch.randn(64, 4, generator=g)
        y, _ = layer(x)
        loss = (y - x @ target.T).pow(2).mean() + layer.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return sched.history.save(tmp_path / "hist.npz")


@pytest.mark.slow
def test_replay_audits_a_recorded_run(tmp_path, monkeypatch):
    from invlin.report import writer

    path = _history(tmp_path)
    out = tmp_path / "replay"
    assert main(["report", "replay", str(path), "--output", str(out), "--no-progress"]) == 0
    data = json.loads((out / "data.json").read_text())
    validate(data)
    assert data["kind"] == "replay"
    (conf,) = data["configurations"]
    recorded = conf["tracks"][0]
    assert recorded["engine"] == "recorded" and recorded["summary"]["passed"]
    assert conf["settings"]["updates"] == 30 and (out / "replay.png").is_file()
    # The history's own numbers are what is judged: a planted log|det| error of 1e-6 fails.
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    # The layer is the root module of the model: its fields are "/<field>".
    arrays["/logabsdet"] = arrays["/logabsdet"] + 1e-6
    np.savez(tmp_path / "bad.npz", **arrays)
    out2 = tmp_path / "replay-bad"
    # The replay's tables name the layer, not a regime.
    assert (out / "summary.csv").read_text().startswith("layer,n,dtype,")
    assert re.search(r"^\| verdict \| policy \| layer \|", (out / "report.md").read_text(), re.M)
    monkeypatch.setattr(writer, "render_figures", lambda data: {})
    # A wrong recorded log|det| is no demonstration: unexpected, exit 1 without --strict.
    assert main(["report", "replay", str(tmp_path / "bad.npz"), "--output", str(out2)]) == 1
    bad = json.loads((out2 / "data.json").read_text())
    assert not bad["configurations"][0]["tracks"][0]["summary"]["passed"]
    assert bad["configurations"][0]["tracks"][1]["summary"]["passed"]  # re-tracking is fine


def test_replay_rejects_a_file_that_is_not_a_history(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    np.savez(tmp_path / "y.npz", **{"layer/a0": np.eye(3)})
    for name, message in (
        ("x.npz", "not a MergeHistory"),
        ("y.npz", "lacks"),
        ("missing.npz", "existing .npz"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["report", "replay", str(tmp_path / name)])
        assert info.value.code == 2 and message in capsys.readouterr().err


def test_plain_progress_bar_reports_to_a_stream():
    import io

    from invlin.drift.progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(20, "sweep", stream=stream)
    for _ in range(4):
        bar.update(5)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("sweep: [") and lines[-1].split()[2] == "20/20"
    with pytest.raises(ValueError, match="total"):
        ProgressBar(-1)
