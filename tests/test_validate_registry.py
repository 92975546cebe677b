"""Adapter plug-ins: the registry finds built-in and entry-point plug-ins, names broken ones,
and everything that lists libraries (adapt, conventions, catalog, --library, the worker's
preload, nox) follows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from invlin.validate import registry
from invlin.validate.adapters import adapt, supported
from invlin.validate.catalog import FACTORIES, catalog, libraries
from invlin.validate.conventions import convention, conventions, conventions_markdown
from invlin.validate.registry import BUILTIN, GROUP, AdapterPlugin, PluginError

ROOT = Path(__file__).resolve().parents[1]

# A third-party library ("toyflows") and its adapter plug-in, as a separate package would ship
# them: the plug-in module imports invlin and torch but not the library.
LIBRARY = """
import torch


class Scale(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.log_s = torch.nn.Parameter(torch.linspace(-0.5, 0.5, features))

    def push(self, x):
        return x * self.log_s.exp().to(x.dtype), self.log_s.sum().to(x.dtype).expand(x.shape[:-1])

    def pull(self, y):
        return y / self.log_s.exp().to(y.dtype), -self.log_s.sum().to(y.dtype).expand(y.shape[:-1])
"""

PLUGIN = """
import sys

from invlin.validate.catalog import Entry, seeded
from invlin.validate.conventions import Convention
from invlin.validate.protocol import Adapter
from invlin.validate.registry import AdapterPlugin


class ToyAdapter(Adapter):
    library = "toyflows"

    def forward(self, x, context=None):
        return self.layer.push(x)

    def inverse(self, y, context=None):
        return self.layer.pull(y)


def detect(layer):
    toy = sys.modules.get("toyflows")
    return ToyAdapter if toy is not None and isinstance(layer, toy.Scale) else None


def layers():
    import toyflows

    return [Entry("Scale", seeded(toyflows.Scale), "log-scales -0.5 .. 0.5")]


PLUGIN = AdapterPlugin(
    name="toyflows",
    package="toyflows",
    module="toyflows",
    detect=detect,
    convention=Convention(
        library="toyflows",
        layer_type="toyflows.Scale",
        forward_call="y, ld = layer.push(x)",
        inverse_call="x, ld = layer.pull(y)",
        context="none",
        direction="data → latent",
        forward_logdet="+log|det ∂y/∂x|",
        inverse_logdet="+log|det ∂x/∂y|",
        batch="any (*batch, n)",
        adapter="push/pull renamed forward/inverse",
    ),
    catalog=layers,
    priority=60,
)
NOT_A_PLUGIN = {"name": "toyflows"}
RENAMED = AdapterPlugin(**{**PLUGIN.__dict__, "name": "other"})
NO_DETECT = AdapterPlugin(**{**PLUGIN.__dict__, "detect": 3})
"""


def _install(folder: Path, entries: dict[str, str], dist: str = "toyflows_invlin") -> Path:
    """Write the toy library, its plug-in module and a dist-info declaring ``entries`` under
    the ``invlin.adapters`` group into ``folder`` (to be put on sys.path)."""
    (folder / "toyflows.py").write_text(textwrap.dedent(LIBRARY))
    (folder / "toyflows_invlin.py").write_text(textwrap.dedent(PLUGIN))
    (folder / "raises_on_import.py").write_text("raise RuntimeError('boom at import')\n")
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = [f"[{GROUP}]", *(f"{k} = {v}" for k, v in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def plugged(tmp_path, monkeypatch):
    """Register entry points (``plugged({"toyflows": "toyflows_invlin:PLUGIN"})``) for one test."""

    def register(entries: dict[str, str]) -> Path:
        folder = _install(tmp_path, entries)
        monkeypatch.syspath_prepend(str(folder))
        registry.reset()
        return folder

    yield register
    for name in ("toyflows", "toyflows_invlin", "raises_on_import"):
        sys.modules.pop(name, None)
    registry.reset()


GOOD = {"toyflows": "toyflows_invlin:PLUGIN"}


# -- built-in plug-ins -------------------------------------------------------------------------
def test_every_builtin_is_declared_once_in_its_adapter_module():
    loaded = {p.name: p for p in registry.plugins()}
    assert set(loaded) == set(BUILTIN)
    for name, row in BUILTIN.items():
        p = loaded[name]
        assert (p.package, p.module) == (row.package, row.module)
        assert row.plugin.endswith(":PLUGIN") and p.convention.context
    order = [p.name for p in registry.plugins()]
    # zuko's transforms are torch Transforms too: zuko must be asked before pyro / torch, and
    # the generic forward/inverse convention last
    assert order.index("zuko") < order.index("pyro") and order[-1] == "invlin"


def test_the_registry_imports_only_the_standard_library():
    code = (
        "import sys, invlin.validate.registry as r; r.names(); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nox_validates_every_pinned_builtin():
    code = (
        "import json, sys; sys.argv = ['nox']; import noxfile; "
        "print(json.dumps(noxfile.VALIDATE_LIBRARIES))"
    )
    pytest.importorskip("nox")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    pins = {name: row.pin for name, row in BUILTIN.items() if row.pin}
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pins
    assert "invlin" not in pins and len(pins) >= 5


# -- a third-party plug-in ---------------------------------------------------------------------
def test_an_entry_point_plugin_is_detected_listed_and_catalogued(plugged):
    plugged(GOOD)
    assert registry.names()[-1] == "toyflows" and "toyflows" in libraries()
    import toyflows

    adapter = adapt(toyflows.Scale(3), 3)
    assert type(adapter).__name__ == "ToyAdapter"
    y, ld = adapter.forward(torch.ones(2, 3))
    assert y.shape == (2, 3) and ld.shape == (2,)
    assert convention("toyflows").forward_call == "y, ld = layer.push(x)"
    assert conventions()[-1].library == "toyflows"
    assert "| toyflows | toyflows.Scale |" in conventions_markdown()
    assert any(line.startswith("toyflows:") for line in supported())
    (entry,) = catalog("toyflows")
    assert entry.target == "invlin.validate.catalog:FACTORIES.toyflows.Scale"
    assert type(FACTORIES.toyflows.Scale(features=3)) is toyflows.Scale
    from invlin.validate.worker import library_modules

    assert library_modules()["toyflows"] == "toyflows_invlin"


def test_without_the_entry_point_the_library_is_unknown():
    assert "toyflows" not in registry.names()
    with pytest.raises(ValueError, match="library must be one of"):
        catalog("toyflows")
    with pytest.raises(ValueError, match="library must be one of"):
        convention("toyflows")


def test_priority_orders_detection_before_the_general_conventions(plugged):
    plugged(GOOD)
    order = [p.name for p in registry.plugins()]
    assert order.index("pyro") < order.index("toyflows") < order.index("invlin")


@pytest.mark.parametrize(
    "value, message",
    [
        ("raises_on_import:PLUGIN", "cannot be loaded: RuntimeError: boom at import"),
        ("toyflows_invlin:MISSING", "cannot be loaded: AttributeError"),
        ("toyflows_invlin:NOT_A_PLUGIN", "must be an invlin.validate.registry.AdapterPlugin"),
        ("toyflows_invlin:RENAMED", "declares the name 'other'"),
        ("toyflows_invlin:NO_DETECT", "malformed: detect is not callable"),
        ("toyflows_invlin", "the value must be 'module:attribute'"),
    ],
)
def test_a_broken_plugin_is_named_by_its_entry_point(plugged, value, message):
    plugged({"toyflows": value})
    with pytest.raises(PluginError) as info:
        registry.plugins()
    text = str(info.value)
    assert message in text
    assert f"entry point 'toyflows' = {value!r}" in text and "toyflows_invlin 1.0" in text
    with pytest.raises(PluginError, match="entry point 'toyflows'"):
        adapt(torch.distributions.transforms.ExpTransform(), 3)


def test_a_name_taken_twice_is_refused(plugged):
    plugged({"nflows": "toyflows_invlin:PLUGIN"})
    with pytest.raises(PluginError, match="'nflows' is already taken by the built-in plug-in"):
        registry.names()


def test_an_alias_taken_twice_is_refused(plugged, monkeypatch):
    plugged(GOOD)
    mod = __import__("toyflows_invlin")
    monkeypatch.setattr(
        mod, "PLUGIN", AdapterPlugin(**{**mod.PLUGIN.__dict__, "aliases": ("torch",)})
    )
    registry.reset()
    with pytest.raises(PluginError, match="'torch' is already used by the plug-in 'pyro'"):
        registry.plugins()


# -- the command line (separate processes, as a user runs it) ----------------------------------
def _cli(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "invlin.cli", "validate", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
    )


def test_the_cli_lists_and_runs_a_plugin_library(tmp_path):
    folder = _install(tmp_path, GOOD)
    helped = _cli(folder, "--help")
    assert helped.returncode == 0 and "toyflows" in " ".join(helped.stdout.split())
    run = _cli(
        folder,
        "--library",
        "toyflows",
        "--check",
        "round_trip",
        "--dtype",
        "float64",
        "--profile",
        "dev",
        "--format",
        "json",
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    (layer,) = json.loads(run.stdout)["layers"]
    assert (layer["library"], layer["name"]) == ("toyflows", "Scale")


def test_the_cli_names_a_broken_plugin_and_exits_2(tmp_path):
    folder = _install(tmp_path, {"nflows": "toyflows_invlin:PLUGIN"})
    helped = _cli(folder, "--help")
    assert helped.returncode == 0 and "already taken" in helped.stdout
    run = _cli(folder, "--library", "invlin", "--quiet")
    assert run.returncode == 2
    assert "entry point 'nflows'" in run.stderr and "Traceback" not in run.stderr
