"""``invlin validate`` isolation: workers, time and memory limits, global state, -j, progress.

The hostile layers are in ``validate_hostile.py`` (each a correct ``Scale`` layer doing one thing
to its process); every run is kept small (profile dev, one or two checks, float64, 3 features).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import validate_hostile as hostile

from invlin.cli import SUBCOMMANDS, build_parser, main
from invlin.validate import command, isolation
from invlin.validate.progress import ProgressLine, progress_text
from invlin.validate.results import CheckEvent, CheckResult, Conformance, LayerReport
from invlin.validate.runner import validate
from invlin.validate.worker import run_isolated

HOSTILE = str(Path(__file__).with_name("validate_hostile.py"))
FAST = ["--profile", "dev", "--dtype", "float64", "--features", "3", "--quiet"]
RUN = {"features": 3, "profile": "dev", "dtypes": ("float64",), "max_examples": 5}


def _cli(capsys, target: str, *argv: str) -> tuple[int, str, str]:
    status = main(["validate", target, *FAST, *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _json(capsys, target: str, *argv: str) -> tuple[int, dict]:
    status, out, _ = _cli(capsys, target, "--format", "json", *argv)
    return status, json.loads(out)


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _verdicts(report: LayerReport) -> list[dict]:
    return [dataclasses.asdict(r) for r in report.results]


# -- a layer that ends the process: never exit 0, never no output -------------------------------
EXITS_AT_IMPORT = """
import sys

sys.exit(0)


def make(features):
    raise AssertionError("never reached")
"""


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("import", "importing TARGET"),
        ("exits_in_factory", "SystemExit: 0 (the layer's code called sys.exit"),
        ("exits_in_forward", "the layer raised SystemExit: 0 (the layer's code called sys.exit"),
    ],
)
def test_sys_exit_0_at_import_in_factory_or_forward_exits_1(tmp_path, capsys, where, expected):
    target = (
        f"{_write(tmp_path, 'exits.py', EXITS_AT_IMPORT)}:make"
        if where == "import"
        else f"{HOSTILE}:{where}"
    )
    status, out, _ = _cli(capsys, target, "--check", "round_trip")
    assert status == 1, out
    assert "FAILED" in out and expected in out and "SystemExit" in out


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        ("interrupts_in_forward", "KeyboardInterrupt (raised by the layer's code, not by Ctrl-C)"),
        ("os_exit_in_forward", "the worker process exited with status 3"),
        ("segfaults_in_forward", "the worker process was killed by SIGSEGV"),
    ],
)
def test_interrupt_exit_and_crash_in_forward_are_errors(capsys, factory, expected):
    status, data = _json(capsys, f"{HOSTILE}:{factory}", "--check", "round_trip")
    assert status == 1
    (layer,) = data["layers"]
    (r,) = layer["results"]
    assert r["status"] == "error" and expected in r["message"], r
    assert "in check round_trip (float64/cpu)" in r["message"] or "KeyboardInterrupt" in expected


def test_a_crash_in_one_check_leaves_the_layers_other_checks_to_a_fresh_worker(capsys):
    status, data = _json(
        capsys,
        f"{HOSTILE}:segfaults_in_forward",
        "--check",
        "round_trip",
        "--check",
        "logdet_autograd",
    )
    assert status == 1
    assert [(r["check"], r["status"]) for r in data["layers"][0]["results"]] == [
        ("round_trip", "error"),
        ("logdet_autograd", "error"),
    ]
    assert all("SIGSEGV" in r["message"] for r in data["layers"][0]["results"])


# -- time limits ----------------------------------------------------------------------------
def test_a_hung_check_is_stopped_and_the_layers_other_checks_still_run(capsys):
    status, data = _json(
        capsys,
        f"{HOSTILE}:loops_in_inverse",
        "--check",
        "round_trip",
        "--check",
        "logdet_autograd",
        "--timeout",
        "3",
    )
    assert status == 1
    hung, other = data["layers"][0]["results"]
    assert hung["check"] == "round_trip" and hung["status"] == "error"
    assert hung["message"].startswith(
        "timed out after 3 s in check round_trip (float64/cpu) — the layer did not return"
    )
    assert other["check"] == "logdet_autograd" and other["status"] == "pass", other


def test_the_layer_time_limit_stops_the_layer_and_names_the_unrun_checks(capsys):
    status, data = _json(
        capsys,
        f"{HOSTILE}:loops_forever",
        "--check",
        "round_trip",
        "--check",
        "logdet_autograd",
        "--timeout",
        "0",
        "--layer-timeout",
        "3",
    )
    assert status == 1
    ran, unrun = data["layers"][0]["results"]
    assert (
        ran["status"] == "error"
        and "time limit of 3 s (--layer-timeout) ran out in check round_trip" in ran["message"]
    )
    assert unrun["status"] == "error" and unrun["message"].startswith("not run: ")


def test_a_factory_that_never_returns_is_a_layer_error(tmp_path, capsys):
    target = _write(
        tmp_path,
        "hangs.py",
        """
        def make(features):
            while True:
                pass
    """,
    )
    status, data = _json(capsys, f"{target}:make", "--check", "round_trip", "--timeout", "3")
    assert status == 1
    error = data["layers"][0]["error"]
    assert error.startswith("timed out after 3 s building the layer") and "did not return" in error


# -- memory ----------------------------------------------------------------------------------
def test_a_memory_hog_under_a_memory_limit_is_an_error_of_its_check(capsys):
    status, data = _json(
        capsys, f"{HOSTILE}:hogs_memory", "--check", "round_trip", "--memory-limit", "800"
    )
    assert status == 1
    (r,) = data["layers"][0]["results"]
    assert r["status"] == "error"
    assert r["message"].startswith("out of memory under --memory-limit 800 MB: "), r["message"]


def test_a_memory_limit_below_what_a_worker_needs_is_a_usage_error(capsys):
    status, _, err = _cli(capsys, f"{HOSTILE}:scale", "--memory-limit", "50")
    assert status == 2 and "--memory-limit 50 MB is below what a worker needs" in err


# -- global state -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "change"),
    [
        (hostile.sets_default_dtype, "torch.get_default_dtype() changed float32 → float64"),
        (hostile.disables_grad, "torch.is_grad_enabled() changed True → False"),
        (
            hostile.sets_default_dtype_in_factory,
            "torch.get_default_dtype() changed float32 → float64",
        ),
    ],
)
def test_a_layer_that_changes_global_state_is_reported_and_later_layers_are_unaffected(
    factory, change
):
    alone = validate(hostile.scale, checks=["round_trip", "logdet_autograd"], **RUN)
    assert alone.passed
    report = validate(factory, checks=["round_trip", "logdet_autograd"], **RUN)
    (finding,) = [r for r in report.results if r.check == isolation.CHECK_NAME]
    assert finding.status == "fail" and not report.passed
    assert f"{change} during " in finding.message and "(float64/cpu)" in finding.message
    assert "check round_trip" in finding.message
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    after = validate(hostile.scale, checks=["round_trip", "logdet_autograd"], **RUN)
    assert _verdicts(after) == _verdicts(alone)


def test_global_state_findings_in_workers_and_a_clean_layer_after_them():
    options = {
        "features": 3,
        "profile": "dev",
        "dtypes": ["float64"],
        "checks": ["round_trip", "logdet_autograd"],
    }
    alone = run_isolated(targets=[f"{HOSTILE}:scale"], options=options).reports
    both = run_isolated(
        targets=[f"{HOSTILE}:sets_default_dtype", f"{HOSTILE}:scale"], options=options
    ).reports
    assert [r.check for r in both[0].results] == ["round_trip", "logdet_autograd", "global_state"]
    assert (
        "torch.get_default_dtype() changed float32 → float64 during check round_trip, "
        "check logdet_autograd (float64/cpu)" in both[0].results[-1].message
    )
    assert _verdicts(both[1]) == _verdicts(alone[0]) and alone[0].passed


def test_a_global_changed_at_import_is_reported(tmp_path, capsys):
    target = _write(
        tmp_path,
        "dtype_at_import.py",
        f"""
        import sys

        import torch

        sys.path.insert(0, {str(Path(HOSTILE).parent)!r})
        from validate_hostile import Scale

        torch.set_default_dtype(torch.float64)


        def make(features):
            return Scale(features)
    """,
    )
    status, data = _json(capsys, f"{target}:make", "--check", "round_trip")
    assert status == 1
    finding = data["layers"][0]["results"][-1]
    assert finding["check"] == "global_state" and finding["status"] == "fail"
    assert (
        "torch.get_default_dtype() changed float32 → float64 during the import of"
        in finding["message"]
    )
    assert data["layers"][0]["results"][0]["status"] == "pass"


def test_snapshot_restore_reports_each_changed_global_and_restores_rngs_silently():
    changes: list[isolation.Change] = []
    kept = []
    with isolation.guarded(changes):
        torch.set_num_threads(1 if torch.get_num_threads() != 1 else 2)
        torch.set_anomaly_enabled(True)
        np.seterr(over="raise")
        mode = torch.inference_mode()
        mode.__enter__()
        kept.append(mode)
        torch.manual_seed(123)
        np.random.seed(5)  # noqa: NPY002
        random.seed(5)
    names = [c.name for c in changes]
    assert names == [
        "torch.is_grad_enabled()",
        "torch.is_inference_mode_enabled()",
        "torch.is_anomaly_enabled()",
        "torch.get_num_threads()",
        "numpy.geterr()",
    ]
    assert all(c.restored for c in changes)
    assert not torch.is_anomaly_enabled() and not torch.is_inference_mode_enabled()
    assert np.geterr()["over"] == "warn" and torch.is_grad_enabled()
    clean: list[isolation.Change] = []
    with isolation.guarded(clean):
        torch.randn(3)
    assert clean == []


# -- check() in the caller's process ------------------------------------------------------
def _state() -> tuple:
    return (
        torch.get_rng_state().clone(),
        repr(np.random.get_state()),  # noqa: NPY002
        random.getstate(),
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        torch.get_num_threads(),
    )


def _draws(features: int) -> torch.nn.Module:
    """Scale, built after drawing from all three global generators (as layers' inits do)."""
    torch.randn(3)
    np.random.rand()  # noqa: NPY002
    random.random()
    return hostile.Scale(features)


def test_check_leaves_the_callers_rngs_and_torch_globals_as_they_were():
    from invlin.validate import check

    torch.manual_seed(7)
    np.random.seed(7)  # noqa: NPY002
    random.seed(7)
    before = _state()
    kw = {"features": 3, "profile": "dev", "dtypes": ("float64",), "checks": ["round_trip"]}
    assert check(_draws, **kw).passed
    for factory in (hostile.sets_default_dtype, hostile.disables_grad):
        with pytest.raises(AssertionError, match="global_state"):
            check(factory, **kw)
    after = _state()
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]


def test_check_runs_a_target_string_in_a_worker_with_its_time_limit():
    from invlin.validate import check

    with pytest.raises(AssertionError, match="timed out after 3 s in check round_trip"):
        check(
            f"{HOSTILE}:loops_forever",
            features=3,
            profile="dev",
            dtypes=("float64",),
            checks=["round_trip"],
            timeout=3,
        )


# -- -j, exit statuses, the parent process ---------------------------------------------------
def test_jobs_2_gives_the_same_report_as_jobs_1(capsys):
    argv = ("--library", "invlin", "--check", "round_trip")
    one = _json(capsys, f"{HOSTILE}:scale", *argv, "-j", "1")
    two = _json(capsys, f"{HOSTILE}:scale", *argv, "-j", "2")
    assert one[0] == two[0] == 0
    assert one[1]["layers"] == two[1]["layers"]
    assert len(one[1]["layers"]) > 2


def _fake_run(status: str):
    def run(**_: object) -> Conformance:
        return Conformance(
            layers=[
                LayerReport(
                    name="L",
                    library="x",
                    target="t",
                    results=[
                        CheckResult(
                            check="round_trip", dtype="float64", device="cpu", status=status
                        )
                    ],
                )
            ]
        )

    return run


@pytest.mark.parametrize(
    ("status", "flag", "expected"),
    [
        ("pass", False, 0),
        ("skip", False, 0),
        ("insufficient", False, 1),
        ("insufficient", True, 0),
        ("fail", True, 1),
        ("error", False, 1),
    ],
)
def test_exit_status_and_allow_insufficient(monkeypatch, capsys, status, flag, expected):
    monkeypatch.setattr(command, "run_validation", _fake_run(status))
    argv = ["validate", "m:f", "--quiet", *(["--allow-insufficient"] if flag else [])]
    assert main(argv) == expected
    capsys.readouterr()


def test_the_parent_process_never_imports_torch_or_the_layer():
    code = (
        "import sys; from invlin.cli import main; "
        f"rc = main(['validate', {HOSTILE + ':scale'!r}, '--profile', 'dev', '--dtype', "
        "'float64', '--check', 'round_trip', '--quiet']); "
        "print('RESULT', rc, sorted(m for m in sys.modules if m in ('torch', "
        "'validate_hostile') or m.startswith('_invlin_target_')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "RESULT 0 []"
    helped = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "invlin.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| torch\n" not in helped.stderr and "Exit status" in helped.stdout


def test_help_documents_statuses_limits_and_exit_statuses():
    out = subprocess.run(
        [sys.executable, "-m", "invlin.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for text in (
        "insufficient",
        "global_state",
        "--timeout",
        "--layer-timeout",
        "--memory-limit",
        "--jobs",
        "--quiet",
        "--allow-insufficient",
        "Exit status",
        "usage error",
    ):
        assert text in out, text


def test_each_subcommand_is_mapped_to_the_module_that_registers_it():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) == set(SUBCOMMANDS)
    for name, module in SUBCOMMANDS.items():
        (own,) = [a for a in build_parser((module,))._actions if a.dest == "command"]
        assert name in own.choices


def test_every_catalog_library_is_preloaded_by_its_module_name():
    from invlin.validate.catalog import LIBRARIES
    from invlin.validate.registry import plugin
    from invlin.validate.worker import library_modules

    modules = library_modules()
    assert set(modules) == set(LIBRARIES)
    assert all(modules[lib] == plugin(lib).module for lib in LIBRARIES)


# -- progress ----------------------------------------------------------------------------
def _event(phase: str = "start", index: int = 2) -> CheckEvent:
    return CheckEvent(
        layer="LULinear",
        check="round_trip",
        dtype="float32",
        device="cpu",
        phase=phase,
        index=index,
        total=24,
    )


def test_progress_text():
    assert (
        progress_text(_event(), "nflows:LULinear", 4.13)
        == "[3/24] nflows:LULinear round_trip float32/cpu ... 4.1 s"
    )
    assert progress_text(_event(), "x", 0, layer=1, layers=5, running=2).endswith(
        "(layer 2/5, 2 running)"
    )
    assert len(progress_text(_event(), "x" * 200, 0, width=40)) == 40


def test_progress_is_silent_when_stderr_is_not_a_terminal(capsys):
    quiet = io.StringIO()
    line = ProgressLine(quiet)
    line.event(0, "nflows:LULinear", _event())
    line.tick()
    line.close()
    assert quiet.getvalue() == ""
    status = main(
        [
            "validate",
            f"{HOSTILE}:scale",
            "--profile",
            "dev",
            "--dtype",
            "float64",
            "--check",
            "round_trip",
        ]
    )
    assert status == 0 and "\r" not in capsys.readouterr().err  # capsys is no terminal


def _read_all(fd: int) -> str:
    """Everything written to the terminal so far (the pty may hand it over in pieces)."""
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        chunks.append(os.read(fd, 4096))
    return b"".join(chunks).decode()


def test_progress_line_appears_on_a_pseudo_terminal():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        clock = iter([0.0, 4.1, 4.1, 5.0, 5.0, 9.9])
        line = ProgressLine(tty, clock=lambda: next(clock))
        assert line.enabled
        line.event(0, "nflows:LULinear", _event())
        line.tick()
        line.finished(0)
        tty.flush()
        written = _read_all(master)
    os.close(master)
    text = "[3/24] nflows:LULinear round_trip float32/cpu ... 4.1 s"
    assert written.startswith("\r" + text), repr(written)
    assert written.endswith("\r" + " " * len(text) + "\r"), repr(written)  # cleared at the end
    assert not ProgressLine(io.StringIO(), enabled=False).enabled
