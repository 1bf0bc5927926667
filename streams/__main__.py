"""`python -m streams` runs the iis-portscan command line."""

from __future__ import annotations

import sys

from streams.cli import main

sys.exit(main())
