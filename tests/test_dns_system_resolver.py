"""DNS timeouts through the system resolver (glibc), for real, in a private network namespace.

A namespace gets its own loopback and, through ``ip netns exec``, its own
``/etc/resolv.conf`` (bind-mounted from ``/etc/netns/NAME/resolv.conf``)
pointing at 127.0.0.1, where ``netns_dns_cases.py`` runs a name server that
never answers. This is the production path: glibc ``getaddrinfo`` in a thread
(aiohttp's ThreadedResolver, httpx async, plain asyncio) and in the caller's
thread (httpx sync). Needs root and iproute2; the namespace is removed even
when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def system_resolver_results():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` to create a network namespace")
    name = f"seedance-{uuid.uuid4().hex[:8]}"
    netns_etc = Path("/etc/netns") / name
    netns_etc.mkdir(parents=True)
    try:
        (netns_etc / "resolv.conf").write_text(
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        try:
            subprocess.run(
                ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                check=True,
                timeout=30,
            )
            proc = subprocess.run(
                ["ip", "netns", "exec", name, sys.executable, str(HERE / "netns_dns_cases.py")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            return json.loads(proc.stdout)
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
    finally:
        shutil.rmtree(netns_etc, ignore_errors=True)


def case(results, name):
    return next(c for c in results["cases"] if c["case"] == name)


def test_namespace_used_the_black_hole(system_resolver_results):
    assert "nameserver 127.0.0.1" in system_resolver_results["resolv_conf"]
    assert system_resolver_results["queries_seen"] >= 5


@pytest.mark.parametrize(
    ("name", "caller_saw", "library", "min_s", "max_s"),
    [
        # The client's connect timeout fires while glibc is still waiting.
        (
            "aiohttp-threaded-client-timeout",
            "aiohttp.client_exceptions.ConnectionTimeoutError",
            "aiohttp",
            0.45,
            0.9,
        ),
        ("httpx-async-client-timeout", "httpx.ConnectTimeout", "httpx", 0.45, 0.9),
        # The resolver gives up first: gaierror EAI_AGAIN (-3).
        (
            "aiohttp-threaded-resolver-gives-up",
            "aiohttp.client_exceptions.ClientConnectorDNSError",
            "aiohttp",
            0.9,
            3.0,
        ),
        ("httpx-async-resolver-gives-up", "httpx.ConnectError", "httpx", 0.9, 3.0),
        # httpx sync: the connect timeout (0.5 s) does not bound getaddrinfo.
        ("httpx-sync", "httpx.ConnectError", "httpx", 0.9, 3.0),
        ("asyncio-getaddrinfo", "socket.gaierror", "asyncio", 0.9, 3.0),
        ("asyncio-open-connection", "socket.gaierror", "asyncio", 0.9, 3.0),
    ],
)
def test_dns_timeout_through_the_system_resolver(
    system_resolver_results, name, caller_saw, library, min_s, max_s
):
    result = case(system_resolver_results, name)
    assert result["caller_saw"] == caller_saw
    snaps = result["snapshots"]
    assert len(snaps) == 1, snaps  # asyncio-level hooks do not double-record
    snap = snaps[0]
    assert snap["kind"] == "dns_timeout"
    assert snap["phase"] == "dns"
    assert snap["library"] == library
    assert snap["dns_question"] == "api.seedance.test"
    assert min_s <= snap["dns_duration_s"] <= max_s
    if snap["errno"] is not None:
        assert snap["errno"] == -3
