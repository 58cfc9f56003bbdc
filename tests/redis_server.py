"""A real redis-server on a free loopback port, with its own configuration, for the tests.

Started with ``timeout`` seconds of idle allowed per client (``timeout 2``: the
server drops clients idle for more than 2 s; it counts in whole seconds, so
the close comes 2-3 s after a client's last command), no persistence, and a
scratch directory; stopped (and waited for) by its ``with`` block.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from typing import Any

from system_binaries import require, stop_process

__all__ = ["RedisServer"]

_START_ATTEMPTS = 3
_READY_WITHIN_S = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``with RedisServer(timeout_s=2) as server: server.port``."""

    def __init__(self, timeout_s: int = 0) -> None:
        self.binary = require("redis-server", "redis-server")
        self.timeout_s = timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="seedance-redis-")

    def _start_once(self) -> bool:
        self.port = _free_port()
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--timeout",
                str(self.timeout_s),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_WITHIN_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # the port was taken meanwhile: try another
            if _answers_ping(self.port):
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> RedisServer:
        for _ in range(_START_ATTEMPTS):
            if self._start_once():
                return self
            self._stop()
        raise RuntimeError("redis-server did not start on a loopback port")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)

    def __exit__(self, *exc: Any) -> None:
        self._stop()
        self._dir.cleanup()
