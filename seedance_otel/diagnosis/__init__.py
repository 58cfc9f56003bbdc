"""Turn connection-fault snapshots into findings: the cause, and the fix.

``diagnose(snapshots, peer_stats=...)`` runs pure rules (one per cause, in
``_rules``) over snapshots from a JSONL file, this process's ring
(``seedance_otel.diagnose()`` passes it) or anywhere else, plus the
per-peer record of successful reuses, and returns :class:`Finding` objects
such as "peer closes idle connections after ~8.0 s: set the client's
keep-alive below 6.4 s". ``seedance-otel diagnose FILE`` is the same
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
