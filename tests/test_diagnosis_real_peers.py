"""Diagnosis against real nginx and HAProxy, and a server that ends connections after N requests.

Each test starts its servers on free loopback ports with its own
configuration (``real_peers``), drives real aiohttp and httpx clients with
seedance_otel instrumented, and holds the findings to what the servers were
configured to do: idle timeouts whose FINs the clients see, idle gaps
packed at the timeout, ``keepalive_requests`` (which announces
``Connection: close``), a FIN lost on the way (nftables in a private network
namespace) and a peer that closes after N requests without saying so.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from real_peers import HAProxy, Nginx

import seedance_otel
from seedance_otel import FaultKind, diagnose
from seedance_otel.diagnosis import Finding, Severity

from diagnosis_workload import Lane, mixed_lanes, param, run_lanes
from faultservers import Action, HttpFaultServer, RequestInfo
from system_binaries import require, require_root

HERE = Path(__file__).parent
ACCURACY = 0.15


def nginx_binary() -> str:
    return require("nginx", "nginx-light")


def haproxy_binary() -> str:
    return require("haproxy", "haproxy")


def about(findings: list[Finding], port: int) -> list[Finding]:
    return [f for f in findings if f"127.0.0.1:{port}" in f.evidence.get("peers", [])]


def only(findings: list[Finding], code: str, port: int) -> Finding:
    [finding] = [f for f in about(findings, port) if f.code == code]
    return finding


def assert_idle_timeout_found(findings: list[Finding], port: int, timeout_s: float, basis: str):
    """One stale keep-alive finding for the peer, right, and nothing that contradicts it."""
    finding = only(findings, "stale_keepalive", port)
    assert finding.evidence["estimate_basis"] == basis, finding
    if basis == "idle_close":
        estimate = param(finding, "peer_idle_timeout_s")
        assert abs(estimate - timeout_s) <= ACCURACY * timeout_s, finding
    else:
        assert param(finding, "bracket_low_s") < timeout_s <= param(finding, "bracket_high_s")
    assert param(finding, "recommended_keepalive_s") < timeout_s
    codes = {f.code for f in about(findings, port)}
    assert "max_connection_lifetime" not in codes and "max_requests_per_connection" not in codes
    for other in about(findings, port):
        if other.code == "unexplained_resets":
            assert other.severity is Severity.INFO, other
    return finding


def idle_lanes(library: str, url: str, timeout_s: float) -> list[Lane]:
    """Mixed idle times below and above the timeout, without the noise lane."""
    return [lane for lane in mixed_lanes(library, url, timeout_s) if lane.second_path != "/noise"]


def test_nginx_and_haproxy_idle_timeouts_with_visible_fins(instrumented, tmp_path):
    """nginx keepalive_timeout and HAProxy timeout http-keep-alive close idle connections
    (FIN): aiohttp measures the timeout, httpx brackets it, no request fails."""
    timeout_s = 1.0
    (tmp_path / "nginx").mkdir()
    (tmp_path / "haproxy").mkdir()
    nginx = Nginx(nginx_binary(), tmp_path / "nginx", http="keepalive_timeout 1s;", ports=2)
    haproxy = HAProxy(
        haproxy_binary(), tmp_path / "haproxy", defaults="  timeout http-keep-alive 1s", ports=2
    )
    with nginx, haproxy:
        peers = [(nginx, 0, "aiohttp"), (nginx, 1, "httpx"), (haproxy, 0, "aiohttp")]
        peers.append((haproxy, 1, "httpx"))
        lanes = [
            lane
            for server, index, library in peers
            for lane in idle_lanes(library, server.url(index), timeout_s)
        ]
        results = run_lanes(lanes)
    assert all(result[0] == 200 for result in results), results
    findings = diagnose()
    for server, index, library in peers:
        basis = "idle_close" if library == "aiohttp" else "bracket"
        finding = assert_idle_timeout_found(findings, server.ports[index], timeout_s, basis)
        assert finding.evidence["libraries"] == [library]


def test_nginx_idle_gaps_packed_at_the_timeout(instrumented, tmp_path):
    """aiohttp idling 1.990-2.008 s against keepalive_timeout 2s: the FIN races requests.

    Whatever each race's outcome, it is the idle timeout: no connection age
    limit (each connection served one request, so age equals idle), no
    unexplained reset.
    """
    timeout_s = 2.0
    nginx = Nginx(nginx_binary(), tmp_path, http="keepalive_timeout 2s;")
    with nginx:
        gaps = [1.0, 1.5, 1.8] + [1.990 + i * 0.018 / 23 for i in range(24)]
        results = run_lanes([Lane("aiohttp", nginx.url(), gap) for gap in gaps])
    assert all(result[0] == 200 for result in results), results
    findings = diagnose()
    port = nginx.ports[0]
    finding = only(findings, "stale_keepalive", port)
    reference = finding.params["peer_idle_timeout_s"] or param(finding, "bracket_high_s")
    assert abs(reference - timeout_s) <= ACCURACY * timeout_s, finding
    codes = {f.code for f in about(findings, port)}
    assert codes <= {"stale_keepalive", "unexplained_resets"}, findings
    assert "unexplained_resets" not in codes, findings
    resets = sum(1 for s in seedance_otel.snapshots() if s.kind is FaultKind.CONNECTION_RESET)
    assert finding.evidence["resets"] == resets


def test_nginx_keepalive_requests_announced_close_is_no_fault(instrumented, tmp_path):
    """keepalive_requests 5: the 5th response says Connection: close and the client
    closes the connection itself. Nothing failed, so nothing is recorded."""
    nginx = Nginx(nginx_binary(), tmp_path, http="keepalive_timeout 60s; keepalive_requests 5;")

    async def requests(library: str) -> list[int]:
        import aiohttp
        import httpx

        statuses = []
        if library == "httpx":
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(15):
                    statuses.append((await client.get(nginx.url())).status_code)
                    await asyncio.sleep(0.02)
        else:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for _ in range(15):
                    async with session.get(nginx.url()) as resp:
                        await resp.read()
                        statuses.append(resp.status)
                    await asyncio.sleep(0.02)
        return statuses

    import httpx

    with nginx:
        for library in ("httpx", "aiohttp"):
            assert asyncio.run(requests(library)) == [200] * 15
        with httpx.Client(timeout=10) as client:
            assert [client.get(nginx.url()).status_code for _ in range(15)] == [200] * 15
    assert seedance_otel.snapshots() == []
    assert diagnose() == []


def close_after(n: int):
    """A peer that ends each connection after ``n`` requests without Connection: close:
    the next request on it meets the close (FIN, no response)."""

    def decide(info: RequestInfo) -> str:
        return Action.FIN if info.request_index >= n else Action.RESPOND

    return decide


async def _requests_with_varied_gaps(library: str, url: str, count: int) -> list[Any]:
    """``count`` POSTs on one client, idle gaps cycling through varied values."""
    import aiohttp
    import httpx

    gaps = (0.01, 0.12, 0.03, 0.2, 0.06, 0.16, 0.02)
    results: list[Any] = []
    client: Any
    if library == "httpx":
        client = httpx.AsyncClient(timeout=10)
    else:
        client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        for index in range(count):
            await asyncio.sleep(gaps[index % len(gaps)])
            try:
                if library == "httpx":
                    results.append((await client.post(url, content=b"x")).status_code)
                else:
                    async with client.post(url, data=b"x") as resp:
                        await resp.read()
                        results.append(resp.status)
            except Exception as exc:
                results.append(exc)
    finally:
        if library == "httpx":
            await client.aclose()
        else:
            await client.close()
    return results


def test_peer_that_closes_after_n_requests_without_announcing_it(instrumented):
    n = 4
    servers = {lib: HttpFaultServer(close_after(n)).start() for lib in ("aiohttp", "httpx")}

    async def both() -> list[list[Any]]:
        return await asyncio.gather(
            *(
                _requests_with_varied_gaps(lib, server.url("/"), 26)
                for lib, server in servers.items()
            )
        )

    try:
        results = asyncio.run(both())
    finally:
        for server in servers.values():
            server.stop()
    for result in results:
        assert sum(isinstance(r, Exception) for r in result) >= 3, result
    findings = diagnose()
    for library, server in servers.items():
        finding = only(findings, "max_requests_per_connection", server.port)
        assert finding.params["requests_per_connection"] == n
        assert finding.severity is Severity.WARNING
        assert finding.count >= 3
        assert f"after {n} requests" in finding.summary
        assert "Connection: close" in finding.fix
        codes = {f.code for f in about(findings, server.port)}
        assert "stale_keepalive" not in codes and "max_connection_lifetime" not in codes
        assert "unexplained_resets" not in codes, findings
        assert finding.evidence["libraries"] == [library]


def test_nginx_polled_less_often_than_its_timeout_gives_upper_bounds(instrumented, tmp_path):
    """httpx every 3 s against keepalive_timeout 2s: each close is noticed 3 s late."""
    nginx = Nginx(nginx_binary(), tmp_path, http="keepalive_timeout 2s;")

    async def poll() -> list[int]:
        import httpx

        statuses = []
        async with httpx.AsyncClient(timeout=10) as client:
            for index in range(3):
                if index:
                    await asyncio.sleep(3.0)
                statuses.append((await client.get(nginx.url())).status_code)
        return statuses

    with nginx:
        assert asyncio.run(poll()) == [200, 200, 200]
    [finding] = diagnose()
    assert finding.code == "stale_keepalive" and finding.severity is Severity.INFO
    assert finding.evidence["estimate_basis"] == "upper_bound"
    assert "only an upper bound" in finding.summary
    assert 3.0 <= param(finding, "bracket_high_s") < 3.5
    assert finding.params["safe_below_s"] == 2.0
    assert param(finding, "recommended_keepalive_s") < 2.0  # below the real 2 s timeout
    assert "To sharpen the estimate" in finding.fix


@pytest.fixture
def lost_fin_results(tmp_path) -> dict[str, Any]:
    """The lost-FIN case run in a private network namespace (``unshare -n``), as root."""
    require_root("the lost-FIN case")
    unshare = require("unshare", "util-linux")
    nft = require("nft", "nftables")
    ip = require("ip", "iproute2")
    proc = subprocess.run(
        [
            unshare,
            "-n",
            sys.executable,
            str(HERE / "netns_lost_fin_case.py"),
            nginx_binary(),
            nft,
            ip,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results: dict[str, Any] = json.loads(proc.stdout)
    return results


def test_lost_fin_resets_bracket_the_timeout(lost_fin_results):
    """nginx keepalive_timeout 1s, its FINs dropped by nftables: the clients never
    see the close; their next request on the connection meets a RST."""
    from seedance_otel import ResetContextSnapshot

    assert lost_fin_results["fins_dropped"] > 0
    snaps = [ResetContextSnapshot.from_dict(s) for s in lost_fin_results["snapshots"]]
    assert {s.kind for s in snaps} == {FaultKind.CONNECTION_RESET}
    findings = diagnose(snaps, peer_stats={})
    for library, port in lost_fin_results["ports"].items():
        finding = assert_idle_timeout_found(findings, port, 1.0, "bracket")
        assert abs(finding.params["peer_idle_timeout_s"] - 1.0) <= ACCURACY
        assert finding.severity is Severity.WARNING
        assert finding.evidence["libraries"] == [library]


@pytest.fixture(autouse=True)
def _bounded_time() -> Any:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < 60
