"""iis-portscan: the Sentinel rule 'High count of connections by client IP on many ports', on a stream."""

from __future__ import annotations

__version__ = "0.1.0"
