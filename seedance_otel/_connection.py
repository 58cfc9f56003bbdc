"""Per-connection history and per-peer records, kept cheaply on the hot path.

A :class:`ConnectionHistory` is attached to each connection object when the
connection is made (an aiohttp ``ResponseHandler``, an httpcore network
stream, an asyncio transport's protocol). It answers the questions a bare
exception cannot: was this connection reused, how long had it sat idle, how
old is it, how many requests did it serve, which peer IP and local port, which
TLS version and ALPN. Addresses are read from the socket once, when the
connection is made (httpcore reads them lazily and fails after a RST), and
split into host and port only when a fault's snapshot needs them.

A :class:`PeerStats` per ``(server_address, server_port)`` keeps the idle
times of *successful* reuses (and of peer closes of idle connections): the
diagnosis brackets a peer's idle timeout between the longest idle that still
worked and the shortest that failed.
"""

from __future__ import annotations

import bisect
import dataclasses
import socket
import sys
import threading
import time
from typing import Any

from ._frozen import fast_constructor

__all__ = [
    "IDLE_BUCKETS_S",
    "ConnectionFields",
    "ConnectionHistory",
    "PeerRegistry",
    "PeerStats",
    "SocketFacts",
    "new_connection_fields",
    "socket_facts",
]

# Bucket bounds that resolve common idle timeouts (nginx 75 s, ALB 60/350 s,
# Node 5 s, many proxies 1-15 s). Shared with the idle_before_fault histogram.
IDLE_BUCKETS_S: tuple[float, ...] = (
    0.5,
    1.0,
    2.0,
    4.0,
    5.0,
    8.0,
    10.0,
    15.0,
    30.0,
    60.0,
    75.0,
    120.0,
    300.0,
    350.0,
    600.0,
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFields:
    """The connection's part of a snapshot: its socket, its history, its TLS.

    What a history says as of a fault (:meth:`ConnectionHistory.fault_fields`),
    or, for a connect that failed before any history existed, what the socket
    that was tried says (:meth:`SocketFacts.connection_fields`).
    """

    peer_address: str | None = None
    peer_port: int | None = None
    local_port: int | None = None
    socket_cookie: int | None = None
    reused: bool | None = None
    idle_s: float | None = None
    age_s: float | None = None
    requests: int | None = None
    alpn_offered: tuple[str, ...] | None = None
    alpn_negotiated: str | None = None
    tls_version: str | None = None
    peer_reuse_ok_max_idle_s: float | None = None
    peer_reuse_ok_count: int | None = None
    peer_addresses_tried: tuple[str, ...] | None = None
    """A failed connect's addresses, in order, when it tried more than one."""


new_connection_fields = fast_constructor(ConnectionFields)
"""Builds :class:`ConnectionFields` on the capture path (see :mod:`seedance_otel._frozen`)."""


SO_COOKIE = getattr(socket, "SO_COOKIE", 57 if sys.platform.startswith("linux") else None)
_BYTEORDER = sys.byteorder


class PeerStats:
    """What we learned about one peer's keep-alive behaviour.

    Successful reuses are recorded by ``ConnectionHistory.end_request_ok``
    (inline: it runs on every reused request), which only counts, keeps the
    maximum and writes one slot of a small ring of recent samples
    (``reuse_ok_recent``, indexed by count modulo ``RECENT``); summaries are
    computed when asked for.
    """

    __slots__ = (
        "idle_close_count",
        "idle_close_max_s",
        "idle_close_min_s",
        "retried_after_reset_count",
        "reuse_ok_count",
        "reuse_ok_max_idle_s",
        "reuse_ok_recent",
    )

    RECENT = 64

    def __init__(self) -> None:
        self.reuse_ok_count = 0
        self.reuse_ok_max_idle_s = 0.0
        self.reuse_ok_recent: list[float | None] = [None] * self.RECENT
        self.idle_close_count = 0
        self.idle_close_min_s: float | None = None
        self.idle_close_max_s: float | None = None
        self.retried_after_reset_count = 0
        """Requests that met a reset on a reused connection and were sent again,
        in the same span, on a new connection: retried by the client (an SDK),
        so the caller saw a delay, not the error."""

    def record_reuse_ok(self, idle_s: float) -> None:
        """A reuse after ``idle_s`` idle got its answer (the inline copy in
        ``ConnectionHistory.end_request_ok`` saves a call per HTTP request)."""
        count = self.reuse_ok_count
        self.reuse_ok_recent[count % self.RECENT] = idle_s
        self.reuse_ok_count = count + 1
        if idle_s > self.reuse_ok_max_idle_s:
            self.reuse_ok_max_idle_s = idle_s

    def record_idle_close(self, idle_s: float) -> None:
        """The peer closed a connection that had been idle for ``idle_s``."""
        self.idle_close_count += 1
        if self.idle_close_min_s is None or idle_s < self.idle_close_min_s:
            self.idle_close_min_s = idle_s
        if self.idle_close_max_s is None or idle_s > self.idle_close_max_s:
            self.idle_close_max_s = idle_s

    def recent_reuse_ok_idle_s(self) -> list[float]:
        return sorted(v for v in self.reuse_ok_recent if v is not None)

    def as_dict(self) -> dict[str, Any]:
        recent = self.recent_reuse_ok_idle_s()
        buckets = [0] * (len(IDLE_BUCKETS_S) + 1)
        for value in recent:
            buckets[bisect.bisect_left(IDLE_BUCKETS_S, value)] += 1
        return {
            "reuse_ok_count": self.reuse_ok_count,
            "reuse_ok_max_idle_s": self.reuse_ok_max_idle_s,
            "reuse_ok_recent_idle_s": recent,
            "reuse_ok_recent_buckets": dict(
                zip([*map(str, IDLE_BUCKETS_S), "+Inf"], buckets, strict=True)
            ),
            "idle_close_count": self.idle_close_count,
            "idle_close_min_s": self.idle_close_min_s,
            "idle_close_max_s": self.idle_close_max_s,
            "retried_after_reset_count": self.retried_after_reset_count,
        }


class PeerRegistry:
    """``PeerStats`` by ``(host, port)``; bounded, oldest peer forgotten first."""

    __slots__ = ("_lock", "_max_peers", "_peers")

    def __init__(self, max_peers: int = 1024) -> None:
        self._peers: dict[tuple[str, int], PeerStats] = {}
        self._max_peers = max_peers
        self._lock = threading.Lock()

    def get(self, host: str | None, port: int | None) -> PeerStats:
        key = (host or "", port or 0)
        stats = self._peers.get(key)
        if stats is not None:
            return stats
        with self._lock:
            stats = self._peers.get(key)
            if stats is None:
                if len(self._peers) >= self._max_peers:
                    del self._peers[next(iter(self._peers))]
                stats = self._peers[key] = PeerStats()
            return stats

    def snapshot(self) -> dict[tuple[str, int], dict[str, Any]]:
        with self._lock:
            items = list(self._peers.items())
        return {key: stats.as_dict() for key, stats in items}

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


class SocketFacts:
    """A connection's socket addresses, as the socket gave them, and its ``SO_COOKIE``.

    The address tuples are kept as they are and split into host and port
    only when read, which is on a fault: a connection that never faults (or
    whose fault a storm only counts) costs no splitting.
    """

    __slots__ = ("peername", "socket_cookie", "sockname")

    def __init__(
        self, peername: Any = None, sockname: Any = None, socket_cookie: int | None = None
    ) -> None:
        self.peername = peername
        self.sockname = sockname
        self.socket_cookie = socket_cookie

    def peer(self) -> tuple[str | None, int | None]:
        """(peer address, peer port)."""
        return _split_address(self.peername)

    @property
    def peer_address(self) -> str | None:
        return self.peer()[0]

    @property
    def local_port(self) -> int | None:
        return _split_address(self.sockname)[1]

    def connection_fields(self, alpn_offered: tuple[str, ...] | None = None) -> ConnectionFields:
        """A snapshot's connection part for a socket that never got a history."""
        peer_address, peer_port = self.peer()
        return new_connection_fields(
            peer_address=peer_address,
            peer_port=peer_port,
            local_port=self.local_port,
            socket_cookie=self.socket_cookie,
            alpn_offered=alpn_offered,
        )


_NO_SOCKET = SocketFacts()
"""What a history knows of its socket before (or without) reading it. Shared
by every such history: a history's ``socket`` is replaced, never
changed in place."""


def _split_address(addr: Any) -> tuple[str | None, int | None]:
    """(host, port) of a socket address tuple; ``(None, None)`` for anything else."""
    if type(addr) is tuple and len(addr) >= 2:
        host, port = addr[0], addr[1]
        if type(host) is str and type(port) is int:  # what a socket says: as it is
            return host, port
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return (str(host) if host is not None else None), (
            int(port) if isinstance(port, int) else None
        )
    return None, None


def socket_facts(
    sock: Any, peername: Any = None, sockname: Any = None, into: SocketFacts | None = None
) -> SocketFacts:
    """Peer/local address and ``SO_COOKIE`` of ``sock`` (any of them may be missing).

    ``peername``/``sockname`` may be passed when the caller already has them
    (asyncio transports cache both at creation). ``into``: fill that one
    instead of building another (a connect attempt's, as it ends: one call
    fewer per new connection). Never raises.
    """
    cookie = None
    if sock is not None:
        if peername is None:
            try:
                peername = sock.getpeername()
            except (OSError, AttributeError):
                peername = None
        if sockname is None:
            try:
                sockname = sock.getsockname()
            except (OSError, AttributeError):
                sockname = None
        if SO_COOKIE is not None:
            try:
                raw = sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
                cookie = int.from_bytes(raw, _BYTEORDER) or None
            except (OSError, AttributeError, TypeError, ValueError):
                cookie = None
    if into is None:
        return SocketFacts(peername, sockname, cookie)
    into.peername, into.sockname, into.socket_cookie = peername, sockname, cookie
    return into


class ConnectionHistory:
    """The life of one connection so far. Mutated only by its own hooks.

    ``begin_request`` / ``end_request_ok`` run on every request and touch a few
    slots each; everything else runs once per connection or only on a fault.
    """

    __slots__ = (
        "__weakref__",
        "active",
        "alpn_negotiated",
        "alpn_offered",
        "broken",
        "closed",
        "established_at",
        "idle_before_request_s",
        "idle_since",
        "library",
        "peer",
        "request",
        "requests_completed",
        "reused_for_request",
        "server_address",
        "server_port",
        "socket",
        "tls_version",
    )

    def __init__(
        self,
        library: str,
        server_address: str | None,
        server_port: int | None,
        peer: PeerStats,
        established_at: float | None = None,
    ) -> None:
        self.library = library
        self.server_address = server_address
        self.server_port = server_port
        self.peer = peer
        self.established_at = time.monotonic() if established_at is None else established_at
        self.idle_since: float | None = None
        self.requests_completed = 0
        self.active = 0
        self.broken = False
        self.closed = False
        """A request on it failed: the library is closing it, not the peer."""
        self.idle_before_request_s: float | None = None
        self.reused_for_request = False
        self.request: Any = None
        self.socket = _NO_SOCKET
        self.tls_version: str | None = None
        self.alpn_offered: tuple[str, ...] | None = None
        self.alpn_negotiated: str | None = None

    def set_tls(self, ssl_object: Any, alpn_offered: tuple[str, ...] | None) -> None:
        """TLS version and negotiated ALPN from an ``ssl.SSLObject``/``SSLSocket``."""
        self.alpn_offered = alpn_offered
        if ssl_object is None:
            return
        try:
            self.tls_version = ssl_object.version()
            self.alpn_negotiated = ssl_object.selected_alpn_protocol()
        except (AttributeError, ValueError, OSError):
            pass

    # -- hot path ---------------------------------------------------------

    def begin_request(self, now: float, request: Any = None, multiplexed: bool = False) -> None:
        """A request starts on this connection.

        An HTTP/1.1 connection carries one request at a time, so a start sets
        ``active`` to 1 (a start the library then refused must not leave the
        connection looking busy forever).
        """
        # HTTP/1.1 carries one request at a time: a leftover ``active`` (a start
        # the library refused) must not hide the idle time.
        if self.requests_completed and (not multiplexed or not self.active):
            self.reused_for_request = True
            self.idle_before_request_s = now - self.idle_since  # type: ignore[operator]
        else:
            self.reused_for_request = self.requests_completed > 0
            self.idle_before_request_s = None
        self.request = request
        self.active = self.active + 1 if multiplexed else 1

    def end_request_ok(self, now: float) -> None:
        """The request in flight completed; the connection goes back to the pool."""
        self.requests_completed += 1
        active = self.active - 1 if self.active > 0 else 0
        self.active = active
        if not active:
            self.idle_since = now
        idle = self.idle_before_request_s
        if idle is not None:
            # The peer's successful-reuse record, written inline: this runs on
            # every reused request.
            peer = self.peer
            count = peer.reuse_ok_count
            peer.reuse_ok_recent[count % PeerStats.RECENT] = idle
            peer.reuse_ok_count = count + 1
            if idle > peer.reuse_ok_max_idle_s:
                peer.reuse_ok_max_idle_s = idle
            self.idle_before_request_s = None
        self.request = None

    def end_request_failed(self) -> None:
        self.broken = True
        if self.active > 0:
            self.active -= 1
        self.request = None

    @property
    def idle_in_pool(self) -> bool:
        """Sitting in the pool after a successful request."""
        return not self.active and not self.broken and self.idle_since is not None

    # -- fault path -------------------------------------------------------

    def fault_fields(self, now: float, in_request: bool) -> ConnectionFields:
        """The history part of a snapshot, as of ``now``."""
        if in_request:
            reused: bool | None = self.reused_for_request
            idle = self.idle_before_request_s if reused else None
        else:
            reused = self.requests_completed > 0
            idle = None if self.idle_since is None else now - self.idle_since
        peer = self.peer
        sock = self.socket
        peer_address, peer_port = sock.peer()
        return new_connection_fields(
            peer_address=peer_address,
            peer_port=peer_port,
            local_port=sock.local_port,
            socket_cookie=sock.socket_cookie,
            reused=reused,
            idle_s=idle,
            age_s=now - self.established_at if now > self.established_at else 0.0,
            requests=self.requests_completed,
            alpn_offered=self.alpn_offered,
            alpn_negotiated=self.alpn_negotiated,
            tls_version=self.tls_version,
            peer_reuse_ok_max_idle_s=peer.reuse_ok_max_idle_s if peer.reuse_ok_count else None,
            peer_reuse_ok_count=peer.reuse_ok_count,
        )
