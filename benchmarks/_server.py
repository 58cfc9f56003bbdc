"""A cheap HTTP/1.1 keep-alive server for benchmarks: one fixed response per request.

Runs in its own process so its CPU time never counts as the client's.
Usage: python -m benchmarks._server PORT_FILE
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Handler(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            self.buffer = self.buffer[length:]
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


async def serve(
    protocol_factory: Callable[[], asyncio.Protocol], port_file: str, backlog: int = 512
) -> None:
    """Serve on a free loopback port, written to ``port_file``, until stdin closes."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol_factory, "127.0.0.1", 0, backlog=backlog)
    port = server.sockets[0].getsockname()[1]
    with open(port_file, "w") as f:
        f.write(str(port))
    # Exit when the parent closes our stdin.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


async def main(port_file: str) -> None:
    await serve(Handler, port_file)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
