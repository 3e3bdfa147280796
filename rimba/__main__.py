"""`python -m rimba`: the `rimba` command (rimba.app.cli)."""

import sys

from rimba.app.cli import main

sys.exit(main())
