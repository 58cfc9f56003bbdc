"""A loopback HTTP/1.1 server that resets connections, for the storm benchmark.

Runs in its own process so its CPU time never counts as the client's.
Modes:

* ``rst``: every request is answered with a TCP RST (each request meets a
  reset on a new connection).
* ``reuse-rst``: the first request on a connection is answered, the second
  meets a RST (every fault happens on a reused connection).

Usage: python -m benchmarks._fault_server MODE PORT_FILE
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

from benchmarks._server import serve

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_LINGER_0 = struct.pack("ii", 1, 0)


class Handler(asyncio.Protocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.answered = 0
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if self.mode == "rst" or self.answered >= 1:
                self._reset()
                return
            self.answered += 1
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]

    def _reset(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        self.transport.abort()  # type: ignore[attr-defined]


async def main(mode: str, port_file: str) -> None:
    await serve(lambda: Handler(mode), port_file, backlog=1024)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
