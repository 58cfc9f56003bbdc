"""A snapshot joins kernel data: its local port and SO_COOKIE are the socket's own."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import seedance_otel

from clients import CLIENTS, library_of, run_steps
from faultservers import Action, HttpFaultServer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("ss") is None,
    reason="SO_COOKIE and `ss` are Linux-only",
)


def kernel_cookie_of_local_port(port: int) -> int | None:
    """The socket cookie `ss` reports (``sk:<hex>``) for our end of a connection."""
    out = subprocess.run(
        ["ss", "-tinHe", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    match = re.search(r"\bsk:([0-9a-f]+)", out)
    return int(match.group(1), 16) if match else None


@pytest.mark.parametrize("client", CLIENTS)
def test_socket_cookie_matches_the_kernel(instrumented, client):
    seen: dict[str, int | None] = {}

    def decide(info):
        # Read the client's socket cookie from the kernel while it is open,
        # then reset the connection.
        port = server.client_ports[info.connection_index]
        seen["port"] = port
        seen["cookie"] = kernel_cookie_of_local_port(port)
        return Action.RST

    with HttpFaultServer(decide) as server:
        [result] = run_steps(client, [("POST", server.url("/x"))])
    assert isinstance(result, Exception)
    [snap] = [s for s in seedance_otel.snapshots() if s.library == library_of(client)]
    assert seen["cookie"] is not None
    assert snap.local_port == seen["port"]
    assert snap.socket_cookie == seen["cookie"]
