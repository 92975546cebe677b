"""Replay a merge history recorded by P4Scheduler against the oracle, to audit a training run."""

from __future__ import annotations

import math
import time
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from invlin._errors import message_line
from invlin._validation import positive_int
from invlin.drift.config import checkpoints
from invlin.drift.measure import CheckpointRecord, OracleCache, measure
from invlin.drift.policies import TrackState
from invlin.drift.results import ConfigurationResult, TrackResult, summarize
from invlin.oracle import ExactMatrix
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing.tolerance import allowed_ratio, logdet_ratio

__all__ = ["MAX_HISTORY_BYTES", "load_history", "replay_history"]

MAX_HISTORY_BYTES = 2 << 30
"""The most bytes (2 GiB) the members of a history file may hold uncompressed, by default.

Checked from the zip directory and the members' .npy headers before any array is read; raise it
with ``load_history(..., max_bytes=)`` / ``replay_history(..., max_bytes=)`` or
``invlin report replay --max-bytes``. A layer of n = 1024 with 100,000 merges holds about 1.6 GB
(u and v, float64)."""

_FIELDS = ("a0", "u", "v", "c", "logabsdet", "sign")  # read by the replay
_UNREAD = ("step",)  # written by MergeHistory.save, checked but never read
_VERSION = "format_version"
_VERSIONS = (1,)
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


class _Member(NamedTuple):
    """One array of a history: its zip entry and what its .npy header declares."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype


def _label(where: str, key: str) -> str:
    """How an error names member ``key``: the file, and the layer and field."""
    if "/" not in key:
        return f"{where}: field {key!r}"
    layer, field = key.rsplit("/", 1)
    return f"{where}: layer {layer!r} field {field!r}"


def _header(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, header length) of a .npy member, reading its header only."""
    fmt = np.lib.format
    with zf.open(info) as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        return tuple(shape), bool(fortran), dtype, f.tell()


def _open_archive(path: Path, where: str) -> zipfile.ZipFile:
    """The history file as a zip archive, or ValueError saying what the file is instead."""
    if path.stat().st_size == 0:
        raise ValueError(f"{where} is empty (0 bytes): not a MergeHistory .npz file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ValueError(
            f"{where} is a single .npy array, not a .npz archive of a MergeHistory "
            f"(a .npy file renamed?)"
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(
            f"{where} is not a .npz (zip) archive, or a truncated one "
            f"({message_line(exc)}): not a MergeHistory .npz file"
        ) from None


def _members(zf: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by key ("<layer>/<field>" or "format_version"), names checked."""
    known = _FIELDS + _UNREAD
    out: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if not info.filename.endswith(".npy") or key in out:
            raise ValueError(
                f"{where} is not a MergeHistory .npz file: unexpected member "
                f"{info.filename!r} (refused without loading it)"
            )
        if key != _VERSION and "/" not in key:
            raise ValueError(
                f"{where} is not a MergeHistory .npz file: member {key!r} is not "
                f"named '<layer>/<field>'"
            )
        if key != _VERSION and key.rsplit("/", 1)[1] not in known:
            raise ValueError(
                f"{where}: unexpected member {key!r} (refused without loading it); "
                f"a history holds only '<layer>/<field>' arrays with field one of "
                f"{', '.join(known)}, and {_VERSION}"
            )
        out[key] = info
    return out


def _check_size(members: dict[str, _Member], where: str, max_bytes: int) -> None:
    """Refuse a history over ``max_bytes``, by the zip directory's sizes and by the headers'."""
    for label, sizes in (
        ("uncompressed", {k: m.info.file_size for k, m in members.items()}),
        (
            "by its .npy headers",
            {k: math.prod(m.shape) * m.dtype.itemsize for k, m in members.items()},
        ),
    ):
        total = sum(sizes.values())
        if total > max_bytes:
            big = max(sizes, key=sizes.__getitem__)
            raise ValueError(
                f"{where} holds {total} bytes {label}, over the limit of {max_bytes} "
                f"bytes (largest member {big!r}: {sizes[big]} bytes); raise the limit "
                f"with --max-bytes (max_bytes=, default MAX_HISTORY_BYTES) if the "
                f"file is trusted"
            )


def _check_layout(layers: dict[str, dict[str, _Member]], where: str) -> None:
    """Check every member's dtype and shape from its header: refuse before anything is read."""
    for name, rec in layers.items():

        def bad(field: str, what: str, name: str = name) -> ValueError:
            return ValueError(f"{where}: layer {name!r} field {field!r} {what}")

        missing = [f for f in _FIELDS if f not in rec]
        if missing:
            raise ValueError(f"{where}: layer {name!r} lacks {missing}")
        a0 = rec["a0"].shape
        if len(a0) != 2 or a0[0] != a0[1] or a0[0] < 1:
            raise bad("a0", f"must be a square (n, n) matrix with n >= 1, got shape {a0}")
        n = a0[0]
        if len(rec["c"].shape) != 1:
            raise bad("c", f"must have shape (k,) (one entry per merge), got {rec['c'].shape}")
        k = rec["c"].shape[0]
        for field, want in (
            ("u", (k, n)),
            ("v", (k, n)),
            ("logabsdet", (k,)),
            ("sign", (k,)),
            ("step", (k,)),
        ):
            if field in rec and rec[field].shape != want:
                raise bad(
                    field,
                    f"must have shape {want} (k = {k} merges, n = {n}), got {rec[field].shape}",
                )


def _read(zf: zipfile.ZipFile, m: _Member, what: str) -> np.ndarray:
    """Read one member (never unpickling); ``what`` names it in the error."""
    try:
        with zf.open(m.info) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ValueError(
            f"{what} could not be read, the file is truncated or corrupt ({message_line(exc)})"
        ) from None
    if arr.shape != m.shape:  # pragma: no cover - read_array honours the header
        raise ValueError(f"{what} holds shape {arr.shape}, its header says {m.shape}")
    return arr


def load_history(
    path: str | Path, *, max_bytes: int = MAX_HISTORY_BYTES
) -> dict[str, dict[str, np.ndarray]]:
    """Read a ``MergeHistory.save`` file and check its layout: ``{layer: {field: array}}``.

    The fields returned are a0 (float64 (n, n)), u and v (float64 (k, n)), c and logabsdet
    (float64 (k,)) and sign (int64 (k,)). Before any array is read, the zip directory and each
    member's .npy header are checked: only ``<layer>/<field>.npy`` members (field one of a0, u, v,
    c, logabsdet, sign, step) and ``format_version.npy`` (= 1) are allowed, each of a real
    numeric dtype and the shape its field needs, all of them together at most ``max_bytes``
    bytes (default :data:`MAX_HISTORY_BYTES`); then only the arrays the replay needs are read,
    without unpickling. a0, u and v must be finite and sign too.

    Raises ValueError naming the file, and the layer and field where there is one, for anything
    else (an empty, truncated or non-zip file, a renamed .npy, a missing, unexpected, oversized
    or malformed member).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"history must be an existing .npz file, got {str(path)!r}")
    max_bytes = positive_int(max_bytes, "max_bytes")
    where = f"history {str(path)!r}"
    with _open_archive(path, where) as zf:
        members: dict[str, _Member] = {}
        for key, info in _members(zf, where).items():
            what = _label(where, key)
            try:
                shape, fortran, dtype, head = _header(zf, info)
            except _READ_ERRORS as exc:
                raise ValueError(
                    f"{what} is not a readable .npy array ({message_line(exc)})"
                ) from None
            if dtype.hasobject or dtype.kind not in "biuf":  # object arrays would need pickle
                raise ValueError(f"{what} must be a real numeric array, got dtype {dtype.str!r}")
            members[key] = _Member(info, shape, fortran, dtype)
            expected = head + math.prod(shape) * dtype.itemsize
            if info.file_size != expected:
                raise ValueError(
                    f"{what} holds {info.file_size} bytes but its .npy header "
                    f"declares {expected}: the file is truncated or corrupt"
                )
        _check_size(members, where, max_bytes)
        version = members.pop(_VERSION, None)
        if version is not None:
            value = None
            if version.shape == () and version.dtype.kind in "iu":
                value = int(_read(zf, version, _label(where, _VERSION)))
            if value not in _VERSIONS:
                shown = (
                    value
                    if value is not None
                    else f"dtype {version.dtype.str}, shape {version.shape}"
                )
                raise ValueError(
                    f"{where}: field {_VERSION!r} is {shown}; this invlin reads "
                    f"format version {', '.join(map(str, _VERSIONS))}"
                )
        layers: dict[str, dict[str, _Member]] = {}
        for key, m in members.items():
            name, field = key.rsplit("/", 1)
            layers.setdefault(name, {})[field] = m
        if not layers:
            raise ValueError(f"{where} records no layer")
        _check_layout(layers, where)
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, rec in layers.items():
            arrays = {}
            for field in _FIELDS:
                what = _label(where, f"{name}/{field}")
                arr = _read(zf, rec[field], what)
                if field in ("a0", "u", "v", "sign") and not np.all(np.isfinite(arr)):
                    raise ValueError(f"{what} must be finite, it holds NaN or ±inf")
                arrays[field] = arr.astype(np.int64 if field == "sign" else np.float64)
            out[name] = arrays
    return out


def _recorded(m: int, n: int, dtype: str, truth, lad: float, sign: int) -> CheckpointRecord:
    nan = math.nan
    allowed = allowed_ratio(m)
    if truth is None:
        err = ratio = kappa = true_lad = nan
        sign_e, bits, passed = 0, 0, False
    else:
        kappa, true_lad, sign_e, bits = truth.kappa, truth.logabsdet, truth.sign, truth.bits
        ratio = logdet_ratio(lad, true_lad, n=n, kappa=kappa, dtype=dtype).value
        err = lad - true_lad
        passed = math.isfinite(ratio) and ratio <= allowed and sign == sign_e
    return CheckpointRecord(
        updates=m,
        merged=m,
        refused=0,
        corrections=0,
        refreshes=0,
        kappa_exact=float(kappa),
        kappa_held=nan,
        oracle_bits=int(bits),
        inverse_ratio_exact=nan,
        inverse_ratio_held=nan,
        forward_ratio_exact=nan,
        logdet_true=float(true_lad),
        logdet_tracked=float(lad),
        logdet_error_exact=float(err),
        logdet_ratio_exact=float(ratio),
        logdet_error_held=nan,
        logdet_ratio_held=nan,
        sign_tracked=int(sign),
        sign_exact=int(sign_e),
        sign_held=0,
        estimated_residual=nan,
        true_residual=nan,
        estimated_ratio=nan,
        estimated_logdet_drift=nan,
        true_logdet_drift=nan,
        allowed=float(allowed),
        passed=bool(passed),
        seconds_per_update=nan,
    )


def replay_history(
    path: str | Path,
    *,
    dtype: str = "float64",
    backend: str = "auto",
    seed: int = 0,
    max_bytes: int = MAX_HISTORY_BYTES,
) -> list[ConfigurationResult]:
    """Replay every layer of the history at ``path`` against the oracle.

    Per layer: the recorded merges (u_k, v_k) are added exactly to the recorded starting matrix
    a0; at log-spaced merge counts the oracle evaluates that exact matrix, and two tracks are
    measured: ``recorded`` (the log|det| and sign the layer held after each merge, as saved; its
    inverse was not saved) and ``reference`` (the NumPy TrackedMatrix re-tracking the same merges
    in ``dtype`` — the state dtype the layer used, float64 by default — with no guard, since
    every recorded merge was accepted). Layers without merges are skipped; a history without any
    merge raises ValueError, as do a malformed file (see :func:`load_history`, which reads it
    under the size limit ``max_bytes``) and an a0 the reference cannot factor in ``dtype``
    (naming the file and the layer).
    """
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    layers = load_history(path, max_bytes=max_bytes)
    results = []
    for name, rec in layers.items():
        k = int(rec["c"].shape[0])
        if k == 0:
            continue
        start = time.perf_counter()
        a0 = rec["a0"].astype(np.float64)
        n = a0.shape[0]
        exact = ExactMatrix.from_float(a0)
        try:
            tracked = TrackedMatrix(a0.astype(dtype), dtype=dtype, guard=Guard.off())
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(
                f"history {str(path)!r}: layer {name!r} field 'a0' (the starting "
                f"matrix) is singular in {dtype}, so it cannot be replayed "
                f"({message_line(exc)})"
            ) from None
        oracle = OracleCache(backend)
        marks = set(checkpoints(k))
        recorded, retracked = [], []
        spent = since = 0.0
        last = 0
        for j in range(k):
            u, v = rec["u"][j], rec["v"][j]
            exact.apply(u, v)
            t0 = time.perf_counter()
            tracked.update(u.astype(dtype), v.astype(dtype), on_refuse="skip")
            dt = time.perf_counter() - t0
            spent, since = spent + dt, since + dt
            m = j + 1
            if m not in marks:
                continue
            oracle.clear()
            truth = oracle.exact((), exact)
            recorded.append(
                _recorded(m, n, dtype, truth, float(rec["logabsdet"][j]), int(rec["sign"][j]))
            )
            state = TrackState(
                tracked.a.astype(np.float64),
                tracked.inverse.astype(np.float64),
                int(tracked.sign),
                float(tracked.logabsdet),
            )
            counters = {
                "merged": tracked.updates,
                "refused": tracked.refused,
                "corrections": 0,
                "refreshes": 0,
            }
            retracked.append(
                measure(
                    state,
                    dtype=dtype,
                    updates=m,
                    counters=counters,
                    exact_truth=truth,
                    exact_float=exact.to_float(),
                    held_truth=oracle.held(state.a),
                    seconds_per_update=since / (m - last),
                    seed=[seed, m],
                )
            )
            since, last = 0.0, m
        tracks = [
            TrackResult(
                "recorded",
                "-",
                "as-recorded",
                "log|det| and sign saved by P4Scheduler after each merge",
                recorded,
                summarize(recorded, k, math.nan),
            ),
            TrackResult(
                "reference",
                "cpu",
                "plain",
                f"NumPy TrackedMatrix re-tracking the recorded merges in {dtype}",
                retracked,
                summarize(retracked, k, spent),
            ),
        ]
        settings = {
            "label": name or "(root module)",
            "regime": "replay",
            "n": n,
            "updates": k,
            "dtype": dtype,
            "backend": backend,
            "seed": seed,
        }
        results.append(
            ConfigurationResult(
                settings=settings,
                regime_description=f"{k} merges recorded by P4Scheduler(record=True)",
                event=None,
                planned_sigma=[],
                tracks=tracks,
                oracle={
                    "backend": oracle.backend_used or backend,
                    "evaluations": oracle.evaluations,
                    "max_bits": oracle.max_bits,
                },
                seconds=time.perf_counter() - start,
                extra={"source": str(path), "layer": name},
            )
        )
    if not results:
        raise ValueError(f"history {str(path)!r} records no merge")
    return results
