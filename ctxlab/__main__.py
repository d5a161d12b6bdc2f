"""``python -m ctxlab``: the same as the ``ctxlab`` command."""

import sys

from ctxlab.cli import main

sys.exit(main())
