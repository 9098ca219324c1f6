"""``python -m pullpush.demo``: the chunk-analysis demo (``--help`` for the options)."""

from ._cli import main

raise SystemExit(main())
