"""A loopback server for the diagnosis tests that tests/faultservers.py does not have.

``PlainHttpResponder`` binds to 127.0.0.1 only, runs on a daemon thread and
is stopped by its ``with`` block.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

_JOIN_TIMEOUT_S = 5.0


class PlainHttpResponder:
    """Answers whatever arrives (a TLS ClientHello, say) with a plain HTTP 400, then closes.

    What a client speaking TLS to a plain-HTTP port meets: the bytes back
    are not a TLS record (OpenSSL: ``WRONG_VERSION_NUMBER``). An
    ``HttpFaultServer`` would instead wait for a request head that never
    comes, and the handshake would time out.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PlainHttpResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._thread.join(_JOIN_TIMEOUT_S)

    def _loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass
