"""Where a command's output goes: a new folder by default, never over a folder invlin did not write.

The rules, for ``invlin report``, ``invlin train`` and ``invlin validate --out`` alike:

* Without ``--out``, the result goes to a new folder
  ``./invlin-output/<kind>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... appended when the name is
  taken; the name is claimed with :func:`os.mkdir`, which is atomic, so concurrent runs never
  share a folder).
* With ``--out DIR``: a missing ``DIR`` is created, an empty one is used, one holding the marker
  file :data:`MARKER` is replaced; anything else — a non-empty folder without the marker, a
  file, a path below a file, a symbolic link, a parent invlin cannot write — is refused
  (:class:`OutputError`, exit status 2) by :func:`plan_output`, before any work is done.
* Every folder written carries :data:`MARKER`, a small JSON file (tool, version, command, kind,
  time) that says invlin wrote it and may replace it.
* A folder is written whole: built in a hidden temporary folder beside the target, then swapped
  in (:func:`replace_folder`) while holding an exclusive lock on the parent folder, so several
  processes writing the same ``DIR`` at once all succeed (the last one wins) and leave nothing
  behind but the target.
* A command whose files share a folder with other commands' (``invlin train toy2d`` and
  ``invlin train digits`` in one ``--out DIR``) names the prefixes it owns
  (:attr:`Output.owns`): only those are replaced, the previous folder's other files are carried
  into the new one under the same lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "DEFAULT_ROOT",
    "MARKER",
    "Marker",
    "Output",
    "OutputError",
    "file_writer",
    "is_invlin_folder",
    "plan_output",
    "replace_folder",
    "wrote_line",
]

#: The marker file in every folder invlin writes: without it, invlin refuses to replace a folder.
MARKER = ".invlin-output"
#: The folder, under the current directory, that holds the default output folders.
DEFAULT_ROOT = "invlin-output"


class OutputError(Exception):
    """An output location invlin refuses or cannot use (the commands exit with status 2)."""


@dataclass(frozen=True)
class Marker:
    """Contents of :data:`MARKER`: who wrote the folder, with which command, when (UTC)."""

    kind: str
    command: str = ""
    time: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    tool: str = "invlin"
    version: str = ""

    def to_json(self) -> str:
        """The marker as one JSON object (keys: tool, version, command, kind, time)."""
        from invlin import __version__

        body = {
            "tool": self.tool,
            "version": self.version or __version__,
            "command": self.command,
            "kind": self.kind,
            "time": self.time,
        }
        return json.dumps(body, indent=1) + "\n"


def is_invlin_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a :data:`MARKER` file whose ``tool`` is invlin."""
    marker = Path(path) / MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        body = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(body, dict) and body.get("tool") == "invlin"


def wrote_line(path: str | Path) -> str:
    """The line each command prints last: ``wrote <path>`` (relative when below the current
    folder, else absolute)."""
    path = Path(os.path.abspath(path))
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    return f"wrote {shown}"


def _replaceable(path: Path) -> bool:
    """Whether invlin may write the folder ``path``: missing, empty, or marked as invlin's."""
    if not path.exists():
        return True
    return path.is_dir() and (not any(path.iterdir()) or is_invlin_folder(path))


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def _check_creatable(path: Path, label: str, shown: str) -> None:
    """Refuse a ``path`` (to be created) below a file or in a folder this process cannot write."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputError(
            f"{label} {shown!r} lies below {str(base)!r}, which is a file, not a folder"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{label} {shown!r}: cannot create a folder in {str(base)!r}")


@dataclass(frozen=True)
class Output:
    """Where one command's result goes (build it with :func:`plan_output`).

    ``folder`` is the explicit ``--out`` folder (absolute), or ``None`` for a new folder under
    ``root`` named ``<kind>-<stamp>`` (claimed when written). ``command`` is recorded in the
    marker. ``owns``: empty, the whole folder is replaced; else the name prefixes this command
    writes, and the previous folder's other entries are kept.
    """

    kind: str
    command: str
    folder: Path | None
    root: Path
    stamp: str
    label: str = "--out"
    owns: tuple[str, ...] = ()

    def write(self, fill: Callable[[Path], object]) -> Path:
        """Build the output with ``fill(folder)`` in a temporary folder, add the marker, and
        swap it in; returns the folder written. On any error nothing is left behind (a new
        default folder claimed for this run is removed again)."""
        claimed: Path | None = None
        if self.folder is None:
            target = claimed = self._claim()
        else:
            target = self.folder
        marker = Marker(kind=self.kind, command=self.command)

        def build(staged: Path) -> None:
            fill(staged)
            (staged / MARKER).write_text(marker.to_json(), encoding="utf-8")

        keep = None
        if self.owns:
            owns = self.owns

            def keep(name: str) -> bool:
                return name != MARKER and not name.startswith(owns)

        try:
            return replace_folder(build, target, require_marker=True, label=self.label, keep=keep)
        except BaseException:
            if claimed is not None:
                with contextlib.suppress(OSError):
                    claimed.rmdir()  # only while still empty
            raise

    def write_files(self, files: Mapping[str, bytes]) -> Path:
        """:meth:`write` for ``files`` ({plain file name: content})."""
        return self.write(file_writer(files))

    def _claim(self) -> Path:
        """Create ``root/<kind>-<stamp>[-i]`` with os.mkdir (atomic: one process per name)."""
        self.root.mkdir(parents=True, exist_ok=True)
        base = f"{self.kind}-{self.stamp}"
        i = 1
        while True:
            path = self.root / (base if i == 1 else f"{base}-{i}")
            try:
                os.mkdir(path)
            except FileExistsError:
                i += 1
                continue
            return path


def plan_output(
    out: str | Path | None,
    *,
    kind: str,
    command: str = "",
    label: str = "--out",
    cwd: str | Path | None = None,
    owns: tuple[str, ...] = (),
) -> Output:
    """Check where a command's output will go, before the command does any work.

    ``out`` is the user's ``--out`` folder or ``None`` (a new folder
    ``cwd/invlin-output/<kind>-<YYYYmmdd-HHMMSS>``); ``kind`` names the output (report,
    replay, train-toy2d, validate); ``label`` is the option's name in messages; ``owns`` as in
    :class:`Output` (the name prefixes this command replaces in a shared folder). Raises
    :class:`OutputError` when the location is a file, lies below a file, is a symbolic link,
    is a non-empty folder without :data:`MARKER`, contains the current folder, or cannot be
    created. Creates nothing.
    """
    here = Path(os.path.abspath(cwd if cwd is not None else os.getcwd()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = here / DEFAULT_ROOT
    if out is None:
        if root.exists() and not root.is_dir():
            raise OutputError(f"{str(root)!r} is a file: give a folder with {label} DIR")
        _check_creatable(root / kind, label, str(root))
        return Output(kind, command, None, root, stamp, label, owns)
    given = Path(out)
    path = Path(os.path.abspath(here / given))
    shown = str(given)
    if not path.name:
        raise OutputError(f"{label} {shown!r} is not a folder invlin can write")
    if path.is_symlink():
        raise OutputError(
            f"{label} {shown!r} is a symbolic link: give the folder it points to instead"
        )
    if path.exists():
        if not path.is_dir():
            raise OutputError(
                f"{label} {shown!r} is a file, not a folder: the output is a folder of files"
            )
        if here == path or path in here.parents:
            raise OutputError(f"{label} {shown!r} is or contains the current folder")
        if not _replaceable(path):
            raise OutputError(
                f"refusing to replace {shown}: it was not written by invlin (no {MARKER} "
                f"marker); give an empty or new folder with {label}"
            )
    _check_creatable(path, label, shown)
    return Output(kind, command, path, root, stamp, label, owns)


# --------------------------------------------------------------------------- the atomic swap


def file_writer(files: Mapping[str, bytes]) -> Callable[[Path], None]:
    """A ``build`` function for :func:`replace_folder` that writes ``files`` ({plain file name:
    content}, each flushed to disk) into the folder; names with a path separator or a leading
    dot are refused (``ValueError``) here, before anything is written."""
    for name in files:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"file names must be plain names, got {name!r}")

    def fill(folder: Path) -> None:
        for name, content in files.items():
            with open(folder / name, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())

    return fill


def _carry(previous: Path, staged: Path, keep: Callable[[str], bool]) -> None:
    """Copy the entries of ``previous`` that ``keep`` accepts and ``staged`` lacks into
    ``staged`` (files hard-linked, or copied where links are refused; folders copied)."""
    for entry in previous.iterdir():
        dest = staged / entry.name
        if not keep(entry.name) or dest.exists() or dest.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, dest, symlinks=True)
            continue
        try:
            os.link(entry, dest, follow_symlinks=False)
        except OSError:
            shutil.copy2(entry, dest, follow_symlinks=False)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself: it serialises the swaps of all
    processes writing into ``folder`` and leaves no lock file behind. Where flock is missing
    (Windows) or refused (some network file systems), the swap runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_folder(
    build: Callable[[Path], object],
    target: str | Path,
    *,
    require_marker: bool = False,
    label: str = "--out",
    keep: Callable[[str], bool] | None = None,
) -> Path:
    """Make ``target`` the folder that ``build(folder)`` fills, atomically; returns ``target``.

    ``build`` fills a fresh folder inside a private hidden work folder beside ``target``
    (``.<name>.invlin-*``). Then, holding an exclusive lock on the parent folder, the previous
    ``target`` (if any) is moved into the work folder and the new one renamed into place; the
    work folder, with the previous contents, is removed after the lock is released. So at any
    moment ``target`` is either the previous complete folder or the new complete one (missing
    only for the instant between the two renames), concurrent writers to the same ``target``
    all succeed (last one wins), and an error or interruption leaves no work folder behind.
    With ``require_marker``, ``target`` is checked again under the lock and the swap refused
    (:class:`OutputError`) if something other than invlin put a folder there meanwhile.
    With ``keep``, the entries of the previous ``target`` whose names ``keep`` accepts and that
    ``build`` did not write are carried into the new folder (hard links where possible), also
    under the lock, so concurrent writers of different entries all keep theirs.
    """
    target = Path(os.path.abspath(target))
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"target must be a folder, got {str(target)!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.invlin-", dir=target.parent))
    try:
        staged, old = work / "new", work / "old"
        staged.mkdir()
        build(staged)
        with _locked(target.parent):
            if require_marker and not _replaceable(target):
                raise OutputError(
                    f"refusing to replace {target}: it was not written by invlin (no "
                    f"{MARKER} marker), and appeared while the output was being computed"
                )
            if keep is not None and target.is_dir():
                _carry(target, staged, keep)
            moved = False
            try:
                if target.exists():
                    os.replace(target, old)
                    moved = True
                os.replace(staged, target)
            except BaseException:
                if moved and not target.exists():
                    os.replace(old, target)  # put the previous folder back
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
