"""``python -m attnapps COMMAND ...``: the ``attnapps`` command (:mod:`attnapps.cli`)."""

import sys

from attnapps.cli import main

sys.exit(main())
