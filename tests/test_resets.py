"""Connection resets on real loopback sockets, for aiohttp, httpx async and httpx sync.

Each test makes a real peer misbehave (RST, FIN, a middlebox forgetting an
idle connection) and checks the snapshot against what the server saw: the
connection's ports, how long it sat idle, whether it was reused.
"""

from __future__ import annotations

import pytest

import seedance_otel
from seedance_otel import FaultKind

from clients import CLIENTS, HTTPX2_CLIENTS, library_of, run_steps
from faultservers import Action, HttpFaultServer

IDLE_S = 0.6
MIDDLEBOX_S = 0.3
# A loaded 2-core machine can stretch sleeps; idle times are checked within this.
TOLERANCE_S = 0.25


def resets(library: str) -> list[seedance_otel.ResetContextSnapshot]:
    return [
        s
        for s in seedance_otel.snapshots()
        if s.kind is FaultKind.CONNECTION_RESET and s.library == library
    ]


@pytest.mark.parametrize("client", [*CLIENTS, *HTTPX2_CLIENTS])
@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_middlebox_forgets_idle_connection(
    instrumented, client, family, tls, server_ssl_context, client_ssl_context
):
    """The classic: a reused connection idle past a middlebox timeout meets a RST."""
    with HttpFaultServer(
        host=family,
        middlebox_idle_s=MIDDLEBOX_S,
        ssl_context=server_ssl_context if tls else None,
    ) as server:
        results = run_steps(
            client,
            [
                ("GET", server.url("/first")),
                ("sleep", IDLE_S),
                ("POST", server.url("/second?token=s3cret#frag")),
            ],
            ssl_context=client_ssl_context if tls else None,
        )
        client_ports = list(server.client_ports)
    assert results[0] == 200
    assert isinstance(results[1], Exception), results
    snaps = resets(library_of(client))
    assert len(snaps) == 1, snaps
    snap = snaps[0]
    assert snap.phase == "request"
    assert snap.connection_reused is True
    assert snap.connection_requests == 1
    assert snap.connection_idle_s is not None
    assert IDLE_S - 0.05 <= snap.connection_idle_s <= IDLE_S + TOLERANCE_S
    assert snap.connection_age_s is not None and snap.connection_age_s >= snap.connection_idle_s
    assert snap.peer_address == family
    assert snap.peer_port == server.port
    assert snap.local_port == client_ports[0]
    assert snap.server_address == family
    assert snap.server_port == server.port
    assert snap.http_method == "POST"
    assert snap.url is not None and "s3cret" not in snap.url and "#" not in snap.url
    assert snap.url.endswith("/second?token=REDACTED")
    assert snap.timestamp_ns > 0
    assert snap.error_type and snap.error_message
    if tls:
        assert snap.tls_version in ("TLSv1.2", "TLSv1.3")
        # A user SSLContext made after instrument(): aiohttp offers nothing,
        # httpx sets http/1.1 on it.
        expected = () if client == "aiohttp" else ("http/1.1",)
        assert snap.alpn_offered == expected
    else:
        assert snap.tls_version is None
        assert snap.alpn_offered is None
    # Over TLS the sync client reports a RST as EOF (no errno); otherwise 104.
    if not (tls and client.endswith("-sync")):
        assert snap.errno in (104, 32), snap


@pytest.mark.parametrize("client", CLIENTS)
def test_eof_before_response(instrumented, client):
    """The server closes (FIN) instead of answering a POST on a fresh connection."""
    with HttpFaultServer(lambda info: Action.FIN) as server:
        results = run_steps(client, [("POST", server.url("/x"))])
    assert isinstance(results[0], Exception)
    snaps = resets(library_of(client))
    assert len(snaps) == 1
    snap = snaps[0]
    assert snap.phase == "request"
    assert snap.connection_reused is False
    assert snap.connection_requests == 0
    assert snap.connection_idle_s is None
    assert snap.errno is None
    expected_type = {
        "aiohttp": "aiohttp.client_exceptions.ServerDisconnectedError",
        "httpx-async": "httpcore.RemoteProtocolError",
        "httpx-sync": "httpcore.RemoteProtocolError",
    }[client]
    assert snap.error_type == expected_type


@pytest.mark.parametrize("client", CLIENTS)
def test_rst_mid_body_is_response_phase(instrumented, client):
    with HttpFaultServer(lambda info: Action.RST_MID_BODY) as server:
        results = run_steps(client, [("POST", server.url("/body"))])
    assert isinstance(results[0], Exception)
    snaps = resets(library_of(client))
    assert len(snaps) == 1
    assert snaps[0].phase == "response"
    assert snaps[0].peer_port == server.port


@pytest.mark.parametrize("client", CLIENTS)
def test_rst_on_accept(instrumented, client):
    """RST right after accept: a connect error or a read error, both a reset."""
    with HttpFaultServer(accept_action=Action.RST) as server:
        results = run_steps(client, [("POST", server.url("/x"))])
    assert isinstance(results[0], Exception)
    snaps = resets(library_of(client))
    assert len(snaps) >= 1
    for snap in snaps:
        assert snap.phase in ("connect", "request")
        assert snap.connection_reused in (False, None)
        assert snap.server_port == server.port


def test_aiohttp_silent_retry_still_recorded(instrumented):
    """aiohttp retries an idempotent GET after a reset on a reused connection.

    The caller sees 200; the snapshot of the first attempt is the early warning.
    """
    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:
        results = run_steps(
            "aiohttp", [("GET", server.url("/a")), ("sleep", IDLE_S), ("GET", server.url("/b"))]
        )
        assert server.connections == 2
    assert results == [200, 200]
    snaps = resets("aiohttp")
    assert len(snaps) == 1
    assert snaps[0].connection_reused is True
    assert snaps[0].http_method == "GET"
    assert snaps[0].connection_idle_s is not None
    assert snaps[0].connection_idle_s >= IDLE_S - 0.05


def test_aiohttp_blocked_loop_reuses_dead_connection(instrumented):
    """The server closes (FIN) while aiohttp's loop is blocked; the POST meets it."""
    with HttpFaultServer(idle_close_s=0.2) as server:
        results = run_steps(
            "aiohttp", [("GET", server.url("/a")), ("block", 0.6), ("POST", server.url("/b"))]
        )
    assert results[0] == 200
    assert isinstance(results[1], Exception)
    snaps = resets("aiohttp")
    assert len(snaps) == 1
    assert snaps[0].connection_reused is True
    assert snaps[0].connection_idle_s is not None and snaps[0].connection_idle_s >= 0.55


@pytest.mark.parametrize("client", CLIENTS)
def test_successful_reuse_recorded_per_peer(instrumented, client):
    with HttpFaultServer() as server:
        results = run_steps(
            client,
            [
                ("GET", server.url("/a")),
                ("sleep", 0.3),
                ("GET", server.url("/b")),
                ("GET", server.url("/c")),
            ],
        )
        assert server.connections == 1
    assert results == [200, 200, 200]
    assert resets(library_of(client)) == []
    peer = seedance_otel.peer_stats()[("127.0.0.1", server.port)]
    assert peer["reuse_ok_count"] == 2
    assert 0.25 <= peer["reuse_ok_max_idle_s"] <= 0.3 + TOLERANCE_S


@pytest.mark.parametrize("client", CLIENTS)
def test_peer_closing_idle_connection_is_evidence_not_error(instrumented, client):
    """A visible keep-alive close: both libraries reconnect; we record the close."""
    with HttpFaultServer(idle_close_s=0.3) as server:
        results = run_steps(
            client, [("GET", server.url("/a")), ("sleep", 0.6), ("GET", server.url("/b"))]
        )
    assert results == [200, 200]
    assert resets(library_of(client)) == []
    closes = [s for s in seedance_otel.snapshots() if s.kind is FaultKind.PEER_CLOSED_IDLE]
    assert len(closes) == 1
    close = closes[0]
    assert close.phase == "idle"
    assert close.trace_id is None
    assert close.connection_idle_s is not None
    if client == "aiohttp":
        # aiohttp sees the FIN when it arrives: the idle time is the server's timeout.
        assert 0.25 <= close.connection_idle_s <= 0.3 + TOLERANCE_S
    else:
        # httpcore notices at the next request: an upper bound.
        assert 0.3 <= close.connection_idle_s <= 0.6 + TOLERANCE_S


@pytest.mark.parametrize("client", CLIENTS)
def test_close_race_every_failure_the_caller_sees_has_its_snapshot(instrumented, client):
    """Reuse a connection right when the server closes it (the keep-alive race).

    Whether a given try fails depends on microseconds; the test does not need a
    failure to happen, it checks that whatever the caller saw is what we
    recorded: one reset snapshot per failure, none for a success.
    """
    idle_close_s = 0.15
    offsets_ms = [-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 5]
    failures = 0
    with HttpFaultServer(idle_close_s=idle_close_s) as server:
        for offset in offsets_ms:
            results = run_steps(
                client,
                [
                    ("GET", server.url("/warm")),
                    ("sleep", idle_close_s + offset / 1000),
                    ("POST", server.url("/race")),
                ],
            )
            assert results[0] == 200
            failures += isinstance(results[1], Exception)
    race_resets = [s for s in resets(library_of(client)) if s.url and s.url.endswith("/race")]
    assert len(race_resets) == failures
    assert all(s.connection_reused for s in race_resets)
