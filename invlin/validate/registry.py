"""The one registry of adapter plug-ins: each flow library the validator knows, built in or added
by a third party through the entry-point group ``invlin.adapters``.

A plug-in is an :class:`AdapterPlugin`: what it detects (``detect(layer)`` → an adapter class or
``None``), its row of the conventions table, its curated catalog and its detection priority. The
built-in ones are listed in :data:`BUILTIN` (name, where the plug-in lives, the library's import
and pip names, the release ``nox -s validate`` pins); each adapter module declares its own
``PLUGIN = builtin(name, ...)``. A third-party package registers one more with::

    [project.entry-points."invlin.adapters"]
    mylib = "mylib_invlin.adapter:PLUGIN"   # an AdapterPlugin whose name is "mylib"

This module imports only the standard library (the CLI lists library names without torch, and
the noxfile reads :data:`BUILTIN` from this file); :func:`plugins` imports the plug-in modules,
never the flow libraries themselves.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from invlin.validate.catalog import Entry
    from invlin.validate.conventions import Convention
    from invlin.validate.protocol import Adapter

__all__ = [
    "BUILTIN",
    "GROUP",
    "AdapterPlugin",
    "Builtin",
    "Declared",
    "PluginError",
    "builtin",
    "declared",
    "lazy",
    "names",
    "plugin",
    "plugins",
    "reset",
]

#: The entry-point group third-party adapter plug-ins register under.
GROUP = "invlin.adapters"


class Builtin(NamedTuple):
    """A built-in plug-in as known before it is imported."""

    plugin: str  # "module:attribute" of its AdapterPlugin
    module: str  # the library's import name
    package: str  # its pip name
    pin: str = ""  # the requirement `nox -s validate` installs ("" : no nox session)


#: Built-in plug-ins by library name (``invlin validate --library NAME``), in listing order.
BUILTIN: dict[str, Builtin] = {
    "invlin": Builtin("invlin.validate.adapters.generic:PLUGIN", "invlin", "invlin"),
    "nflows": Builtin("invlin.validate.adapters.nflows:PLUGIN", "nflows", "nflows", "nflows==0.14"),
    "zuko": Builtin("invlin.validate.adapters.zuko:PLUGIN", "zuko", "zuko", "zuko==1.6.0"),
    "normflows": Builtin(
        "invlin.validate.adapters.normflows:PLUGIN", "normflows", "normflows", "normflows==1.7.3"
    ),
    "freia": Builtin("invlin.validate.adapters.freia:PLUGIN", "FrEIA", "FrEIA", "FrEIA==0.2"),
    "pyro": Builtin(
        "invlin.validate.adapters.distributions:PLUGIN", "pyro", "pyro-ppl", "pyro-ppl==1.9.2"
    ),
    "flowtorch": Builtin(
        "invlin.validate.adapters.flowtorch:PLUGIN", "flowtorch", "flowtorch", "flowtorch==0.8"
    ),
    "torchflows": Builtin(
        "invlin.validate.adapters.torchflows:PLUGIN",
        "torchflows",
        "torchflows",
        "torchflows==1.2.1",
    ),
    "glasflow": Builtin(
        "invlin.validate.adapters.glasflow:PLUGIN", "glasflow", "glasflow", "glasflow==0.4.1"
    ),
    "sbi": Builtin("invlin.validate.adapters.sbi:PLUGIN", "sbi", "sbi", "sbi==0.27.0"),
}

Detector = Callable[[object], "type[Adapter] | Callable[..., Adapter] | None"]


@dataclass(frozen=True)
class AdapterPlugin:
    """One library's adapter, as the validator finds it.

    ``name``: the ``--library`` name (also the report's library column); ``package``: its pip
    name; ``module``: its import name (imported only to list its catalog, preloaded by the
    workers); ``detect(layer)``: the adapter class (or factory ``(layer, features, name=)``) for
    a layer of this library, else ``None`` — it must not import the library: look classes up in
    ``sys.modules`` only (:func:`invlin.validate.adapters._common.lookup`), since a layer of a
    library cannot exist before that library is imported; ``convention``: its row of the
    conventions table; ``catalog()``: its curated layers (``None``: no catalog); ``priority``:
    detection order, lowest first (a more general convention gets a higher number, e.g. any
    ``torch.distributions.Transform`` is 50, any object with forward/inverse 100);
    ``aliases``: other names the conventions table answers to; ``conditional()``: its curated
    conditional layers, factories ``(features=, context_features=, seed=0)`` (``None``: none).
    """

    name: str
    package: str
    module: str
    detect: Detector
    convention: Convention
    catalog: Callable[[], list[Entry]] | None = None
    priority: int = 50
    aliases: tuple[str, ...] = ()
    conditional: Callable[[], list[Entry]] | None = None


class PluginError(RuntimeError):
    """A plug-in that cannot be loaded or is malformed; the message names its entry point."""


@dataclass(frozen=True)
class Declared:
    """A plug-in known by name before it is loaded: ``ref`` is ``module:attribute`` of its
    :class:`AdapterPlugin`, ``origin`` says where it was declared (for error messages)."""

    name: str
    ref: str
    origin: str
    preload: str  # the module the fork server imports for this library


def builtin(
    name: str,
    *,
    detect: Detector,
    convention: Convention,
    catalog: Callable[[], list[Entry]] | None = None,
    priority: int = 50,
    aliases: tuple[str, ...] = (),
    conditional: Callable[[], list[Entry]] | None = None,
) -> AdapterPlugin:
    """The :class:`AdapterPlugin` of the built-in library ``name`` (package and module from
    :data:`BUILTIN`, the one home of those names)."""
    row = BUILTIN[name]
    return AdapterPlugin(
        name=name,
        package=row.package,
        module=row.module,
        detect=detect,
        convention=convention,
        catalog=catalog,
        priority=priority,
        aliases=aliases,
        conditional=conditional,
    )


def lazy(ref: str) -> Callable[[], Any]:
    """``ref`` = ``"module:function"`` as a callable that imports the module when first called
    and calls the function (a catalog builder whose module imports its library, say)."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"ref must be 'module:function', got {ref!r}")

    def call() -> Any:
        return getattr(importlib.import_module(module), attr)()

    call.__qualname__ = call.__name__ = attr
    call.__doc__ = f"Calls {ref} (imported on first call)."
    return call


@functools.cache
def _entry_points() -> tuple[importlib.metadata.EntryPoint, ...]:
    # cached: reading every installed distribution's metadata takes a few hundred ms
    return tuple(importlib.metadata.entry_points(group=GROUP))


def reset() -> None:
    """Forget the entry points and plug-ins read so far (after installing a plug-in in a
    running process; tests that register entry points)."""
    _entry_points.cache_clear()
    plugins.cache_clear()


def _origin(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" of distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name!r} = {ep.value!r} (group {GROUP!r}{where})"


def declared() -> list[Declared]:
    """Every plug-in by name, without importing any: the built-in ones, then the entry points.

    Raises :class:`PluginError` when two declarations share a name.
    """
    out = [Declared(name, row.plugin, "built-in", row.module) for name, row in BUILTIN.items()]
    seen = {d.name: d.origin for d in out}
    for ep in _entry_points():
        origin = _origin(ep)
        if ep.name in seen:
            raise PluginError(
                f"invlin adapter plug-in {origin}: the library name {ep.name!r} is already "
                f"taken by the {seen[ep.name]} plug-in; uninstall one of them"
            )
        seen[ep.name] = origin
        out.append(Declared(ep.name, ep.value, origin, ep.module))
    return out


def names() -> tuple[str, ...]:
    """The ``--library`` names of every declared plug-in (imports none of them)."""
    return tuple(d.name for d in declared())


def _load(d: Declared) -> AdapterPlugin:
    """Import ``d.ref`` and check that it is a well-formed plug-in named ``d.name``."""
    where = f"invlin adapter plug-in {d.origin}"
    module, _, attr = d.ref.partition(":")
    if not module or not attr:
        raise PluginError(f"{where}: the value must be 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any failure inside a third party's import, named
        raise PluginError(
            f"{where} cannot be loaded: {type(exc).__name__}: {exc}".rstrip(": ")
        ) from exc
    if not isinstance(obj, AdapterPlugin):
        raise PluginError(
            f"{where} must be an invlin.validate.registry.AdapterPlugin, got a "
            f"{type(obj).__module__}.{type(obj).__qualname__}"
        )
    if obj.name != d.name:
        raise PluginError(f"{where} declares the name {obj.name!r}; the entry must be named so")
    problems = []
    if not callable(obj.detect):
        problems.append("detect is not callable")
    for field in ("catalog", "conditional"):
        if getattr(obj, field) is not None and not callable(getattr(obj, field)):
            problems.append(f"{field} is neither None nor callable")
    if isinstance(obj.priority, bool) or not isinstance(obj.priority, int):
        problems.append(f"priority must be an int, got {obj.priority!r}")
    if not all(isinstance(s, str) and s for s in (obj.package, obj.module)):
        problems.append("package and module must be non-empty strings")
    if getattr(obj.convention, "library", None) is None:
        problems.append("convention must be an invlin.validate.conventions.Convention")
    if problems:
        raise PluginError(f"{where} is malformed: {'; '.join(problems)}")
    return obj


@functools.cache
def plugins() -> tuple[AdapterPlugin, ...]:
    """Every plug-in, loaded, in detection order (priority, then declaration order).

    Cached (:func:`reset` forgets it). Raises
    :class:`PluginError` naming the entry point of a plug-in that cannot be loaded, is not an
    :class:`AdapterPlugin`, is malformed, or whose name or alias is already taken.
    """
    loaded = [_load(d) for d in declared()]
    taken: dict[str, str] = {}
    for p in loaded:
        for key in (p.name, *p.aliases):
            if key in taken and taken[key] != p.name:
                raise PluginError(
                    f"invlin adapter plug-in {p.name!r}: the name {key!r} is already used by "
                    f"the plug-in {taken[key]!r}"
                )
            taken[key] = p.name
    order = {p.name: i for i, p in enumerate(loaded)}
    return tuple(sorted(loaded, key=lambda p: (p.priority, order[p.name])))


def plugin(name: str) -> AdapterPlugin:
    """The plug-in called ``name`` (or with ``name`` among its aliases).

    Raises ValueError listing the known names.
    """
    for p in plugins():
        if name == p.name or name in p.aliases:
            return p
    known = sorted(n for p in plugins() for n in (p.name, *p.aliases))
    raise ValueError(f"library must be one of {known}, got {name!r}")
