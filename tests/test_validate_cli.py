"""``invlin validate``: TARGET loading, exit statuses 0/1/2, outputs, and ``check()``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from invlin.cli import main
from invlin.validate.target import UsageError, load_target, split_target

GOOD = """
from invlin.nn import P4InvLinear


def make(features):
    return P4InvLinear(features, init="orthogonal")
"""

# A linear layer whose forward log|det| has the wrong sign: the kind of bug normflows #27 and
# FrEIA's ActNorm shipped. Everything else about it is right.
BROKEN = """
import torch


class WrongSign(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(features, features, generator=g, dtype=torch.float64))
        self.weight = torch.nn.Parameter(q @ torch.diag(torch.linspace(0.5, 2.0, features,
                                                                        dtype=torch.float64)))

    def forward(self, x):
        w = self.weight.to(x.dtype)
        return x @ w.T, -torch.linalg.slogdet(w)[1].expand(x.shape[:-1])

    def inverse(self, y):
        w = self.weight.to(y.dtype)
        return torch.linalg.solve(w, y.unsqueeze(-1)).squeeze(-1), \\
            -torch.linalg.slogdet(w)[1].expand(y.shape[:-1])


def make(features):
    return WrongSign(features)
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


# -- TARGET ------------------------------------------------------------------------------------
def test_split_target_forms():
    assert split_target("pkg.mod:make") == ("pkg.mod", "make")
    assert split_target("a/b.py:Cls.build") == ("a/b.py", "Cls.build")
    assert split_target(r"C:\x\f.py:make") == (r"C:\x\f.py", "make")
    for bad in ("pkg.mod", ":make", "pkg.mod:", "pkg:1bad", "pkg:a-b"):
        with pytest.raises(UsageError, match="TARGET"):
            split_target(bad)


def test_load_target_from_file_and_module(tmp_path, monkeypatch):
    path = _write(tmp_path, "layers.py", GOOD)
    factory = load_target(f"{path}:make")
    assert factory.__name__ == "make" and factory.__module__.startswith("_invlin_target_layers_")
    assert str(tmp_path) not in sys.path  # the file's folder was on sys.path only while loading
    assert load_target(f"{path}:make") is factory  # loaded once per process
    assert load_target("invlin.nn:P4InvLinear").__name__ == "P4InvLinear"
    # a module in the working directory is found, as with ``python -m``
    _write(tmp_path, "cwd_layers_for_invlin_test.py", GOOD)
    monkeypatch.chdir(tmp_path)
    try:
        assert callable(load_target("cwd_layers_for_invlin_test:make"))
    finally:
        sys.modules.pop("cwd_layers_for_invlin_test", None)


@pytest.mark.parametrize(
    ("text", "attr", "match"),
    [
        ("def make(features): pass\n", "nope", "has no attribute 'nope'"),
        ("make = 3\n", "make", "is a int, not a callable"),
        ("def make(:\n", "make", "raised SyntaxError"),
        ("import no_such_module_for_invlin\n", "make", "raised ModuleNotFoundError"),
        ("raise RuntimeError('boom')\n", "make", "raised RuntimeError: boom"),
    ],
)
def test_load_target_file_errors(tmp_path, text, attr, match):
    path = _write(tmp_path, "bad.py", text)
    before = {m for m in sys.modules if m.startswith("_invlin_target_bad_")}
    with pytest.raises(UsageError, match=match):
        load_target(f"{path}:{attr}")
    added = {m for m in sys.modules if m.startswith("_invlin_target_bad_")} - before
    assert len(added) == (0 if "raised" in match else 1)  # a file that failed leaves nothing


def test_load_target_module_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_target(f"{tmp_path}/missing.py:make")
    with pytest.raises(UsageError, match="no module named 'no_such_pkg_for_invlin'"):
        load_target("no_such_pkg_for_invlin.layers:make")
    with pytest.raises(UsageError, match="dotted Python name"):
        load_target("not a module:make")


# -- exit status 2 -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "give a TARGET"),
        (["nocolon"], "TARGET must be"),
        (["no_such_pkg_for_invlin:make"], "cannot import TARGET module"),
        (["--library", "tensorflow"], "--library must be one of"),
        (["invlin.nn:P4InvLinear", "--device", "tpu"], "--device"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, match):
    assert main(["validate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invlin validate: error: ") and match in err


def test_import_failure_in_target_file_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "broken_import.py", "import no_such_module_for_invlin\n")
    assert main(["validate", f"{path}:make"]) == 2
    assert "ModuleNotFoundError" in capsys.readouterr().err


def test_missing_library_package_exits_2(capsys):
    try:
        import nflows  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("nflows is installed here")
    assert main(["validate", "--library", "nflows"]) == 2
    assert "not installed" in capsys.readouterr().err


def test_bad_option_values_exit_2_through_argparse():
    for argv in (["--features", "0"], ["--profile", "fast"], ["--format", "html"]):
        with pytest.raises(SystemExit) as info:
            main(["validate", "invlin.nn:P4InvLinear", *argv])
        assert info.value.code == 2


def test_console_script_is_registered():
    out = subprocess.run(
        [sys.executable, "-m", "invlin.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TARGET" in out and "--library" in out and "Exit status" in out


# -- end to end: exit statuses 0 and 1, outputs ------------------------------------------------
def _schema_valid(data: dict) -> None:
    pytest.importorskip("jsonschema")
    from invlin.validate.schema import validate_conformance

    validate_conformance(data)


def test_invlin_layer_passes_every_check_exit_0(tmp_path, capsys):
    """The whole battery, float64 and float32, on invlin's own P4InvLinear: exit 0, and the
    JSON (stdout) and --out files are schema-valid and agree."""
    path = _write(tmp_path, "good.py", GOOD)
    out = tmp_path / "out"
    status = main(
        ["validate", f"{path}:make", "--profile", "dev", "--format", "json", "--out", str(out)]
    )
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    _schema_valid(data)
    assert status == 0, captured.out
    (layer,) = data["layers"]
    assert layer["name"] == "P4InvLinear" and layer["target"] == f"{path}:make"
    assert layer["error"] is None
    from invlin.validate.checks import CHECKS

    assert {(r["check"], r["dtype"]) for r in layer["results"]} == {
        (c, d) for c in CHECKS for d in ("float64", "float32")
    }
    assert all(r["status"] in ("pass", "skip") for r in layer["results"])
    assert sum(r["status"] == "pass" for r in layer["results"]) >= len(CHECKS)
    written = json.loads((out / "conformance.json").read_text())
    _schema_valid(written)
    assert written["layers"] == data["layers"]
    assert written["meta"]["command"].startswith("invlin validate ")
    assert written["meta"]["versions"]["torch"]
    md = (out / "conformance.md").read_text()
    assert md.startswith("# invlin conformance: ") and "PASSED" in md
    assert "| P4InvLinear | invertibility | pass " in md and "|  | round_trip | pass " in md
    assert f"wrote {out}" in captured.err


def test_broken_layer_fails_exit_1_with_details(tmp_path, capsys):
    path = _write(tmp_path, "broken.py", BROKEN)
    status = main(
        [
            "validate",
            f"{path}:make",
            "--profile",
            "dev",
            "--dtype",
            "float64",
            "--check",
            "round_trip",
            "--check",
            "logdet_autograd",
        ]
    )
    text = capsys.readouterr().out
    assert status == 1, text
    rows = {
        line.split()[0 if line.startswith(" ") else 1]: line
        for line in text.splitlines()
        if "round_trip" in line or "logdet_autograd" in line
    }
    assert " pass " in rows["round_trip"] and " FAIL " in rows["logdet_autograd"]
    details = text[text.index("failures:") :]
    assert "FAIL WrongSign · logdet_autograd · float64/cpu" in details
    assert "minimal failing example:" in details and "reproduce:" in details
    assert f"load_target('{path}:make')" in details  # the repro rebuilds the layer


def test_layer_that_raises_is_reported_exit_1(tmp_path, capsys):
    path = _write(
        tmp_path,
        "raises.py",
        """
        def make(features):
            raise RuntimeError("cannot build with features=%d" % features)
    """,
    )
    assert main(["validate", f"{path}:make", "--profile", "dev", "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert "ERROR" in md and "RuntimeError: cannot build with features=4" in md


def test_library_catalog_and_target_together(tmp_path, capsys):
    path = _write(tmp_path, "good.py", GOOD)
    status = main(
        [
            "validate",
            f"{path}:make",
            "--library",
            "invlin",
            "--profile",
            "dev",
            "--dtype",
            "float64",
            "--check",
            "round_trip",
            "--format",
            "json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    _schema_valid(data)
    from invlin.validate.catalog import catalog

    names = [layer["name"] for layer in data["layers"]]
    assert len(names) == 1 + len(catalog("invlin"))
    assert {layer["library"] for layer in data["layers"][1:]} == {"invlin"}
    assert status == 0  # invlin's own layers round-trip
    assert all(r["status"] == "pass" for layer in data["layers"] for r in layer["results"])
    assert data["meta"]["versions"]["invlin"]


def test_unknown_check_exits_2(capsys):
    assert main(["validate", "invlin.nn:P4InvLinear", "--check", "speed"]) == 2
    assert "--check must name one of" in capsys.readouterr().err


def test_cuda_requested_without_cuda_exits_2(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["validate", "invlin.nn:P4InvLinear", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


# -- check() -----------------------------------------------------------------------------------
def test_check_returns_the_report_of_a_conforming_layer(tmp_path):
    from invlin.validate import check

    factory = load_target(f"{_write(tmp_path, 'good.py', GOOD)}:make")
    report = check(factory, profile="dev", dtypes=("float64",), checks=["logdet_autograd"])
    assert report.passed and [r.status for r in report.results] == ["pass"]


def test_check_raises_a_readable_assertion_on_a_broken_layer(tmp_path):
    import invlin.validate

    target = f"{_write(tmp_path, 'broken.py', BROKEN)}:make"
    with pytest.raises(AssertionError) as info:
        invlin.validate.check(
            target, profile="dev", dtypes=("float64",), checks=["round_trip", "logdet_autograd"]
        )
    text = str(info.value)
    assert text.startswith("layer 'WrongSign' does not conform\n")
    assert "FAIL WrongSign · logdet_autograd · float64/cpu: ratio " in text
    assert "log|det|" in text and "minimal failing example:" in text and "reproduce:" in text
    with pytest.raises(ValueError, match="profile"):
        invlin.validate.check(target, profile="fast")


def test_warnings_a_layer_raises_are_recorded_with_its_name(tmp_path, capsys):
    path = _write(
        tmp_path,
        "warns.py",
        """
        import warnings

        from invlin.nn import P4InvLinear


        class Warns(P4InvLinear):
            def forward(self, x):
                warnings.warn("old_api() is deprecated\\nsecond line", DeprecationWarning)
                return super().forward(x)


        def make(features):
            return Warns(features, init="orthogonal")
    """,
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "validate",
                f"{path}:make",
                "--profile",
                "dev",
                "--dtype",
                "float64",
                "--check",
                "round_trip",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    data = json.loads((out / "conformance.json").read_text())
    _schema_valid(data)
    (w,) = data["meta"]["warnings"]
    assert w["layer"] == f"{path}:make" and w["category"] == "DeprecationWarning"
    assert w["message"] == "old_api() is deprecated" and w["count"] >= 1
    assert w["where"] == f"{path}:9"
    assert "warnings raised while validating (not failures):" in text
    assert "## Warnings raised while validating" in (out / "conformance.md").read_text()
