"""Resolve a TARGET string (``package.module:factory`` or ``path/to/file.py:factory``)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["UsageError", "load_target", "split_target"]

_FORMS = "'package.module:factory' or 'path/to/file.py:factory'"


class UsageError(ValueError):
    """The user asked for something that cannot be run (bad TARGET, unknown library, ...).

    The ``invlin validate`` command turns it into exit status 2.
    """


def split_target(target: str) -> tuple[str, str]:
    """Split ``target`` into ``(module or file, attribute path)``; raise :class:`UsageError`.

    The split is at the last colon, so Windows paths such as ``C:\\x\\f.py:make`` work.
    """
    if not isinstance(target, str) or ":" not in target:
        raise UsageError(f"TARGET must be {_FORMS}, got {target!r}")
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise UsageError(f"TARGET must be {_FORMS}, got {target!r}")
    if not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(
            f"TARGET's factory must be a dotted Python name, got {attr!r} in {target!r}"
        )
    return where, attr


def _is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"_invlin_target_{stem}_{digest}"


def _load_file(where: str, target: str) -> ModuleType:
    """Execute the file ``where`` as a private module (one ``sys.modules`` entry, reused)."""
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"TARGET file {where!r} does not exist (in {target!r})")
    name = _module_name(path)
    if name in sys.modules:  # loaded before in this process: same file, same module
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"TARGET file {where!r} cannot be loaded as Python (in {target!r})")
    module = importlib.util.module_from_spec(spec)
    # Registered under a private name so that dataclasses, pickling and typing can find it;
    # the file's folder is on sys.path only while it runs, for imports of its siblings.
    sys.modules[name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise UsageError(
            f"importing TARGET file {where!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _load_module(where: str, target: str) -> ModuleType:
    """Import ``where``; the working directory is searched last, as ``python -m`` would."""
    if not all(part.isidentifier() for part in where.split(".")):
        raise UsageError(
            f"TARGET's module must be a dotted Python name or a .py file, got "
            f"{where!r} in {target!r}"
        )
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (where == exc.name or where.startswith(exc.name + ".")):
            raise UsageError(
                f"cannot import TARGET module {where!r}: no module named {exc.name!r}"
            ) from exc
        raise UsageError(
            f"importing TARGET module {where!r} raised ModuleNotFoundError: {exc}"
        ) from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise UsageError(
            f"importing TARGET module {where!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def load_target(target: str) -> Callable[..., object]:
    """The factory named by ``target``: ``package.module:Factory`` or ``file.py:factory``.

    The factory is any callable (a function or a layer class) that the validator will call
    as ``factory(features=N)``. A file is executed as a private module named
    ``_invlin_target_<stem>_<hash>``, so it need not be importable. Raises
    :class:`UsageError` (a ``ValueError``) naming the TARGET when the string is malformed,
    the module or file cannot be imported, the attribute is missing or it is not callable.
    """
    where, attr = split_target(target)
    module = _load_file(where, target) if _is_file(where) else _load_module(where, target)
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"TARGET {target!r}: {where!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise UsageError(f"TARGET {target!r} is a {type(obj).__name__}, not a callable factory")
    return obj
