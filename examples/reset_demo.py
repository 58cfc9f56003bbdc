"""See a snapshot: a loopback "middlebox" forgets an idle keep-alive connection.

    python examples/reset_demo.py

An httpx client makes a request, sits idle for 1.5 s, and makes another on
the same pooled connection. The middlebox (a thread in this script) has
forgotten the connection after 1 s and answers with a TCP RST, as NATs and
load balancers do. The caller sees ``httpx.ReadError('')``; seedance-otel
records why.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import seedance_otel

seedance_otel.instrument(exporter="none")

import httpx  # noqa: E402 - imported after instrument() on purpose, though either order works

IDLE_TIMEOUT_S = 1.0


def middlebox(listener: socket.socket) -> None:
    """Answer requests; RST any request that arrives after more than 1 s of idle."""
    conn, _ = listener.accept()
    last = None
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            now = time.monotonic()
            if last is not None and now - last > IDLE_TIMEOUT_S:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with linger 0 sends the RST
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            last = time.monotonic()


def main() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    server = threading.Thread(target=middlebox, args=(listener,), daemon=True)
    server.start()
    with httpx.Client() as client:
        print("first request:", client.get(f"http://127.0.0.1:{port}/orders").status_code)
        time.sleep(1.5)
        try:
            client.get(f"http://127.0.0.1:{port}/orders?api_key=hunter2")
        except httpx.HTTPError as exc:
            print(f"second request failed: {exc!r}")
    server.join(5)
    listener.close()
    for snapshot in seedance_otel.snapshots():
        print(json.dumps(snapshot.to_dict(), indent=2))


if __name__ == "__main__":
    main()
