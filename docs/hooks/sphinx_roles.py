"""MkDocs hook: show the docstrings' Sphinx roles (:func:`x`, :class:`~a.b.C`) as plain code.

The docstrings are written for Python's help() and doctest, in reST style; mkdocstrings renders
them as Markdown, where a role stays as literal text before the code span.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["on_page_content"]

ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj|const):(<code>)(~?)([^<]*)(</code>)")


def shorten(match: re.Match[str]) -> str:
    """``~a.b.C`` shows as ``C`` (Sphinx's meaning of the tilde); anything else as written."""
    target = match.group(3)
    if match.group(2):
        target = target.rsplit(".", 1)[-1]
    return f"{match.group(1)}{target}{match.group(4)}"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite the roles of one rendered page."""
    return ROLE.sub(shorten, html)
