"""``python -m invlin``: the ``invlin`` command, for environments without its script on PATH."""

from invlin.cli import main

raise SystemExit(main())
