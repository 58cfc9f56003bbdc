"""Real nginx and HAProxy on free loopback ports, with the configuration a test asks for.

Each server runs in the foreground as a child process with its own prefix
directory (configuration, pid file, logs, temp paths), listens on 127.0.0.1
only, and is stopped by its ``with`` block (SIGTERM, then SIGKILL after a
bounded wait). ``start`` waits, bounded, until every port accepts.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from system_binaries import stop_process

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(ports: list[int], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited at start: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"server not listening on {pending}: {log.read_text()[-2000:]}")


class _ServerProcess:
    """A foreground server process started from a configuration file."""

    def __init__(self, directory: Path, ports: int) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(ports)]
        self.log = directory / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def url(self, index: int = 0, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[index]}{path}"

    def __enter__(self) -> Any:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        try:
            _wait_listening(self.ports, self._process, self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        stop_process(process, _STOP_TIMEOUT_S)


class Nginx(_ServerProcess):
    """nginx answering ``200 ok`` on each port; ``http`` holds extra http-level directives.

    One process (``master_process off``): the test's child, nothing forked
    to outlive it.
    """

    def __init__(self, binary: str, directory: Path, *, http: str, ports: int = 1) -> None:
        super().__init__(directory, ports)
        self.binary = binary
        servers = "\n".join(
            f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 'ok'; }} }}"
            for port in self.ports
        )
        temp = directory / "temp"
        temp.mkdir(exist_ok=True)
        paths = "\n".join(
            f"{name}_temp_path {temp / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.config = directory / "nginx.conf"
        self.config.write_text(
            f"daemon off;\nmaster_process off;\npid {directory / 'nginx.pid'};\n"
            f"error_log {self.log} warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\naccess_log off;\n{paths}\n{http}\n{servers}\n}}\n"
        )

    def command(self) -> list[str]:
        return [self.binary, "-p", str(self.directory), "-c", str(self.config)]


class HAProxy(_ServerProcess):
    """HAProxy answering ``200 ok`` itself on each port; ``defaults`` holds extra lines.

    ``option http-buffer-request``: HAProxy reads a request's body before its
    ``http-request return`` answers; otherwise it closes a connection whose
    request body it did not read, and no POST connection is ever reused.
    """

    def __init__(self, binary: str, directory: Path, *, defaults: str, ports: int = 1) -> None:
        super().__init__(directory, ports)
        self.binary = binary
        frontends = "\n".join(
            f"frontend fe{index}\n  bind 127.0.0.1:{port}\n"
            "  http-request return status 200 content-type text/plain string ok\n"
            for index, port in enumerate(self.ports)
        )
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            "global\n  maxconn 256\n"
            "defaults\n  mode http\n  option http-buffer-request\n  timeout connect 2s\n"
            "  timeout client 30s\n"
            f"  timeout server 30s\n{defaults}\n{frontends}"
        )

    def command(self) -> list[str]:
        return [self.binary, "-db", "-f", str(self.config)]
