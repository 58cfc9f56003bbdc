"""seedance-otel: connection-fault snapshots for aiohttp, httpx, httpx2 and asyncio.

At every connection reset, DNS timeout and ALPN mismatch, record what the
exception cannot tell: which connection, reused or fresh, idle how long, how
old, which peer IP, which ALPN, which trace. See the README for the three ways
to turn it on.
"""

from ._api import diagnose, flush, instrument, peer_stats, snapshots, stats, uninstrument
from ._snapshot import FaultKind, ResetContextSnapshot
from ._version import __version__
from .diagnosis import Finding, Severity
from .instrumentor import SeedanceInstrumentor

__all__ = [
    "FaultKind",
    "Finding",
    "ResetContextSnapshot",
    "SeedanceInstrumentor",
    "Severity",
    "__version__",
    "diagnose",
    "flush",
    "instrument",
    "peer_stats",
    "snapshots",
    "stats",
    "uninstrument",
]
