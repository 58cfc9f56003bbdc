"""Hand-built evidence for the cases real load balancers and servers produced.

Each case is the snapshot pattern seen against nginx or HAProxy on loopback
(``test_diagnosis_real_peers.py`` produces them for real), reduced to the
numbers that matter: idle gaps packed at the timeout, a reset a hair below
the longest success, idle closes polled late, a handshake whose ALPN offer is
unknown, a total timeout during a lookup, a peer that ends connections after
N requests. Also: the engine's architecture (rules declare what they
explain, library facts come from the registry, nothing reaches up into the
process's state).
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import pytest

from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel.diagnosis import Severity, diagnose
from seedance_otel.diagnosis import _rules as rules
from seedance_otel.diagnosis._evidence import Evidence

from snapshot_factory import make_snapshot


def codes(findings):
    return sorted(f.code for f in findings)


def idle_close(idle: float, library: str = "aiohttp", **kw) -> ResetContextSnapshot:
    fields = dict(
        library=library,
        phase="idle",
        error_type="EOF",
        error_message="",
        connection_reused=True,
        connection_idle_s=idle,
        connection_age_s=idle + 0.002,
        connection_requests=1,
    )
    fields.update(kw)
    return make_snapshot(FaultKind.PEER_CLOSED_IDLE, **fields)


def reuse_reset(idle: float, **kw) -> ResetContextSnapshot:
    fields: dict[str, Any] = dict(
        connection_reused=True,
        connection_idle_s=idle,
        connection_age_s=idle + 0.002,
        connection_requests=1,
    )
    fields.update(kw)
    return make_snapshot(**fields)


# -- 1 and 2: idle gaps packed at the timeout --------------------------------


def packed_at_two_seconds() -> list[ResetContextSnapshot]:
    """nginx keepalive_timeout 2s, aiohttp, idle gaps 1.990-2.008 s, one request each.

    33 idle closes seen as the FIN arrived, and one reset of a request sent
    at idle 1.99956 s - just below a reuse that worked after 1.99964 s.
    """
    closes = [
        idle_close(1.99 + i * 0.018 / 32, peer_reuse_ok_max_idle_s=1.99964, peer_reuse_ok_count=9)
        for i in range(33)
    ]
    reset = reuse_reset(
        1.99956,
        library="aiohttp",
        http_method="POST",
        peer_reuse_ok_max_idle_s=1.99964,
        peer_reuse_ok_count=9,
    )
    return [*closes, reset]


def test_age_equal_to_idle_is_no_connection_lifetime():
    """Connections that served one request are as old as they were idle: no age limit."""
    findings = diagnose(packed_at_two_seconds())
    assert "max_connection_lifetime" not in codes(findings)
    [stale] = [f for f in findings if f.code == "stale_keepalive"]
    assert stale.count == 34
    assert stale.params["peer_idle_timeout_s"] == pytest.approx(2.0, abs=0.02)


def test_reset_a_hair_below_the_longest_success_is_the_timeout():
    """Busy connections (ages vary) closed at idle 2.0 s; one request sent at 1.99956 s
    met the close racing it, below a reuse that worked after 1.99964 s."""
    ok: dict[str, Any] = dict(peer_reuse_ok_max_idle_s=1.99964, peer_reuse_ok_count=40)
    snaps = [
        idle_close(
            2.0 + i * 0.002, connection_age_s=5.0 + 1.7 * i, connection_requests=3 + i, **ok
        )
        for i in range(6)
    ]
    snaps.append(reuse_reset(1.99956, library="aiohttp", connection_age_s=9.1, **ok))
    for findings in (diagnose(snaps), diagnose(packed_at_two_seconds())):
        assert codes(findings) == ["stale_keepalive"]  # nothing left unexplained
        [stale] = findings
        assert stale.evidence["resets"] == 1
        assert stale.severity is Severity.WARNING
        assert "resets_not_explained_idle_s" not in stale.evidence


def test_idle_near_the_longest_success_does_not_refute_the_idle_timeout():
    """Ages clustered (1 s of work then ~5 s idle), idles within 1 % of a success:
    the failures are still the idle timeout, not an age limit."""
    snaps = [
        reuse_reset(5.0 + i * 0.01, connection_age_s=6.0 + i * 0.01, peer_reuse_ok_max_idle_s=5.02)
        for i in range(5)
    ]
    snaps = [
        ResetContextSnapshot(**{**s.to_dict(), "kind": s.kind, "peer_reuse_ok_count": 4})
        for s in snaps
    ]
    assert rules.max_connection_lifetime(snaps) == []
    [stale] = rules.stale_keepalive(snaps)
    assert stale.count == 5


# -- 4: upper bounds only ----------------------------------------------------


def test_upper_bounds_only_say_so_and_stay_below_common_defaults():
    """httpx polling every 5 s against a 2 s timeout: closes noticed at 5 s only."""
    snaps = [idle_close(5.0 + i * 0.003, library="httpx", connection_requests=i) for i in range(4)]
    [finding] = diagnose(snaps)
    assert finding.code == "stale_keepalive" and finding.severity is Severity.INFO
    assert finding.evidence["estimate_basis"] == "upper_bound"
    assert "only an upper bound" in finding.summary
    assert finding.params["peer_idle_timeout_s"] is None
    assert finding.params["bracket_high_s"] == 5.0
    assert finding.params["safe_below_s"] == 2.0
    assert finding.params["recommended_keepalive_s"] == 1.6
    assert "keepalive_expiry=1.6" in finding.fix
    assert "only known to be 5 s or less" in finding.fix
    assert "To sharpen the estimate" in finding.fix


def test_upper_bound_below_every_common_default_keeps_its_margin():
    [finding] = diagnose([idle_close(1.2, library="httpx") for _ in range(2)])
    assert finding.params["safe_below_s"] is None
    assert finding.params["recommended_keepalive_s"] == 0.9
    assert "only bounded above" in finding.fix


# -- 5: ALPN offer unknown ---------------------------------------------------


def new_tls_reset(**kw) -> ResetContextSnapshot:
    fields: dict[str, Any] = dict(
        library="aiohttp",
        connection_reused=False,
        connection_requests=0,
        tls_version="TLSv1.3",
        alpn_offered=None,
        alpn_negotiated=None,
        peer_reuse_ok_count=0,
        error_type="aiohttp.client_exceptions.ClientOSError",
    )
    fields.update(kw)
    return make_snapshot(**fields)


def test_reset_after_empty_handshake_points_at_alpn_when_the_offer_is_unknown():
    """An SSLContext made before instrument(): its offer is unknown, the cause still ALPN."""
    findings = diagnose([new_tls_reset(), new_tls_reset()])
    assert codes(findings) == ["alpn_mismatch"]
    [finding] = findings
    assert finding.severity is Severity.WARNING
    assert "requires HTTP/2" in finding.summary and "unknown" in finding.summary
    assert finding.evidence["alpn_offered"] == "unknown"
    assert "created before seedance_otel.instrument()" in finding.fix
    assert 'set_alpn_protocols(["http/1.1"])' in finding.fix  # the library's own advice


def test_unknown_offer_with_a_served_request_is_not_alpn():
    served = reuse_reset(0.5, library="aiohttp", connection_requests=3, tls_version="TLSv1.3")
    findings = diagnose([new_tls_reset(), served])
    assert "alpn_mismatch" not in codes(findings)
    assert "reset_on_connect" in codes(findings)


# -- 6: a client timeout during a lookup -------------------------------------


def test_total_timeout_during_lookup_is_the_client_timeout_not_resolv_conf():
    """aiohttp ClientTimeout(total=1.5) cancels an aiodns lookup: CancelledError, no message."""
    snap = make_snapshot(
        FaultKind.DNS_TIMEOUT,
        library="aiohttp",
        phase="dns",
        error_type="asyncio.exceptions.CancelledError",
        error_message="",
        server_address="orders.seedance.test",
        server_port=8080,
        dns_question="orders.seedance.test",
        dns_duration_s=1.502,
    )
    [finding] = diagnose([snap])
    assert finding.evidence["resolver"] == "client_timeout"
    assert "the client's own timeout (connect or total)" in finding.summary
    assert "resolv.conf" not in finding.fix
    assert "ClientTimeout(total=..., connect=...) include DNS" in finding.fix


# -- 7: a peer that ends connections after N requests ------------------------


def after_n(n: int, idles: list[float], **kw) -> list[ResetContextSnapshot]:
    """Resets of the request after the ``n``th, after varied idle times and ages."""
    return [
        reuse_reset(
            idle,
            connection_requests=n,
            connection_age_s=n * 0.2 + idle * 3 + index * 0.37,
            peer_reuse_ok_max_idle_s=0.9,
            peer_reuse_ok_count=40,
            **kw,
        )
        for index, idle in enumerate(idles)
    ]


def test_resets_at_one_request_count_whatever_the_idle_are_a_request_limit():
    snaps = after_n(5, [0.02, 0.4, 0.11, 0.7, 0.05, 0.3])
    findings = diagnose(snaps)
    assert codes(findings) == ["max_requests_per_connection"]
    [finding] = findings
    assert finding.params["requests_per_connection"] == 5
    assert finding.severity is Severity.WARNING
    assert "after 5 requests" in finding.summary and "Connection: close" in finding.summary
    assert "Connection: close on the 5th response" in finding.fix
    assert "httpx never retries" in finding.fix  # the library's own retry advice
    assert finding.count == 6


def test_request_count_shared_by_failures_past_the_idle_timeout_is_no_limit():
    """A periodic client: every failure after 3 requests, but each after 10 s idle
    while reuses worked only up to 2 s: the idle timeout, not a request limit."""
    snaps = [
        reuse_reset(
            10.0 + i * 0.1,
            connection_requests=3,
            connection_age_s=10.5 + i * 3,
            peer_reuse_ok_max_idle_s=2.0,
            peer_reuse_ok_count=30,
        )
        for i in range(6)
    ]
    assert codes(diagnose(snaps)) == ["stale_keepalive"]


def test_request_limit_needs_a_majority_at_one_count():
    snaps = after_n(5, [0.02, 0.4]) + after_n(7, [0.11, 0.7]) + after_n(9, [0.05, 0.3])
    assert "max_requests_per_connection" not in codes(diagnose(snaps))


# -- Architecture: declared explanations, library facts, no process state ----


def test_every_reset_some_cause_explains_is_left_out_of_the_catch_all():
    snaps = [
        *packed_at_two_seconds(),
        *after_n(4, [0.02, 0.4, 0.11, 0.7], server_address="limit.test"),
        new_tls_reset(server_address="h2.test"),
        make_snapshot(phase="response", server_address="flaky.test"),
    ]
    evidence = Evidence(snaps)
    claimed = rules.explained(evidence)
    resets = set(evidence.of_kind(FaultKind.CONNECTION_RESET))
    [left] = resets - claimed
    assert snaps[left].server_address == "flaky.test"
    [catch_all] = rules.unexplained_resets(snaps)
    assert catch_all.evidence["peers"] == ["flaky.test:443"]


def test_shared_computations_run_once_per_diagnosis(monkeypatch):
    """The age clusters feed three rules (keep-alive, lifetime, catch-all): computed once."""
    from seedance_otel.diagnosis._rules import _lifetime

    calls = []
    original = _lifetime._densest

    def counting(items):
        calls.append(len(items))
        return original(items)

    monkeypatch.setattr(_lifetime, "_densest", counting)
    diagnose(packed_at_two_seconds())
    assert calls == [34]  # one peer, one computation
    diagnose(packed_at_two_seconds())
    assert calls == [34, 34]  # and again for the next diagnosis, not remembered across


def test_unknown_library_gets_generic_advice():
    snaps = [reuse_reset(v, library="urllib3", peer_reuse_ok_max_idle_s=1.8) for v in (2.3, 2.6)]
    snaps = [
        ResetContextSnapshot(**{**s.to_dict(), "kind": s.kind, "peer_reuse_ok_count": 3})
        for s in snaps
    ]
    [finding] = diagnose(snaps)
    assert finding.fix.startswith("Keep idle connections to this peer for at most 1.4 s.")
    assert "httpx" not in finding.fix and "aiohttp" not in finding.fix
    refused = make_snapshot(FaultKind.CONNECT_REFUSED, library="asyncio", phase="connect")
    [finding] = diagnose([refused])
    assert finding.fix.startswith("Retry failed connects with backoff")


def test_keepalive_defaults_and_words_come_from_the_library_description():
    from seedance_otel.instrumentation.registry import library_named

    httpx = library_named("httpx")
    assert httpx is not None and httpx.default_keepalive_s is not None
    snaps = [reuse_reset(i, peer_reuse_ok_max_idle_s=4.79) for i in (4.82, 4.9, 4.97, 4.99)]
    snaps = [
        ResetContextSnapshot(**{**s.to_dict(), "kind": s.kind, "peer_reuse_ok_count": 50})
        for s in snaps
    ]
    [finding] = diagnose(snaps)
    default = f"{httpx.default_keepalive_s:g} s"
    assert f"default {httpx.advice.keepalive_setting_name} ({default}) is just above" in (
        finding.summary
    )
    assert httpx.advice.keepalive_setting is not None
    assert httpx.advice.keepalive_setting("3.8") in finding.fix


PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "seedance_otel"


def test_diagnosis_names_no_library_and_reads_no_process_state():
    """Library facts come from the registry; the engine never imports the live API."""
    for path in sorted((PACKAGE / "diagnosis").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert "_api" not in module.split("."), (path, module)
                assert "_runtime" not in module.split("."), (path, module)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.lower()
                for name in ("aiohttp", "httpx", "httpcore"):
                    assert name not in text, (path, node.lineno, node.value)
