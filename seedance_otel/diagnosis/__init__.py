"""Turn connection-fault snapshots into findings: the cause, and the fix.

``diagnose(snapshots)`` runs pure rules (one per cause, in ``_rules``) over
snapshots from this process's ring, a JSONL file or anywhere else, plus the
per-peer record of successful reuses, and returns :class:`Finding` objects
such as "peer closes idle connections after ~8.0 s: set httpx
``keepalive_expiry`` below 8 s". ``seedance-otel diagnose FILE`` is the same
from the command line (``cli``).
"""

from ._engine import diagnose
from ._estimate import IdleSamples, IdleTimeoutEstimate, estimate_idle_timeout
from ._finding import Finding, Severity
from ._jsonl import JsonlSnapshots, MalformedLine, read_snapshots

__all__ = [
    "Finding",
    "IdleSamples",
    "IdleTimeoutEstimate",
    "JsonlSnapshots",
    "MalformedLine",
    "Severity",
    "diagnose",
    "estimate_idle_timeout",
    "read_snapshots",
]
