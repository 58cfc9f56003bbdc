"""Hand-built snapshots for the diagnosis tests: a plain reset unless told otherwise."""

from __future__ import annotations

from typing import Any

from seedance_otel import FaultKind, ResetContextSnapshot


def make_snapshot(
    kind: FaultKind = FaultKind.CONNECTION_RESET, **fields: Any
) -> ResetContextSnapshot:
    """An httpx reset of ``api.test:443`` mid-request; ``fields`` override any field."""
    defaults: dict[str, Any] = dict(
        kind=kind,
        timestamp_ns=1_700_000_000_000_000_000,
        library="httpx",
        phase="request",
        error_type="httpcore.ReadError",
        error_message="[Errno 104] Connection reset by peer",
        server_address="api.test",
        server_port=443,
    )
    return ResetContextSnapshot(**{**defaults, **fields})
