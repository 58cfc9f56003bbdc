"""The client library behind a plain asyncio connection: found once, named in the fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel.diagnosis import _rules as rules
from seedance_otel.exporting.attributes import snapshot_from_attributes, snapshot_to_attributes
from seedance_otel.instrumentation.asyncio_clients import KNOWN_CLIENTS, stream_client

from faultservers import Action, HttpFaultServer
from snapshot_factory import make_snapshot

CLIENT_CODE = """
async def query(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    try:
        return await asyncio.wait_for(reader.read(1024), 5)
    except ConnectionResetError as exc:
        return exc
    finally:
        writer.close()
"""


def test_the_client_is_the_module_that_opened_the_connection(instrumented):
    """Code in ``fakedriver.net`` opens the stream through asyncio: ``fakedriver``."""
    namespace = {"__name__": "fakedriver.net", "asyncio": asyncio}
    exec(compile(CLIENT_CODE, "fakedriver/net.py", "exec"), namespace)
    with HttpFaultServer(lambda info: Action.RST) as server:
        result = asyncio.run(namespace["query"](server.port))  # type: ignore[operator]
    assert isinstance(result, ConnectionResetError)
    [snap] = [s for s in seedance_otel.snapshots() if s.library == "asyncio"]
    assert snap.client_library == "fakedriver"


def stream_reset(idle: float, client: str | None, **fields: Any):
    values: dict[str, Any] = dict(
        library="asyncio",
        client_library=client,
        server_address="db.test",
        server_port=5432,
        error_type="EOF",
        connection_reused=True,
        connection_idle_s=idle,
    )
    return make_snapshot(**{**values, **fields})


def test_known_and_unknown_clients_each_get_their_own_fix():
    snaps = [
        stream_reset(9.0, "asyncpg", peer_reuse_ok_max_idle_s=5.0, peer_reuse_ok_count=4),
        stream_reset(9.5, "nats"),
    ]
    [finding] = rules.stale_keepalive(snaps, {})
    keepalive = finding.params["recommended_keepalive_s"]
    assert keepalive == 4.0
    lines = finding.fix.splitlines()
    assert lines[0] == (
        "asyncpg: asyncpg.create_pool(max_inactive_connection_lifetime=4) (default 300 s): "
        "the pool closes connections idle longer than that before the server (or a proxy "
        "such as PgBouncer, or a load balancer) drops them."
    )
    assert lines[1].startswith("nats: close, or ping, connections idle for more than 4 s")
    assert "httpx" not in finding.fix and "aiohttp" not in finding.fix


def test_plain_asyncio_idle_closes_measure_the_timeout():
    """The FIN is timestamped on arrival: the close's idle time is the timeout itself."""
    snaps = [
        stream_reset(
            idle, "redis", kind=FaultKind.PEER_CLOSED_IDLE, phase="idle", connection_reused=None
        )
        for idle in (2.4, 2.7)
    ]
    [finding] = rules.stale_keepalive(snaps, {})
    assert finding.evidence["estimate_basis"] == "idle_close"
    assert finding.params["peer_idle_timeout_s"] == pytest.approx(2.4)
    assert finding.fix.startswith("redis-py: redis.asyncio.Redis(health_check_interval=1.9)")


def test_every_known_client_is_found_by_its_package():
    for client in KNOWN_CLIENTS:
        assert stream_client(client.package) is client
        assert "9" in client.idle_fix("9")
    assert stream_client(None) is None and stream_client("myapp") is None


def test_the_new_fields_cross_the_wire_and_json_unchanged():
    snap = stream_reset(3.5, "redis", peer_addresses_tried=("127.0.0.2", "127.0.0.1"))
    attributes = snapshot_to_attributes(snap)
    assert attributes["seedance.client.library"] == "redis"
    assert attributes["seedance.peer.addresses_tried"] == ["127.0.0.2", "127.0.0.1"]
    back = snapshot_from_attributes(attributes, trace_id=snap.trace_id, span_id=snap.span_id)
    assert back == snap
    assert ResetContextSnapshot.from_dict(snap.to_dict()) == snap
