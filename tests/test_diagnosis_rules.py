"""Each diagnosis rule on hand-built snapshots: the clear case and the edge cases.

Real faults produce the same snapshots in test_diagnosis_real_faults.py;
here the evidence is built by hand so that few samples, mixed peers, noise
and borderline timeouts can be set up exactly.
"""

from __future__ import annotations

import json

import pytest

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel.diagnosis import Finding, Severity, diagnose
from seedance_otel.diagnosis import _rules as rules

from snapshot_factory import make_snapshot

TRACE = "0af7651916cd43dd8448eb211c80319c"


def snap(kind=FaultKind.CONNECTION_RESET, **kw) -> ResetContextSnapshot:
    return make_snapshot(kind, **kw)


def stale(idle, ok_max=None, ok_count=None, **kw):
    return snap(
        connection_reused=True,
        connection_idle_s=idle,
        connection_age_s=kw.pop("age", idle + 0.05),
        connection_requests=1,
        peer_reuse_ok_max_idle_s=ok_max,
        peer_reuse_ok_count=ok_count if ok_count is not None else (1 if ok_max else 0),
        **kw,
    )


def codes(findings):
    return [f.code for f in findings]


# -- Severity and Finding ---------------------------------------------------


def test_severity_is_ordered_by_rank_not_alphabet():
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert Severity.ERROR >= Severity.WARNING
    assert max(Severity) is Severity.ERROR
    assert Severity("warning") is Severity.WARNING
    assert str(Severity.ERROR) == "error"


def test_finding_str_and_dict():
    finding = Finding(
        code="stale_keepalive",
        severity=Severity.WARNING,
        summary="api.test:443 drops connections idle for more than ~2 s.",
        fix="httpx: httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=1.4))\nOr else.",
        evidence={"peers": ["api.test:443"], "count": 3, "trace_ids": (TRACE,)},
        params={"peer_idle_timeout_s": 2.0},
    )
    text = str(finding)
    lines = text.splitlines()
    assert lines[0].startswith("WARNING [stale_keepalive] api.test:443 drops")
    assert lines[1].startswith("  fix: httpx:")
    assert lines[2].strip() == "Or else."
    assert "count=3" in text and TRACE in text and "peer_idle_timeout_s=2" in text
    data = json.loads(json.dumps(finding.to_dict()))
    assert data["severity"] == "warning"
    assert data["evidence"]["trace_ids"] == [TRACE]
    assert finding.count == 3 and finding.subject == "api.test:443"
    assert hash(finding) == hash(finding)
    with pytest.raises(AttributeError):
        finding.code = "x"  # type: ignore[misc]


# -- stale keep-alive -------------------------------------------------------


def test_stale_keepalive_bracket_and_fix():
    snaps = [stale(2.3, ok_max=1.8, trace_id=TRACE), stale(2.6, ok_max=1.8), stale(3.1)]
    [finding] = rules.stale_keepalive(snaps, {})
    assert finding.code == "stale_keepalive"
    assert finding.severity is Severity.WARNING
    assert finding.params["bracket_low_s"] == 1.8
    assert finding.params["bracket_high_s"] == 2.3
    assert finding.params["peer_idle_timeout_s"] == pytest.approx(2.05)
    assert finding.params["recommended_keepalive_s"] == 1.4
    assert "api.test:443" in finding.summary and "3 requests" in finding.summary
    assert "httpx.Limits(keepalive_expiry=1.4)" in finding.fix
    assert "aiohttp" not in finding.fix  # only the library seen
    assert finding.evidence["trace_ids"] == [TRACE]
    assert finding.evidence["resets"] == 3
    histogram = finding.evidence["idle_histogram"]
    assert sum(r["failed"] for r in histogram) == 3 and sum(r["ok"] for r in histogram) == 1


def test_stale_keepalive_uses_in_process_peer_stats():
    snaps = [stale(5.4), stale(6.0)]
    peer_stats = {
        ("api.test", 443): {
            "reuse_ok_count": 30,
            "reuse_ok_max_idle_s": 4.7,
            "reuse_ok_recent_idle_s": [0.1, 2.0, 4.7],
        }
    }
    [finding] = rules.stale_keepalive(snaps, peer_stats)
    assert finding.params["bracket_low_s"] == 4.7
    assert finding.evidence["reuse_ok_count"] == 30
    assert finding.params["recommended_keepalive_s"] == 3.7


def test_stale_keepalive_aiohttp_fix_and_silent_retries():
    snaps = [
        stale(9.0, ok_max=7.0, library="aiohttp", http_method="GET"),
        stale(9.5, ok_max=7.0, library="aiohttp", http_method="POST"),
    ]
    [finding] = rules.stale_keepalive(snaps, {})
    assert "aiohttp.TCPConnector(keepalive_timeout=5.6)" in finding.fix
    assert "httpx" not in finding.fix
    assert finding.evidence["retried_silently"] == 1


def test_stale_keepalive_mixed_peers_estimated_separately():
    snaps = [
        stale(1.2, ok_max=0.9, server_address="a.test", server_port=80),
        stale(1.4, ok_max=0.9, server_address="a.test", server_port=80),
        stale(9.0, ok_max=7.0, server_address="b.test", server_port=80),
        stale(8.0, ok_max=7.0, server_address="b.test", server_port=8080),
    ]
    findings = {f.subject: f for f in rules.stale_keepalive(snaps, {})}
    assert set(findings) == {"a.test:80", "b.test:80", "b.test:8080"}
    assert findings["a.test:80"].params["peer_idle_timeout_s"] == pytest.approx(1.05)
    assert findings["b.test:80"].params["peer_idle_timeout_s"] == pytest.approx(8.0)
    assert findings["b.test:8080"].params["peer_idle_timeout_s"] == pytest.approx(7.5)


def test_stale_keepalive_noise_is_set_aside_and_reported():
    snaps = [stale(0.003, ok_max=1.9), stale(2.2, ok_max=1.9), stale(2.5, ok_max=1.9)]
    findings = diagnose(snaps, peer_stats={})
    [keepalive] = [f for f in findings if f.code == "stale_keepalive"]
    assert keepalive.params["peer_idle_timeout_s"] == pytest.approx(2.05)
    assert keepalive.evidence["resets_not_explained_idle_s"] == [0.003]
    [noise] = [f for f in findings if f.code == "unexplained_resets"]
    assert noise.severity is Severity.INFO  # the peer's resets are mostly explained
    assert noise.count == 1


def test_stale_keepalive_few_samples_single_failure():
    [finding] = rules.stale_keepalive([stale(6.3)], {})
    assert finding.params["peer_idle_timeout_s"] is None
    assert finding.params["bracket_high_s"] == 6.3
    assert "6.3 s or less" in finding.summary
    assert "check again" in finding.fix


def test_stale_keepalive_timeout_just_below_httpx_default():
    snaps = [stale(i, ok_max=4.79, ok_count=50) for i in (4.82, 4.9, 4.97, 4.99)]
    [finding] = rules.stale_keepalive(snaps, {})
    assert finding.params["peer_idle_timeout_s"] == pytest.approx(4.805)
    assert "default keepalive_expiry (5 s) is just above it" in finding.summary
    assert "keepalive_expiry=3.8" in finding.fix


def test_stale_keepalive_wide_bracket_says_between():
    [finding] = rules.stale_keepalive([stale(60.0, ok_max=2.0)], {})
    assert "somewhere between 2 s" in finding.summary


def test_idle_closes_alone_are_info():
    closes = [
        snap(
            FaultKind.PEER_CLOSED_IDLE,
            library="aiohttp",
            phase="idle",
            connection_idle_s=v,
            connection_reused=True,
            connection_age_s=v + 0.1,
            error_type="EOF",
            error_message="",
        )
        for v in (8.004, 8.01)
    ]
    [finding] = diagnose(closes, peer_stats={})
    assert finding.code == "stale_keepalive"
    assert finding.severity is Severity.INFO
    assert finding.params["peer_idle_timeout_s"] == pytest.approx(8.004)
    assert "keepalive_timeout=6.4" in finding.fix


# -- connection lifetime ----------------------------------------------------


def lifetime_resets():
    # Recycled at ~60 s of age, whatever the idle (busy connections).
    return [
        stale(idle, age=age, ok_max=3.0)
        for age, idle in ((60.1, 0.01), (60.3, 1.5), (60.2, 0.3), (60.6, 2.9), (60.4, 0.05))
    ]


def test_max_connection_lifetime():
    findings = diagnose(lifetime_resets(), peer_stats={})
    assert codes(findings) == ["max_connection_lifetime"]
    [finding] = findings
    assert finding.severity is Severity.WARNING
    assert finding.params["max_connection_lifetime_s"] == pytest.approx(60.1)
    assert "about 60.1 s old" in finding.summary
    assert "httpx never retries" in finding.fix


def test_lifetime_ignores_outliers_in_age():
    snaps = [*lifetime_resets(), stale(7.0, age=900.0, ok_max=3.0)]
    [finding] = rules.max_connection_lifetime(snaps, {})
    assert finding.count == 5
    assert finding.evidence["count"] == 5


def test_stale_keepalive_is_not_mistaken_for_lifetime():
    # Connections used once then idle: age tracks idle; both spread alike.
    snaps = [stale(i, ok_max=1.8) for i in (2.1, 2.2, 2.25, 2.3)]
    assert rules.max_connection_lifetime(snaps, {}) == []
    # Connections opened together and idling together: tight ages, tight idles.
    burst = [stale(6.0 + d, age=106.0 + d, ok_max=4.0) for d in (0.0, 0.01, 0.02, 0.03)]
    assert rules.max_connection_lifetime(burst, {}) == []
    assert codes(rules.stale_keepalive(burst, {})) == ["stale_keepalive"]


def test_lifetime_needs_three_failures():
    assert rules.max_connection_lifetime(lifetime_resets()[:2], {}) == []


# -- ALPN -------------------------------------------------------------------


def test_alpn_alert_httpx_http11_only():
    snaps = [
        snap(
            FaultKind.ALPN_MISMATCH,
            phase="tls",
            alpn_offered=("http/1.1",),
            error_type="httpcore.ConnectError",
            error_message="[SSL] tlsv1 alert no application protocol (_ssl.c:1006)",
        )
        for _ in range(3)
    ]
    [finding] = rules.alpn(snaps, {})
    assert finding.code == "alpn_mismatch"
    assert finding.severity is Severity.ERROR
    assert "http2=True" in finding.fix
    assert "requires HTTP/2" in finding.summary
    assert finding.evidence["alerts"] == 3
    assert finding.evidence["alpn_offered"] == ["http/1.1"]


def test_alpn_not_offered_aiohttp_h2_frames():
    s = snap(
        FaultKind.ALPN_MISMATCH,
        library="aiohttp",
        alpn_offered=(),
        tls_version="TLSv1.3",
        error_type="aiohttp.client_exceptions.ClientResponseError",
        error_message="400, message=\"Bad status line: b'\\x00\\x00\\x00\\x04'\"",
    )
    [finding] = rules.alpn([s], {})
    assert finding.code == "alpn_not_offered"
    assert "set_alpn_protocols" in finding.fix
    assert "cannot talk" in finding.fix and "httpx.AsyncClient(http2=True)" in finding.fix
    assert "never had set_alpn_protocols called" in finding.summary
    assert finding.evidence["h2_frames"] == 1


def test_alpn_aiohttp_cannot_speak_h2():
    s = snap(
        FaultKind.ALPN_MISMATCH,
        library="aiohttp",
        phase="tls",
        alpn_offered=("http/1.1",),
        error_message="tlsv1 alert no application protocol",
    )
    [finding] = rules.alpn([s], {})
    assert "aiohttp speaks only HTTP/1.1" in finding.fix


def test_alpn_offered_h2_and_still_refused():
    s = snap(
        FaultKind.ALPN_MISMATCH,
        phase="tls",
        alpn_offered=("h2", "http/1.1"),
        error_message="tlsv1 alert no application protocol",
    )
    [finding] = rules.alpn([s], {})
    assert "accepts none of" in finding.fix


def new_tls_reset(**kw):
    fields = dict(
        connection_reused=False,
        connection_requests=0,
        tls_version="TLSv1.3",
        alpn_offered=("http/1.1",),
        alpn_negotiated=None,
        peer_reuse_ok_count=0,
    )
    fields.update(kw)
    return snap(**fields)


def test_alpn_inferred_from_reset_after_handshake():
    findings = diagnose([new_tls_reset(), new_tls_reset()], peer_stats={})
    assert codes(findings) == ["alpn_mismatch"]
    assert findings[0].severity is Severity.WARNING
    assert "inferred" in findings[0].summary


def test_alpn_inference_ruled_out_when_the_peer_served_this_client():
    served = stale(2.0, ok_max=1.0)  # a connection of the same client worked
    findings = diagnose([new_tls_reset(), served], peer_stats={})
    assert "alpn_mismatch" not in codes(findings)
    assert "reset_on_connect" in codes(findings)
    # A client that offered h2 and negotiated nothing is no ALPN case either.
    offered_h2 = rules.Evidence([new_tls_reset(alpn_offered=("h2", "http/1.1"))])
    assert rules.alpn_inferred_indices(offered_h2) == frozenset()


# -- DNS --------------------------------------------------------------------


def dns(duration, name="api.internal", message="Timeout while contacting DNS servers", **kw):
    fields = dict(
        library="aiohttp",
        phase="dns",
        dns_question=name,
        dns_duration_s=duration,
        error_type="aiohttp.client_exceptions.ClientConnectorDNSError",
        error_message=f"Cannot connect to host {name}:443 ssl:default [{message}]",
        server_address=name,
    )
    fields.update(kw)
    return snap(FaultKind.DNS_TIMEOUT, **fields)


def test_dns_timeout_by_name_and_resolver():
    snaps = [
        dns(5.0, trace_id=TRACE),
        dns(5.01),
        dns(5.2),
        dns(
            1.0,
            name="other.internal",
            library="httpx",
            message="",
            error_type="httpcore.ConnectTimeout",
        ),
        dns(
            10.0,
            library="httpx",
            message="[Errno -3] Temporary failure in name resolution",
            error_type="httpcore.ConnectError",
        ),
    ]
    findings = rules.dns_timeout(snaps, {})
    by = {(f.evidence["names"][0], f.evidence["resolver"]): f for f in findings}
    assert set(by) == {
        ("api.internal", "c-ares"),
        ("api.internal", "getaddrinfo"),
        ("other.internal", "client_timeout"),
    }
    cares = by[("api.internal", "c-ares")]
    assert cares.severity is Severity.ERROR
    assert cares.count == 3
    assert "Resolving api.internal timed out 3 times after 5.01 s" in cares.summary
    assert "not the TCP connect" in cares.summary
    assert "AsyncResolver(timeout=1.0, tries=2)" in cares.fix and "ttl_dns_cache" in cares.fix
    assert cares.params["dns_duration_max_s"] == 5.2
    assert cares.evidence["trace_ids"] == [TRACE]
    assert "RES_OPTIONS" in by[("api.internal", "getaddrinfo")].fix
    assert "connect budget" in by[("other.internal", "client_timeout")].fix


# -- pool, refused, reset on connect, TLS, connect timeout ------------------


def test_pool_exhaustion_posing_as_timeouts():
    snaps = [
        snap(
            FaultKind.POOL_TIMEOUT,
            library="aiohttp",
            phase="pool",
            error_type="TimeoutError",
            error_message="",
        ),
        snap(FaultKind.POOL_TIMEOUT, phase="pool", error_type="httpcore.PoolTimeout"),
        snap(FaultKind.READ_TIMEOUT, error_type="httpcore.ReadTimeout"),
    ]
    [finding] = rules.pool_exhaustion(snaps, {})
    assert finding.severity is Severity.WARNING
    assert finding.count == 2
    assert "own pool" in finding.summary and "ConnectionTimeoutError" in finding.summary
    assert "slow responses are holding" in finding.summary
    assert "httpx.Limits(max_connections" in finding.fix and "limit_per_host" in finding.fix


def test_connect_refused():
    snaps = [snap(FaultKind.CONNECT_REFUSED, phase="connect", errno=111, peer_address="127.0.0.7")]
    [finding] = diagnose(snaps, peer_stats={})
    assert finding.code == "connect_refused"
    assert finding.severity is Severity.ERROR
    assert "retries=3" in finding.fix
    assert finding.evidence["peer_addresses"] == ["127.0.0.7"]


def test_reset_on_connect():
    snaps = [
        snap(
            phase="connect", connection_reused=None, errno=104, error_type="httpcore.ConnectError"
        ),
        snap(phase="request", connection_reused=False, connection_requests=0),
    ]
    [finding] = diagnose(snaps, peer_stats={})
    assert finding.code == "reset_on_connect"
    assert finding.count == 2
    assert finding.evidence["during_connect_or_tls"] == 1
    assert "overloaded" in finding.summary


@pytest.mark.parametrize(
    ("message", "category"),
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
            "issuer certificate (_ssl.c:1006)",
            "untrusted_issuer",
        ),
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
            "certificate is not valid for 'x'. (_ssl.c:1006)",
            "name_mismatch",
        ),
        ("certificate verify failed: certificate has expired", "expired"),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", "not_tls"),
        ("something else entirely", "other"),
    ],
)
def test_tls_error_categories(message, category):
    [finding] = rules.tls_error(
        [snap(FaultKind.TLS_ERROR, phase="tls", error_message=message)], {}
    )
    assert finding.code == "tls_error"
    assert finding.severity is Severity.ERROR
    assert finding.evidence["category"] == category


def test_connect_timeout():
    snaps = [
        snap(FaultKind.CONNECT_TIMEOUT, phase="connect"),
        snap(FaultKind.CONNECT_TIMEOUT, phase="tls"),
    ]
    [finding] = rules.connect_timeout(snaps, {})
    assert finding.count == 2 and "1 in the TLS handshake" in finding.summary


def test_unexplained_mid_response_resets_are_warnings():
    snaps = [snap(phase="response", connection_reused=False, connection_requests=0)]
    [finding] = diagnose(snaps, peer_stats={})
    assert finding.code == "unexplained_resets"
    assert finding.severity is Severity.WARNING
    assert finding.evidence["mid_response"] == 1


# -- the engine -------------------------------------------------------------


def test_diagnose_orders_by_severity_then_count():
    snaps = [
        stale(2.3, ok_max=1.8),
        stale(2.6, ok_max=1.8),
        snap(FaultKind.CONNECT_REFUSED, phase="connect", server_address="down.test"),
        *[snap(FaultKind.POOL_TIMEOUT, phase="pool", server_address="busy.test")] * 5,
    ]
    findings = diagnose(snaps, peer_stats={})
    assert codes(findings) == ["connect_refused", "pool_exhaustion", "stale_keepalive"]


def test_rules_are_pure():
    snaps = [*lifetime_resets(), stale(2.3, ok_max=1.8, server_port=1), new_tls_reset(), dns(1.0)]
    before = list(snaps)
    first = diagnose(snaps, peer_stats={})
    assert snaps == before
    assert diagnose(list(reversed(snaps)), peer_stats={}) == first
    for rule in rules.RULES:
        assert rule([], {}) == []


def test_peer_stats_keys_are_normalised():
    snaps = [stale(5.4), stale(6.0)]
    stats = {"reuse_ok_count": 3, "reuse_ok_max_idle_s": 4.7, "reuse_ok_recent_idle_s": [4.7]}
    for key in (("api.test", 443), "api.test:443"):
        [finding] = diagnose(snaps, peer_stats={key: stats})
        assert finding.params["bracket_low_s"] == 4.7


def test_diagnose_defaults_to_this_process(instrumented):
    assert seedance_otel.snapshots() == []
    assert seedance_otel.diagnose() == []


def test_exported_members():
    import seedance_otel.diagnosis as package

    assert sorted(package.__all__) == package.__all__
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert package.diagnose is diagnose
