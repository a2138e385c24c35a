"""``python -m fastops``: the command line (``fastops.cli``)."""

from .cli import main

raise SystemExit(main())
