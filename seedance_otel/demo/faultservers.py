"""Loopback servers that fail the way real peers and middleboxes do.

The demo runs the three traps against these, and the test suite reuses them
(``tests/faultservers.py`` adds the test-only ones). Every server binds to
127.0.0.1 or ::1 only, runs on daemon threads, and is stopped by its ``with``
block (or ``stop()``), which closes every socket it opened and joins its
threads with a deadline.

Faults are real: a RST is ``SO_LINGER (1, 0)`` then ``close()``; a FIN is a
plain ``close()``; the "middlebox" keeps the TCP connection but forgets it
after ``middlebox_idle_s`` and answers the next request with a RST, as NATs
and load balancers do; the name server reads queries and never answers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Action",
    "BlackHoleDNS",
    "H2OnlyResetServer",
    "HttpFaultServer",
    "LoopbackServer",
    "NxdomainDNS",
    "RequestInfo",
    "ThreadedTLSServer",
    "rst_close",
    "serve_h2",
]

_JOIN_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 30.0


def rst_close(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


_Server = TypeVar("_Server", bound="LoopbackServer")


def _loopback_family(host: str) -> socket.AddressFamily:
    if host not in ("127.0.0.1", "::1"):
        raise ValueError("fault servers bind to loopback only")
    return socket.AF_INET6 if host == "::1" else socket.AF_INET


class LoopbackServer:
    """A listener on loopback, an accept loop and one daemon thread per connection.

    Subclasses implement :meth:`serve`. Stopping closes the listener, shuts down
    and closes every accepted socket (which wakes a thread blocked in ``recv``)
    and joins every thread with a deadline.
    """

    def __init__(self, host: str = "127.0.0.1", backlog: int = 64) -> None:
        family = _loopback_family(host)
        self.host = host
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(backlog)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self.connections = 0
        self.client_ports: list[int] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    scheme = "http"

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def serve(self, raw: socket.socket, index: int) -> None:
        """Handle one accepted connection (in its own thread)."""
        raise NotImplementedError

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                raw, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
                self.client_ports.append(addr[1])
                self._sockets.add(raw)
                thread = threading.Thread(target=self._run, args=(raw, index), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _run(self, raw: socket.socket, index: int) -> None:
        try:
            self.serve(raw, index)
        finally:
            self._forget(raw)
            with contextlib.suppress(OSError):
                raw.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def start(self) -> LoopbackServer:
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            with contextlib.suppress(OSError):
                sock.close()
        self._accept_thread.join(_JOIN_TIMEOUT_S)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT_S)

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Action:
    RESPOND = "respond"
    RST = "rst"  # RST instead of a response
    FIN = "fin"  # close (FIN) instead of a response
    RST_MID_BODY = "rst_mid_body"  # headers and part of the body, then RST
    FIN_MID_BODY = "fin_mid_body"
    HANG = "hang"  # never answer (until stopped)
    RESPOND_CLOSE = "respond_close"  # respond with Connection: close, then FIN


@dataclasses.dataclass(frozen=True)
class RequestInfo:
    """What the server knows when a request arrives."""

    connection_index: int  # 0-based, in accept order
    request_index: int  # 0-based on this connection
    idle_s: float | None  # time since the previous response on this connection
    method: str
    path: str


Decide = Callable[[RequestInfo], str]


class HttpFaultServer(LoopbackServer):
    """A small HTTP/1.1 keep-alive server whose answers are decided per request.

    ``decide(info) -> Action`` chooses what to do with each request.
    ``accept_action`` (``None``, ``Action.RST`` or ``Action.FIN``) acts on each
    new connection before reading anything. ``idle_close_s`` closes (FIN, or
    RST with ``idle_close_rst``) connections idle that long after a response,
    as a server's keep-alive timeout does;
    ``middlebox_idle_s`` instead forgets them silently and RSTs the next
    request, as a NAT or load balancer does.
    """

    def __init__(
        self,
        decide: Decide | None = None,
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        accept_action: str | None = None,
        idle_close_s: float | None = None,
        idle_close_rst: bool = False,
        middlebox_idle_s: float | None = None,
        body: bytes = b"ok",
    ) -> None:
        super().__init__(host)
        self.decide = decide or (lambda info: Action.RESPOND)
        self.ssl_context = ssl_context
        self.accept_action = accept_action
        self.idle_close_s = idle_close_s
        self.idle_close_rst = idle_close_rst
        self.middlebox_idle_s = middlebox_idle_s
        self.body = body
        self.requests: list[RequestInfo] = []

    @property
    def scheme(self) -> str:  # type: ignore[override]
        return "https" if self.ssl_context else "http"

    def serve(self, raw: socket.socket, index: int) -> None:
        sock: socket.socket = raw
        try:
            if self.accept_action == Action.RST:
                rst_close(raw)
                return
            if self.accept_action == Action.FIN:
                raw.close()
                return
            if self.ssl_context is not None:
                raw.settimeout(_READ_TIMEOUT_S)
                try:
                    sock = self.ssl_context.wrap_socket(raw, server_side=True)
                except (OSError, ssl.SSLError):
                    raw.close()
                    return
                self._track(sock)
            self._request_loop(sock, index)
        finally:
            self._forget(sock)
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _recv(sock: socket.socket, timeout: float) -> bytes | None:
        """One read: data, ``b""`` when it timed out (try again), ``None`` at EOF or error
        (the socket closed under us by ``stop()`` included)."""
        try:
            sock.settimeout(timeout)
            return sock.recv(65536) or None
        except (TimeoutError, ssl.SSLWantReadError):
            return b""
        except OSError:
            return None

    def _read_request(
        self, sock: socket.socket, buffer: bytearray, idle_deadline: float | None
    ) -> tuple[str, str, bytearray] | None:
        """Read one request; ``None`` on EOF, stop, or the idle deadline."""
        while b"\r\n\r\n" not in buffer:
            if self._stopping.is_set():
                return None
            timeout = 0.2
            if idle_deadline is not None:
                remaining = idle_deadline - time.monotonic()
                if remaining <= 0:
                    return None
                timeout = min(timeout, remaining)
            chunk = self._recv(sock, timeout)
            if chunk is None:
                return None
            buffer += chunk
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = ([*lines[0].split(" "), "", "", ""])[:3]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        body = bytearray(rest)
        while len(body) < length and not self._stopping.is_set():
            chunk = self._recv(sock, 0.2)
            if chunk is None:
                return None
            body += chunk
        return method, path, bytearray(body[length:])

    def _request_loop(self, sock: socket.socket, index: int) -> None:
        buffer = bytearray()
        last_response_at: float | None = None
        request_index = 0
        while not self._stopping.is_set():
            idle_deadline = (
                last_response_at + self.idle_close_s
                if self.idle_close_s is not None and last_response_at is not None
                else None
            )
            parsed = self._read_request(sock, buffer, idle_deadline)
            if parsed is None:
                if idle_deadline is not None and time.monotonic() >= idle_deadline:
                    if self.idle_close_rst:
                        rst_close(sock)
                    else:
                        sock.close()  # keep-alive timeout: a visible FIN
                return
            method, path, buffer = parsed
            now = time.monotonic()
            idle = None if last_response_at is None else now - last_response_at
            info = RequestInfo(index, request_index, idle, method, path)
            with self._lock:
                self.requests.append(info)
            request_index += 1
            if (
                self.middlebox_idle_s is not None
                and idle is not None
                and idle > self.middlebox_idle_s
            ):
                rst_close(sock)  # the middlebox forgot this connection
                return
            action = self.decide(info)
            if action == Action.RST:
                rst_close(sock)
                return
            if action == Action.FIN:
                sock.close()
                return
            if action == Action.HANG:
                while not self._stopping.wait(0.1):
                    pass
                return
            body = self.body
            close = action == Action.RESPOND_CLOSE
            head = (
                "HTTP/1.1 200 OK\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Content-Type: text/plain\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
            ).encode()
            try:
                if action in (Action.RST_MID_BODY, Action.FIN_MID_BODY):
                    big = head.replace(
                        f"Content-Length: {len(body)}".encode(), b"Content-Length: 100000"
                    )
                    sock.sendall(big + b"x" * 1000)
                    time.sleep(0.05)
                    if action == Action.RST_MID_BODY:
                        rst_close(sock)
                    else:
                        sock.close()
                    return
                sock.sendall(head + body)
            except OSError:
                return
            last_response_at = time.monotonic()
            if close:
                sock.close()
                return


class BlackHoleDNS:
    """A UDP (and TCP) name server on 127.0.0.1 that reads queries and never answers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = _loopback_family(host)
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._udp.bind((host, port))
        self.host = host
        self.port: int = self._udp.getsockname()[1]
        self._tcp = socket.socket(family, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, self.port))
        self._tcp.listen(16)
        self.queries = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._held: list[socket.socket] = []

    def _loop(self) -> None:
        self._udp.settimeout(0.1)
        self._tcp.settimeout(0.0)
        while not self._stopping.is_set():
            try:
                self._udp.recvfrom(4096)
                self.queries += 1
            except TimeoutError:
                pass
            except OSError:
                return
            try:
                conn, _ = self._tcp.accept()
                self._held.append(conn)
            except (BlockingIOError, TimeoutError):
                pass
            except OSError:
                return

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> BlackHoleDNS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._thread.join(_JOIN_TIMEOUT_S)
        for sock in (self._udp, self._tcp, *self._held):
            with contextlib.suppress(OSError):
                sock.close()


def serve_h2(
    send: Callable[[bytes], None], recv: Callable[[int], bytes], stop: threading.Event
) -> None:
    """Answer HTTP/2 requests with 200 "ok" until EOF (uses the ``h2`` package)."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    send(conn.data_to_send())
    while not stop.is_set():
        try:
            data = recv(65535)
        except (TimeoutError, OSError):
            return
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "2")])
                conn.send_data(event.stream_id, b"ok", end_stream=True)
        out = conn.data_to_send()
        if out:
            send(out)


class ThreadedTLSServer(LoopbackServer):
    """What the TLS/ALPN servers share: blocking sockets, and a graceful close
    after a failed handshake so the alert reaches the client."""

    scheme = "https"

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host, backlog=16)
        self.offered: list[list[bytes]] = []
        """ALPN lists the clients offered (as the server saw them)."""

    def serve(self, raw: socket.socket, index: int) -> None:
        # Blocking: pyOpenSSL cannot drive a socket that has a timeout (the fd
        # is non-blocking underneath). stop() shuts sockets down.
        raw.settimeout(None)
        try:
            self.handle(raw)
        except Exception:  # a failed handshake: let the alert reach the client
            self._linger_close(raw)

    def _linger_close(self, raw: socket.socket) -> None:
        """FIN, then drain until the client hangs up (at most 2 s).

        Closing with unread bytes queued would send a RST that can overtake
        the TLS alert on the client side.
        """
        try:
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(0.1)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not self._stopping.is_set():
                try:
                    if not raw.recv(65536):
                        return
                except TimeoutError:
                    continue
        except OSError:
            return

    def handle(self, raw: socket.socket) -> None:
        raise NotImplementedError


class H2OnlyResetServer(ThreadedTLSServer):
    """A stdlib TLS server offering only h2; without h2 negotiated it sends a RST.

    CPython's server-side ALPN selection does not fail the handshake on no
    overlap: it completes with no protocol, and this server then resets, as
    strict HTTP/2-only front ends do.
    """

    def __init__(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        context.set_alpn_protocols(["h2"])
        self._context = context

    def handle(self, raw: socket.socket) -> None:
        tls = self._context.wrap_socket(raw, server_side=True)
        if tls.selected_alpn_protocol() != "h2":
            rst_close(tls)
            return
        serve_h2(tls.sendall, tls.recv, self._stopping)


class NxdomainDNS:
    """A UDP name server on loopback that answers every query with NXDOMAIN."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = _loopback_family(host)
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._udp.bind((host, 0))
        self.host = host
        self.port: int = self._udp.getsockname()[1]
        self.queries = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def nameserver(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _loop(self) -> None:
        self._udp.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                query, addr = self._udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(query) < 12:
                continue
            self.queries += 1
            # Same id and question; flags: response, recursion available, RCODE 3.
            flags = struct.pack("!H", 0x8183 | (struct.unpack("!H", query[2:4])[0] & 0x0100))
            header = query[:2] + flags + query[4:6] + b"\x00\x00\x00\x00\x00\x00"
            with contextlib.suppress(OSError):
                self._udp.sendto(header + query[12:], addr)

    def __enter__(self) -> NxdomainDNS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._thread.join(_JOIN_TIMEOUT_S)
        self._udp.close()
