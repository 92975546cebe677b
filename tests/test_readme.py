"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_first_commands_are_install_and_tests():
    bash = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)[0].splitlines()
    assert bash[0].startswith("pip install") and "invlin report" in bash[0]
    assert "nox -s tests" in bash[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "nox -s tests" in ci
