"""``python -m fullduplex``: the command-line tools."""

from fullduplex.cli import main

raise SystemExit(main())
