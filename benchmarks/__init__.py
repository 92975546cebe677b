"""invlin benchmark suite: ratios to dense anchors, run by ``nox -s bench`` (not by CI)."""
