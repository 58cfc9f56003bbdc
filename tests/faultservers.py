"""Loopback fault servers for the tests: the demo's, plus the test-only ones.

The servers the demo also needs (the HTTP fault server with its middlebox,
the black-hole name server, the h2-only TLS server) live in
``seedance_otel.demo.faultservers``; this module re-exports them and adds the
ones that need test-only packages (pyOpenSSL) or exist only to make a
specific timeout happen. Every server binds to loopback only and is stopped by
its ``with`` block.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from seedance_otel.demo.faultservers import (
    Action,
    BlackHoleDNS,
    H2OnlyResetServer,
    HttpFaultServer,
    NxdomainDNS,
    RequestInfo,
    ThreadedTLSServer,
    rst_close,
    serve_h2,
)

__all__ = [
    "Action",
    "AlpnRefusingServer",
    "BlackHoleDNS",
    "FullBacklog",
    "H2OnlyResetServer",
    "HttpFaultServer",
    "NxdomainDNS",
    "RawServer",
    "RequestInfo",
    "SilentServer",
    "closed_port",
    "rst_close",
]


class AlpnRefusingServer(ThreadedTLSServer):
    """A TLS server (pyOpenSSL) that requires h2: its ALPN callback raises otherwise.

    Raising in the select callback makes OpenSSL send alert 120
    ``no_application_protocol`` (returning NO_OVERLAPPING_PROTOCOLS would not:
    the handshake would just complete without ALPN). A client that offers no
    ALPN at all never reaches the callback; the server then speaks h2 anyway.
    A client offering h2 gets real HTTP/2 answers, unless ``accept_h2`` is
    false: then every offer meets the alert.
    """

    def __init__(
        self, cert_pem_path: str, host: str = "127.0.0.1", *, accept_h2: bool = True
    ) -> None:
        super().__init__(host)
        from OpenSSL import SSL

        self._SSL = SSL
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate_chain_file(cert_pem_path)
        ctx.use_privatekey_file(cert_pem_path)

        def select(conn: Any, protocols: list[bytes]) -> bytes:
            self.offered.append(list(protocols))
            if accept_h2 and b"h2" in protocols:
                return b"h2"
            raise ValueError("h2 required")

        ctx.set_alpn_select_callback(select)
        self._ctx = ctx

    def handle(self, raw: socket.socket) -> None:
        conn = self._SSL.Connection(self._ctx, raw)
        conn.set_accept_state()
        conn.do_handshake()

        def send(data: bytes) -> None:
            conn.sendall(data)

        serve_h2(send, conn.recv, self._stopping)


class SilentServer:
    """A TCP server that accepts and then says nothing (read timeouts, stalled TLS)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = HttpFaultServer(lambda info: Action.HANG, host=host)
        self.port = self._server.port

    def url(self, path: str = "/") -> str:
        return self._server.url(path)

    def __enter__(self) -> SilentServer:
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()


class FullBacklog:
    """A listening socket whose accept queue is full, so new SYNs are dropped.

    A SYN black hole cannot be made on ``lo`` without iptables; ``listen(0)``
    plus one connection that is never accepted fills the queue on Linux, and
    the next connect attempt hangs until its timeout.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self.host = host
        self._fillers: list[socket.socket] = []

    def __enter__(self) -> FullBacklog:
        for _ in range(2):  # the queue holds backlog + 1 on Linux
            filler = socket.socket(self._listener.family, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect((self.host, self.port))
            except BlockingIOError:
                pass
            self._fillers.append(filler)
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sock in (*self._fillers, self._listener):
            try:
                sock.close()
            except OSError:
                pass


def closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.bind((host, 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


class RawServer:
    """A loopback server running ``answer(conn, request_head)`` per connection; records heads.

    One connection at a time: it reads the request head (at most 64 KiB, 5 s),
    then hands the connection to ``answer``; stopped by its ``with`` block.
    """

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.stopping = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    self.heads.append(head)
                    self.answer(conn, head)
                except OSError:
                    pass
