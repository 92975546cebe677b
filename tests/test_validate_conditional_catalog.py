"""The conditional catalogs: one list, the adapter plug-ins' ``conditional`` field, so a library
(built in or third party) is validated with a context exactly when its plug-in declares
conditional layers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from invlin.validate import conditional_catalog as cc
from invlin.validate import registry
from invlin.validate.catalog import Entry
from invlin.validate.conditional_catalog import conditional_catalog, conditional_libraries
from invlin.validate.target import load_target


def test_every_plugin_with_a_conditional_field_is_listed_and_no_other():
    declared = {p.name for p in registry.plugins() if p.conditional is not None}
    assert set(conditional_libraries()) == declared
    # the libraries the issue wants validated with a context, the new ones included
    assert {"nflows", "zuko", "normflows", "freia", "pyro", "sbi", "glasflow", "torchflows"} <= (
        declared
    )
    assert "invlin" not in declared and "flowtorch" not in declared  # neither takes a context


class _Scale(torch.nn.Module):
    """A conditional toy layer: y = x · exp(w·c)."""

    def __init__(self, features: int, context_features: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((context_features,), 0.1))


def _toy_conditional() -> list[Entry]:
    def factory(features: int, context_features: int, *, seed: int = 0) -> torch.nn.Module:
        return _Scale(features, context_features)

    return [Entry("Scale", factory, "toy")]


@pytest.fixture
def toy_plugin(monkeypatch):
    """A plug-in "toyflows" (module torch, so it counts as installed) whose only catalog is a
    conditional one: found only if conditional_catalog reads the registry."""
    base = registry.plugin("invlin")
    toy = dataclasses.replace(
        base, name="toyflows", package="torch", module="torch", conditional=_toy_conditional
    )
    builtins = registry.plugins()
    monkeypatch.setattr(registry, "plugins", lambda: (*builtins, toy))
    monkeypatch.setattr(registry, "names", lambda: (*(p.name for p in builtins), "toyflows"))
    return toy


def test_a_plugins_conditional_catalog_is_found_and_its_targets_resolve(toy_plugin):
    assert "toyflows" in conditional_libraries()
    (entry,) = conditional_catalog("toyflows")
    assert entry.name == "Scale"
    assert entry.target == "invlin.validate.conditional_catalog:FACTORIES.toyflows.Scale"
    layer = load_target(entry.target)(features=3, context_features=2)
    assert isinstance(layer, _Scale) and layer.w.shape == (2,)


def test_a_library_without_conditional_layers_is_refused_naming_those_with(toy_plugin):
    with pytest.raises(ValueError, match=r"no conditional layers.*toyflows"):
        conditional_catalog("invlin")
    with pytest.raises(AttributeError, match="no layer 'Nope'"):
        cc.FACTORIES.toyflows.Nope  # noqa: B018


def test_an_unknown_library_is_refused():
    with pytest.raises(ValueError, match="library must be one of"):
        conditional_catalog("no-such-library")
