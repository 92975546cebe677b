"""Malformed inputs to ``invlin report`` get one clear error, exit code 2 and no traceback.

Issue 21, items 3 and 5: every malformed history file names the file and the field; the loader
reads only the arrays it needs and refuses unexpected or oversized members before loading them;
report.md escapes names; a missing optional dependency and an output path that is a file are
reported before any work.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from report_args import TINY_SWEEP

from invlin.cli import main
from invlin.drift import replay
from invlin.drift.replay import MAX_HISTORY_BYTES, load_history

N, K = 3, 4


def _arrays(layer: str = "enc", **over: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a valid one-layer history (as MergeHistory.save writes them)."""
    rng = np.random.default_rng(0)
    out = {
        "format_version": np.array(1),
        f"{layer}/a0": np.eye(N) * 2.0,
        f"{layer}/u": rng.normal(size=(K, N)) * 0.1,
        f"{layer}/v": rng.normal(size=(K, N)) * 0.1,
        f"{layer}/c": np.ones(K),
        f"{layer}/logabsdet": np.full(K, N * np.log(2.0)),
        f"{layer}/sign": np.ones(K, dtype=np.int64),
        f"{layer}/step": np.arange(K, dtype=np.int64),
    }
    out.update(over)
    return out


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def _replay_error(path: Path, capsys, *extra: str) -> str:
    """Run ``invlin report replay path``; it must exit 2 with exactly one error line (a report,
    should one be written by mistake, goes beside ``path``, not into reports/)."""
    out = str(path.parent / "report")
    with pytest.raises(SystemExit) as info:
        main(["report", "replay", str(path), "--no-progress", "--output", out, *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def _bytes_of_valid_history(tmp_path: Path) -> bytes:
    return _save(tmp_path / "valid.npz", _arrays()).read_bytes()


def test_a_valid_history_loads(tmp_path):
    layers = load_history(_save(tmp_path / "h.npz", _arrays()))
    assert list(layers) == ["enc"]
    assert set(layers["enc"]) == {"a0", "u", "v", "c", "logabsdet", "sign"}  # step not read
    assert layers["enc"]["u"].shape == (K, N)


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: _write(d / "h.npz", b""), r"is empty"),
        (
            lambda d: _write(d / "h.npz", np.random.default_rng(1).bytes(4000)),
            r"is not a \.npz \(zip\) archive",
        ),
        (
            lambda d: _write(d / "h.npz", _bytes_of_valid_history(d)[:300]),
            r"is not a \.npz \(zip\) archive",
        ),
    ],
    ids=["empty", "random-bytes", "truncated-zip"],
)
def test_unreadable_files(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    line = _replay_error(path, capsys)
    assert str(path) in line
    assert re.search(expected, line), line
    assert "pickle" not in line


def test_npy_renamed_npz(tmp_path, capsys):
    np.save(tmp_path / "arr.npy", np.eye(3))
    path = tmp_path / "arr.npz"
    os.replace(tmp_path / "arr.npy", path)
    line = _replay_error(path, capsys)
    assert str(path) in line and "single .npy array" in line


def test_truncated_member_data(tmp_path, capsys):
    """A zip whose directory is intact but whose u data is cut short names the field."""
    good = _save(tmp_path / "good.npz", _arrays())
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "enc/u.npy":
                data = data[:-10]
            dst.writestr(info.filename, data)
    line = _replay_error(path, capsys)
    assert str(path) in line and "'enc'" in line and "'u'" in line


@pytest.mark.parametrize(
    ("over", "field", "expected"),
    [
        ({"enc/c": np.array(1.0)}, "c", "shape"),
        ({"enc/u": np.array([["a"] * N] * K)}, "u", "dtype"),
        ({"enc/v": np.ones((K, N), dtype=complex)}, "v", "dtype"),
        ({"enc/a0": np.ones((N, N + 1))}, "a0", "square"),
        ({"enc/u": np.ones((K + 1, N))}, "u", "shape"),
        ({"enc/sign": np.array([1.0, np.nan, 1.0, 1.0])}, "sign", "finite"),
        ({"enc/v": np.full((K, N), np.inf)}, "v", "finite"),
        ({"enc/a0": np.array([[np.nan] * N] * N)}, "a0", "finite"),
        ({"format_version": np.array(7)}, "format_version", "7"),
    ],
    ids=[
        "0-d-c",
        "string-u",
        "complex-v",
        "non-square-a0",
        "u-rows",
        "nan-sign",
        "inf-v",
        "nan-a0",
        "format-version",
    ],
)
def test_malformed_fields_name_the_file_layer_and_field(tmp_path, capsys, over, field, expected):
    path = _save(tmp_path / "h.npz", _arrays(**over))
    line = _replay_error(path, capsys)
    assert str(path) in line and f"'{field}'" in line and expected in line, line
    if field != "format_version":
        assert "'enc'" in line


def test_object_array_is_refused_without_unpickling(tmp_path, capsys):
    path = _save(tmp_path / "h.npz", _arrays(**{"enc/u": np.array([[object()] * N] * K)}))
    line = _replay_error(path, capsys)
    assert "'u'" in line and "dtype" in line and "allow_pickle" not in line


def test_a_key_without_a_slash_is_named(tmp_path, capsys):
    path = _save(tmp_path / "h.npz", {**_arrays(), "junk": np.zeros(2)})
    line = _replay_error(path, capsys)
    assert str(path) in line and "'junk'" in line and "<layer>/<field>" in line
    assert "not a MergeHistory" in line and "unpack" not in line


def test_a_missing_field_is_named(tmp_path, capsys):
    arrays = _arrays()
    del arrays["enc/logabsdet"]
    line = _replay_error(_save(tmp_path / "h.npz", arrays), capsys)
    assert "'enc'" in line and "lacks" in line and "logabsdet" in line


def test_singular_a0_names_the_file_and_the_layer(tmp_path, capsys):
    path = _save(tmp_path / "h.npz", _arrays(**{"enc/a0": np.zeros((N, N))}))
    line = _replay_error(path, capsys)
    assert str(path) in line and "'enc'" in line and "'a0'" in line and "singular" in line


def test_unexpected_member_is_refused_before_it_is_loaded(tmp_path, capsys, monkeypatch):
    """A small history carrying an extra 64 MiB array (a few KB compressed): refused by its name
    in the zip directory, without reading the array."""
    path = _save(tmp_path / "h.npz", _arrays())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("enc/extra.npy", "w", force_zip64=True) as f:
            count = (64 << 20) // 8
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (count,)}
            )
            chunk = bytes(1 << 22)
            for _ in range(16):
                f.write(chunk)
    assert path.stat().st_size < 1 << 20
    reads = []
    real = np.lib.format.read_array
    monkeypatch.setattr(
        np.lib.format, "read_array", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    line = _replay_error(path, capsys)
    assert "'enc/extra'" in line and "unexpected" in line
    assert reads == []


def test_oversized_history_is_refused_from_the_zip_directory(tmp_path, monkeypatch):
    path = _save(tmp_path / "h.npz", _arrays())
    reads = []
    real = np.lib.format.read_array
    monkeypatch.setattr(
        np.lib.format, "read_array", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    with pytest.raises(ValueError, match=r"h\.npz.* holds \d+ bytes .* limit of 100 bytes"):
        load_history(path, max_bytes=100)
    assert reads == []
    assert MAX_HISTORY_BYTES >= 1 << 30  # the documented default admits real histories
    assert load_history(path)["enc"]["a0"].shape == (N, N)


def test_max_bytes_is_a_command_line_option(tmp_path, capsys):
    path = _save(tmp_path / "h.npz", _arrays())
    line = _replay_error(path, capsys, "--max-bytes", "100")
    assert "limit of 100 bytes" in line and "--max-bytes" in line


def test_markdown_escapes_layer_names(tmp_path, monkeypatch):
    """A layer name full of Markdown syntax appears literally in report.md's tables."""
    from invlin.report import writer
    from invlin.report.document import Block
    from invlin.report.markdown import render_markdown

    name = "enc*x*_[y](http://e)<b>`z`|w"
    md = render_markdown(
        [Block("heading", f"report: {name}"), Block("table", header=("layer",), rows=((name,),))]
    )
    escaped = r"enc\*x\*\_\[y\](http://e)\<b\>\`z\`\|w"
    assert md.count(escaped) == 2, md
    # End to end: a replayed history's layer name is escaped in report.md.
    monkeypatch.setattr(writer, "render_figures", lambda data: {})
    path = _save(tmp_path / "h.npz", _arrays(layer=name))
    out = tmp_path / "rep"
    # The synthetic history records a constant log|det| while its merges change det: the
    # replay rightly finds that unexpected failure (exit 1); the report is written all the same.
    assert main(["report", "replay", str(path), "--output", str(out), "--no-progress"]) == 1
    report = (out / "report.md").read_text()
    assert escaped in report and f"| {name} |" not in report


def test_code_block_fence_outlasts_backticks_in_the_text():
    from invlin.report.document import Block
    from invlin.report.markdown import render_markdown

    md = render_markdown([Block("code", "invlin report replay a```b.npz")])
    assert md.startswith("````\n") and md.rstrip().endswith("\n````")


# ---------------------------------------------------------------- the sweep's own arguments


SWEEP = TINY_SWEEP


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if a sweep or replay starts: these errors must come before any work."""
    from invlin.drift import executors

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(executors, "run_sweep", refuse)
    monkeypatch.setattr(replay, "replay_history", refuse)


def test_dask_executor_without_dask_is_a_clear_error(monkeypatch, capsys, no_work):
    for mod in ("distributed", "dask"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    with pytest.raises(SystemExit) as info:
        main([*SWEEP, "--executor", "dask"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--executor dask needs dask.distributed" in err and "pip install" in err


@pytest.mark.parametrize("kind", ["sweep", "replay"])
@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_output_that_is_a_file_fails_before_any_work(tmp_path, capsys, no_work, kind, where):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    output = blocker if where == "file" else blocker / "sub"
    history = _save(tmp_path / "h.npz", _arrays())
    args = SWEEP if kind == "sweep" else ["report", "replay", str(history), "--no-progress"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--output", str(output)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--output" in err and str(blocker) in err
    assert blocker.read_text() == "keep me"
