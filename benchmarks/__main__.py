"""`python -m benchmarks` = `make bench`."""

from __future__ import annotations

import sys

from benchmarks.bench import main

sys.exit(main())
