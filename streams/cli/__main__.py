"""``python -m streams.cli``: the same as the ``repricer`` command."""

import sys

from repricer.streams.cli import main

sys.exit(main())
