"""Where commands write (invlin.outputs): a new folder by default, never over a folder invlin did
not write, refused before any work, written whole even by several processes at once."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
from pathlib import Path

import pytest
from report_args import TINY_SWEEP

from invlin.cli import main
from invlin.validate.registry import BUILTIN

SWEEP = TINY_SWEEP
REPORT_FILES = {"data.json", "report.md", "report.html", "checkpoints.csv", "summary.csv"}
STAMP = re.compile(r"\d{8}-\d{6}")


@pytest.fixture()
def no_figures(monkeypatch):
    """Reports without PNGs: these tests are about where files go, not what they show."""
    from invlin.report import writer

    monkeypatch.setattr(writer, "render_figures", lambda data: {})


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if any command starts computing: refusals must come before any work."""
    from invlin.drift import executors, replay
    from invlin.experiments import digits, toy2d
    from invlin.validate import command as validate_command

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the output location was checked")

    monkeypatch.setattr(executors, "run_sweep", refuse)
    monkeypatch.setattr(replay, "replay_history", refuse)
    monkeypatch.setattr(toy2d, "run_toy2d", refuse)
    monkeypatch.setattr(digits, "run_digits", refuse)
    monkeypatch.setattr(validate_command, "run_validation", refuse)


def _marker(folder) -> dict:
    return json.loads((folder / ".invlin-output").read_text())


def _history(tmp_path):
    import numpy as np

    path = tmp_path / "h.npz"
    np.savez(path, a0=np.eye(2))
    return path


def _commands(tmp_path, out) -> dict[str, list[str]]:
    """Each command, with the ``--out`` option spelled as the command documents it."""
    return {
        "report": [*SWEEP, "--out", str(out)],
        "report --output": [*SWEEP, "--output", str(out)],
        "replay": ["report", "replay", str(_history(tmp_path)), "--out", str(out)],
        "train toy2d": ["train", "toy2d", "--steps", "1", "--quiet", "--out", str(out)],
        "train digits": ["train", "digits", "--steps", "1", "--quiet", "--out", str(out)],
        "validate": ["validate", "invlin.nn:P4InvLinear", "--out", str(out)],
    }


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code)


# ------------------------------------------------------------------ the default: a new folder


def test_report_writes_a_new_folder_under_the_current_directory(
    tmp_path, monkeypatch, capsys, no_figures
):
    monkeypatch.chdir(tmp_path)
    assert main(SWEEP) == 0
    assert main(SWEEP) == 0
    out = capsys.readouterr().out
    folders = sorted((tmp_path / "invlin-output").iterdir())
    assert len(folders) == 2  # the second run never replaces the first
    assert not (tmp_path / "reports").exists()
    for folder in folders:
        assert re.fullmatch(rf"report-{STAMP.pattern}(-2)?", folder.name), folder.name
        assert REPORT_FILES <= {p.name for p in folder.iterdir()}
        assert f"wrote invlin-output/{folder.name}\n" in out
        marker = _marker(folder)
        assert marker["tool"] == "invlin" and marker["kind"] == "report"
        assert marker["command"].startswith("invlin report --dims 4")
        assert set(marker) == {"tool", "version", "command", "kind", "time"}
    assert sorted(os.listdir(tmp_path)) == ["invlin-output"]  # and nothing else


def test_replay_writes_a_new_folder_under_the_current_directory(
    tmp_path, monkeypatch, capsys, no_figures
):
    import torch

    from invlin.nn import P4InvLinear, P4Scheduler

    g = torch.Generator().manual_seed(0)
    layer = P4InvLinear(3, init="orthogonal", generator=g)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    sched = P4Scheduler(layer, opt, record=True)
    for _ in range(3):
        loss = layer(torch.randn(8, 3, generator=g))[0].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    history = sched.history.save(tmp_path / "run.npz")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "replay", str(history), "--no-progress"]) == 0
    (folder,) = (tmp_path / "invlin-output").iterdir()
    assert re.fullmatch(rf"replay-{STAMP.pattern}", folder.name), folder.name
    assert "data.json" in os.listdir(folder) and _marker(folder)["kind"] == "replay"
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote invlin-output/{folder.name}"
    assert sorted(os.listdir(tmp_path)) == ["invlin-output", "run.npz"]


def test_default_names_get_a_suffix_when_taken(tmp_path):
    from invlin.outputs import plan_output

    plan = plan_output(None, kind="replay", cwd=tmp_path)
    plan = dataclasses.replace(plan, stamp="20250102-030405")
    paths = [plan.write_files({"a.txt": str(i).encode()}) for i in range(3)]
    assert [p.name for p in paths] == [
        "replay-20250102-030405",
        "replay-20250102-030405-2",
        "replay-20250102-030405-3",
    ]
    assert [(p / "a.txt").read_text() for p in paths] == ["0", "1", "2"]


def test_nothing_is_left_behind_when_building_fails(tmp_path):
    from invlin.outputs import plan_output

    plan = plan_output(None, kind="report", cwd=tmp_path)

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError):
        plan.write(broken)
    assert os.listdir(tmp_path / "invlin-output") == []


def test_train_writes_a_new_folder_named_for_the_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "digits", "--steps", "2", "--blocks", "1", "--quiet"]
    assert main(argv) == 0
    (folder,) = (tmp_path / "invlin-output").iterdir()
    assert re.fullmatch(rf"train-digits-{STAMP.pattern}", folder.name), folder.name
    assert {"digits.json", "digits.md", "digits_samples.png"} <= set(os.listdir(folder))
    assert _marker(folder)["kind"] == "train-digits"
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote invlin-output/{folder.name}"
    assert sorted(os.listdir(tmp_path)) == ["invlin-output"]


# ------------------------------------------------------------------ explicit --out DIR


@pytest.mark.parametrize("state", ["missing", "empty", "invlin's"])
def test_out_is_created_used_or_replaced(tmp_path, capsys, no_figures, state):
    out = tmp_path / "deep" / "rep" if state == "missing" else tmp_path / "rep"
    if state != "missing":
        out.mkdir()
    if state == "invlin's":
        (out / ".invlin-output").write_text(json.dumps({"tool": "invlin", "kind": "report"}))
        (out / "stale.txt").write_text("from an older run")
    assert main([*SWEEP, "--out", str(out)]) == 0
    names = set(os.listdir(out))
    assert names == REPORT_FILES | {".invlin-output"}  # stale.txt went with the old folder
    assert _marker(out)["kind"] == "report" and "time" in _marker(out)
    assert f"wrote {out}\n" in capsys.readouterr().out
    assert sorted(os.listdir(out.parent)) == ["rep"]  # no temporary folder beside it


COMMANDS = ["report", "report --output", "replay", "train toy2d", "train digits", "validate"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_invlin_did_not_write_is_refused_before_any_work(
    tmp_path, capsys, no_work, command
):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    assert _status(_commands(tmp_path, out)[command]) == 2
    err = capsys.readouterr().err
    assert f"refusing to replace {out}: it was not written by invlin (no .invlin-output" in err
    assert "Traceback" not in err
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_a_file_is_refused_before_any_work(tmp_path, capsys, no_work, command, where):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "sub"
    assert _status(_commands(tmp_path, out)[command]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "file" in err and "Traceback" not in err
    assert blocker.read_text() == "keep me"


def test_a_marker_that_is_not_invlins_does_not_count(tmp_path):
    from invlin.outputs import OutputError, plan_output

    out = tmp_path / "rep"
    out.mkdir()
    (out / "data.csv").write_text("1,2")
    for marker in ("", "{}", '{"tool": "other"}', "not json"):
        (out / ".invlin-output").write_text(marker)
        with pytest.raises(OutputError, match="refusing to replace"):
            plan_output(out, kind="report")


def test_links_and_the_current_folder_are_refused(tmp_path, monkeypatch):
    from invlin.outputs import OutputError, plan_output

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OutputError, match="symbolic link"):
        plan_output(tmp_path / "link", kind="report")
    (tmp_path / ".invlin-output").write_text(json.dumps({"tool": "invlin"}))
    monkeypatch.chdir(real)
    with pytest.raises(OutputError, match="current folder"):
        plan_output("..", kind="report")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_parent_that_cannot_be_written_is_refused(tmp_path):
    from invlin.outputs import OutputError, plan_output

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot create a folder"):
            plan_output(locked / "rep", kind="report")
    finally:
        locked.chmod(0o700)


def test_a_foreign_folder_that_appears_while_computing_is_not_replaced(tmp_path):
    from invlin.outputs import OutputError, plan_output

    out = tmp_path / "rep"
    plan = plan_output(out, kind="report")  # missing: fine now
    out.mkdir()
    (out / "notes.txt").write_text("written meanwhile")
    with pytest.raises(OutputError, match="not written by invlin"):
        plan.write_files({"a.txt": b"x"})
    assert os.listdir(out) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["rep"]


# ------------------------------------------------------------------ several writers at once


ROUNDS = 30
WRITERS = 4


def _write_repeatedly(target: str, who: int, barrier, errors) -> None:
    from invlin.report import write_atomic

    for r in range(ROUNDS):
        barrier.wait()
        try:
            files = {f"f{i}.txt": f"{who}:{r}".encode() for i in range(5)}
            write_atomic(files, target)
        except BaseException as exc:  # reported to the parent, which fails the test
            errors.put(f"writer {who} round {r}: {exc!r}")


def _plan_and_write(target: str, who: int, barrier, errors) -> None:
    from invlin.outputs import plan_output

    for r in range(ROUNDS):
        barrier.wait()
        try:
            plan = plan_output(target, kind="report")
            plan.write_files({f"f{i}.txt": f"{who}:{r}".encode() for i in range(5)})
        except BaseException as exc:
            errors.put(f"writer {who} round {r}: {exc!r}")


def _run_writers(writer, target: Path) -> None:
    """Run ``writer(target, who, barrier, errors)`` in WRITERS forked processes at once and
    assert that none reported an error or exited abnormally."""
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(str(target), who, barrier, errors))
        for who in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, "\n".join(failures)
    assert all(p.exitcode == 0 for p in procs)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
@pytest.mark.parametrize("writer", [_write_repeatedly, _plan_and_write])
def test_concurrent_writers_all_succeed_and_leave_no_debris(tmp_path, writer):
    target = tmp_path / "rep"
    _run_writers(writer, target)
    # One complete folder from one writer's last round, and nothing beside it.
    assert sorted(os.listdir(tmp_path)) == ["rep"], os.listdir(tmp_path)
    names = {n for n in os.listdir(target) if n != ".invlin-output"}
    assert names == {f"f{i}.txt" for i in range(5)}
    contents = {(target / n).read_text() for n in names}
    assert len(contents) == 1 and contents.pop().endswith(f":{ROUNDS - 1}")


def test_validate_out_records_the_marker_and_says_where(tmp_path, monkeypatch, capsys):
    from invlin.validate import command as validate_command
    from invlin.validate.results import Conformance

    monkeypatch.setattr(validate_command, "run_validation", lambda **kw: Conformance())
    out = tmp_path / "val"
    assert main(["validate", "invlin.nn:P4InvLinear", "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == f"wrote {out}"
    assert sorted(os.listdir(out)) == [".invlin-output", "conformance.json", "conformance.md"]
    marker = _marker(out)
    assert marker["kind"] == "validate"
    assert marker["command"].startswith("invlin validate invlin.nn:P4InvLinear")


def _write_own_files(target: str, who: int, barrier, errors) -> None:
    """A writer that owns the names ``w<who>*`` of a folder it shares with the others."""
    from invlin.outputs import plan_output

    for r in range(ROUNDS):
        barrier.wait()
        try:
            plan = plan_output(target, kind="train", owns=(f"w{who}",))
            plan.write_files({f"w{who}_{i}.txt": f"{who}:{r}".encode() for i in range(3)})
        except BaseException as exc:
            errors.put(f"writer {who} round {r}: {exc!r}")


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_concurrent_writers_of_different_files_in_one_folder_keep_them_all(tmp_path):
    target = tmp_path / "exp"
    _run_writers(_write_own_files, target)
    assert sorted(os.listdir(tmp_path)) == ["exp"], os.listdir(tmp_path)
    expected = {f"w{who}_{i}.txt" for who in range(WRITERS) for i in range(3)}
    assert set(os.listdir(target)) == expected | {".invlin-output"}
    for who in range(WRITERS):  # every writer's last round, none lost to another's swap
        assert (target / f"w{who}_0.txt").read_text() == f"{who}:{ROUNDS - 1}"


def test_an_owner_replaces_its_own_files_and_keeps_the_rest(tmp_path):
    from invlin.outputs import plan_output

    out = tmp_path / "exp"
    plan_output(out, kind="train-toy2d", owns=("toy2d",)).write_files(
        {"toy2d.md": b"toy 1", "toy2d_moons.png": b"png 1"}
    )
    (out / "README.md").write_text("written by hand")
    (out / "notes").mkdir()
    (out / "notes" / "a.txt").write_text("a")
    plan_output(out, kind="train-digits", owns=("digits",)).write_files({"digits.md": b"dig"})
    plan_output(out, kind="train-toy2d", owns=("toy2d",)).write_files({"toy2d.md": b"toy 2"})
    names = [".invlin-output", "README.md", "digits.md", "notes", "toy2d.md"]
    assert sorted(os.listdir(out)) == names
    assert (out / "toy2d.md").read_text() == "toy 2"  # toy2d_moons.png went with toy 1
    assert (out / "digits.md").read_text() == "dig"
    assert (out / "README.md").read_text() == "written by hand"
    assert (out / "notes" / "a.txt").read_text() == "a"
    assert _marker(out)["kind"] == "train-toy2d"
    assert sorted(os.listdir(tmp_path)) == ["exp"]
    # Without an owner, the whole folder is replaced.
    plan_output(out, kind="report").write_files({"data.json": b"{}"})
    assert sorted(os.listdir(out)) == [".invlin-output", "data.json"]


def test_train_keeps_the_other_experiments_files(tmp_path, capsys):
    out = tmp_path / "experiments"
    out.mkdir()
    (out / ".invlin-output").write_text(json.dumps({"tool": "invlin", "kind": "train"}))
    for name in ("toy2d.md", "toy2d.json", "README.md", "digits.md"):
        (out / name).write_text(f"old {name}")
    argv = ["train", "digits", "--steps", "2", "--blocks", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    names = set(os.listdir(out))
    assert {"toy2d.md", "toy2d.json", "README.md", "digits.json", "digits_samples.png"} <= names
    assert (out / "toy2d.md").read_text() == "old toy2d.md"
    assert (out / "digits.md").read_text() != "old digits.md"
    marker = _marker(out)
    assert marker["kind"] == "train-digits"
    assert marker["command"].startswith("invlin train digits --steps 2 --lr ")
    assert marker["command"].endswith(f"--quiet --out {out}")
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"


# ------------------------------------------------------------------ the committed baselines


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The folders under reports/ that invlin's own commands write (nox -s baselines, -s validate).
#: (one reports/validate folder per built-in adapter plug-in)
COMMITTED = ["reports/default", "reports/experiments"] + [
    f"reports/validate/{lib}" for lib in BUILTIN
]


@pytest.mark.parametrize("folder", COMMITTED)
def test_committed_baselines_carry_the_marker_so_they_can_be_regenerated(folder):
    from invlin.outputs import is_invlin_folder, plan_output

    path = os.path.join(REPO, folder)
    if not os.path.isdir(path):
        pytest.skip(f"{folder} is not in this checkout")
    assert is_invlin_folder(path)
    assert plan_output(path, kind="report").folder == Path(path)


def test_the_baselines_session_writes_the_committed_folders_explicitly():
    import importlib.util

    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("noxfile_under_test", Path(REPO, "noxfile.py"))
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)

    class Session:  # records what the session would run
        def __init__(self):
            self.posargs: list[str] = []
            self.runs: list[tuple[str, ...]] = []

        def install(self, *args, **kwargs):
            pass

        def run(self, *args, **kwargs):
            self.runs.append(args)

    session = Session()
    noxfile.baselines(session)
    assert session.runs == [
        ("invlin", "report", "--name", "default", "--output", "reports/default"),
        ("invlin", "train", "toy2d", "--quiet", "--out", "reports/experiments"),
        ("invlin", "train", "digits", "--quiet", "--out", "reports/experiments"),
    ]
