"""The documentation pages: their Python examples run, their commands exist, the site builds."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_examples import blocks, check_commands_against_help, help_text, run_python_block

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
EXAMPLES = [
    pytest.param(page, i, id=f"{page.relative_to(ROOT / 'docs')}#{i}")
    for page in PAGES
    for i, _ in enumerate(blocks(page.read_text(), "python"))
]


def test_docs_have_pages_and_examples():
    names = {p.name for p in PAGES}
    for page in ("index.md", "getting-started.md", "validating.md", "judging.md"):
        assert page in names
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(("page", "index"), EXAMPLES)
def test_docs_python_example_runs(page: Path, index: int, invlin_validate) -> None:
    block = blocks(page.read_text(), "python")[index]
    run_python_block(
        block, f"{page.name} python block {index}", {"invlin_validate": invlin_validate}
    )


def test_docs_commands_exist():
    for page in PAGES:
        if "invlin " in "".join(blocks(page.read_text(), "bash")):
            check_commands_against_help(page.read_text())
    assert "usage: invlin report" in help_text("report")


def test_docs_api_pages_name_importable_modules():
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for line in page.read_text().splitlines():
            if line.startswith("::: "):
                module = line[4:].strip()
                assert importlib.util.find_spec(module) is not None, f"{page.name}: {module}"


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install '.[docs]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "nn.html").is_file()
