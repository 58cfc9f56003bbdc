"""The classification table, rule by rule, on exception chains built as the libraries build them.

Real-fault tests (test_resets.py, test_dns_alpn.py) check the same rules on
what the libraries really raise; these pin down each rule and the order.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpcore
import httpx
import pytest
from aiohttp import client_exceptions as aio
from aiohttp.client_reqrep import ConnectionKey

from seedance_otel._classify import RULES, Classification, HookFacts
from seedance_otel._classify import classify as classify_with
from seedance_otel.instrumentation.registry import exception_names

try:
    BaseExceptionGroup
except NameError:  # Python 3.10: anyio's backport
    from exceptiongroup import BaseExceptionGroup
from seedance_otel._snapshot import FaultKind


def linked(*chain: BaseException, suppress: bool = False) -> BaseException:
    """``chain[0]`` raised from ``chain[1]`` raised from ... (as ``raise X from Y``)."""
    for outer, inner in zip(chain, chain[1:]):
        if suppress:
            outer.__context__ = inner
            outer.__suppress_context__ = True
        else:
            outer.__cause__ = inner
    return chain[0]


def _key() -> ConnectionKey:
    return ConnectionKey("example.com", 443, True, True, None, None, None)


def classify(exc: BaseException | None, facts: HookFacts | None = None) -> Classification | None:
    """As the capture path does, knowing every registered library's exceptions."""
    return classify_with(exc, facts, exception_names())


def kind_of(exc: BaseException, **facts: object) -> FaultKind | None:
    result = classify(exc, HookFacts(**facts))  # type: ignore[arg-type]
    return result.kind if result else None


ALPN_ALERT = ssl.SSLError(
    1,
    "[SSL: TLSV1_ALERT_NO_APPLICATION_PROTOCOL] tlsv1 alert no application protocol (_ssl.c:1006)",
)
ALPN_ALERT_NO_REASON = ssl.SSLError(1, "[SSL] tlsv1 alert no application protocol (_ssl.c:1006)")

CASES = [
    # --- alpn_mismatch
    (
        "aiohttp alert 120",
        lambda: linked(
            aio.ClientConnectorSSLError(_key(), ALPN_ALERT_NO_REASON), ALPN_ALERT_NO_REASON
        ),
        {},
        FaultKind.ALPN_MISMATCH,
    ),
    (
        "httpx alert 120",
        lambda: linked(httpx.ConnectError(""), httpcore.ConnectError(ALPN_ALERT), ALPN_ALERT),
        {},
        FaultKind.ALPN_MISMATCH,
    ),
    (
        "h2 frame read as h1 (httpx)",
        lambda: linked(
            httpx.RemoteProtocolError("illegal status line: bytearray(b'\\x00\\x00')"),
            httpcore.RemoteProtocolError("illegal status line"),
        ),
        {"alpn_offered": (), "alpn_negotiated": None},
        FaultKind.ALPN_MISMATCH,
    ),
    # --- tls_error
    (
        "certificate",
        lambda: linked(
            httpx.ConnectError(""),
            ssl.SSLCertVerificationError(
                1, "certificate verify failed: unable to get local issuer certificate"
            ),
        ),
        {},
        FaultKind.TLS_ERROR,
    ),
    (
        "wrong version",
        lambda: linked(
            httpx.ConnectError(""),
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        ),
        {},
        FaultKind.TLS_ERROR,
    ),
    # --- dns
    (
        "gaierror EAI_AGAIN",
        lambda: linked(
            httpx.ConnectError(""), socket.gaierror(-3, "Temporary failure in name resolution")
        ),
        {},
        FaultKind.DNS_TIMEOUT,
    ),
    (
        "aiodns timeout",
        lambda: linked(
            aio.ClientConnectorDNSError(
                _key(), OSError(None, "Timeout while contacting DNS servers")
            ),
            OSError(None, "Timeout while contacting DNS servers"),
        ),
        {},
        FaultKind.DNS_TIMEOUT,
    ),
    (
        "client timeout while resolving",
        lambda: linked(httpx.ConnectTimeout(""), httpcore.ConnectTimeout(""), TimeoutError()),
        {"phase": "dns"},
        FaultKind.DNS_TIMEOUT,
    ),
    (
        "gaierror EAI_NONAME",
        lambda: linked(httpx.ConnectError(""), socket.gaierror(-2, "Name or service not known")),
        {},
        FaultKind.DNS_ERROR,
    ),
    # --- refused
    (
        "aiohttp refused",
        lambda: aio.ClientConnectorError(
            _key(), ConnectionRefusedError(111, "Connect call failed")
        ),
        {},
        FaultKind.CONNECT_REFUSED,
    ),
    (
        "anyio group refused",
        lambda: linked(
            httpx.ConnectError("All connection attempts failed"),
            OSError("All connection attempts failed"),
            ConnectionRefusedError(111, "refused"),
        ),
        {},
        FaultKind.CONNECT_REFUSED,
    ),
    # --- timeouts
    (
        "httpx pool timeout",
        lambda: linked(httpx.PoolTimeout(""), httpcore.PoolTimeout("")),
        {},
        FaultKind.POOL_TIMEOUT,
    ),
    (
        "aiohttp pool wait",
        lambda: linked(aio.ConnectionTimeoutError("Connection timeout"), asyncio.TimeoutError()),
        {"phase": "pool"},
        FaultKind.POOL_TIMEOUT,
    ),
    (
        "httpx connect timeout",
        lambda: linked(httpx.ConnectTimeout(""), httpcore.ConnectTimeout("")),
        {},
        FaultKind.CONNECT_TIMEOUT,
    ),
    (
        "aiohttp connect timeout",
        lambda: linked(
            aio.ConnectionTimeoutError("Connection timeout to host"), asyncio.TimeoutError()
        ),
        {},
        FaultKind.CONNECT_TIMEOUT,
    ),
    (
        "httpx read timeout",
        lambda: linked(httpx.ReadTimeout(""), httpcore.ReadTimeout("")),
        {},
        FaultKind.READ_TIMEOUT,
    ),
    (
        "aiohttp sock_read",
        lambda: aio.SocketTimeoutError("Timeout on reading data from socket"),
        {},
        FaultKind.READ_TIMEOUT,
    ),
    (
        "httpx write timeout",
        lambda: linked(httpx.WriteTimeout(""), httpcore.WriteTimeout("")),
        {},
        FaultKind.WRITE_TIMEOUT,
    ),
    (
        "aiohttp total timeout mid-response",
        lambda: asyncio.CancelledError(),
        {"phase": "request", "timed_out": True},
        FaultKind.READ_TIMEOUT,
    ),
    # --- connection_reset
    (
        "aiohttp RST",
        lambda: aio.ClientOSError(104, "Connection reset by peer"),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    ("aiohttp FIN", lambda: aio.ServerDisconnectedError(), {}, FaultKind.CONNECTION_RESET),
    (
        "aiohttp write to closing",
        lambda: linked(
            aio.ClientOSError(None, "Can not write request body for http://x"),
            aio.ClientConnectionResetError("Cannot write to closing transport"),
        ),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "aiohttp RST on connect",
        lambda: aio.ClientConnectorError(_key(), ConnectionResetError(104, "Connect call failed")),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "httpx RST, chain hidden by `from None`",
        lambda: linked(
            httpx.ReadError(""),
            linked(httpcore.ReadError(""), ConnectionResetError(104, "Connection reset by peer")),
            suppress=True,
        ),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "httpx EOF",
        lambda: linked(
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpcore.RemoteProtocolError("Server disconnected without sending a response."),
        ),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "httpx EPIPE",
        lambda: linked(httpx.WriteError(""), BrokenPipeError(32, "Broken pipe")),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "ssl EOF is a peer close, not TLS",
        lambda: linked(
            httpx.ConnectError(""), ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
        ),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "asyncio stream EOF",
        lambda: asyncio.IncompleteReadError(b"", 10),
        {},
        FaultKind.CONNECTION_RESET,
    ),
    (
        "reset during TLS handshake",
        lambda: linked(httpx.ConnectError(""), ConnectionResetError(104, "reset")),
        {"phase": "tls"},
        FaultKind.CONNECTION_RESET,
    ),
    # --- not faults
    ("cancelled by the caller", lambda: asyncio.CancelledError(), {}, None),
    ("keyboard interrupt", lambda: KeyboardInterrupt(), {}, None),
    ("http error status", lambda: ValueError("bad json"), {}, None),
    (
        "cancelled with a reset in its context",
        lambda: linked(asyncio.CancelledError(), ConnectionResetError(104, "x"), suppress=True),
        {},
        None,
    ),
]


@pytest.mark.parametrize(("name", "make", "facts", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule(name, make, facts, expected):
    assert kind_of(make(), **facts) == expected


def test_ssl_flow_control_in_context_is_not_a_tls_error():
    # anyio leaves an SSLWantReadError behind in __context__ of the RST.
    want = ssl.SSLWantReadError(2, "The operation did not complete (read)")
    rst = ConnectionResetError(104, "Connection reset by peer")
    rst.__context__ = want
    exc = linked(httpx.ReadError(""), httpcore.ReadError(""), rst)
    assert kind_of(exc) == FaultKind.CONNECTION_RESET


def test_errno_and_phase_are_reported():
    exc = linked(httpx.ReadError(""), httpcore.ReadError(""), ConnectionResetError(104, "x"))
    result = classify(exc, HookFacts(phase="response"))
    assert result is not None
    assert (result.kind, result.phase, result.errno, result.rule) == (
        FaultKind.CONNECTION_RESET,
        "response",
        104,
        "peer_closed",
    )
    dns = classify(linked(httpx.ConnectError(""), socket.gaierror(-3, "x")))
    assert dns is not None and dns.phase == "dns" and dns.errno == -3


def test_exception_groups_are_searched():
    group = BaseExceptionGroup(
        "x", [OSError(101, "unreachable"), ConnectionRefusedError(111, "refused")]
    )
    exc = linked(httpx.ConnectError(""), OSError("All connection attempts failed"), group)
    assert kind_of(exc) == FaultKind.CONNECT_REFUSED


def test_rules_are_named_uniquely_and_ordered_alpn_first():
    names = [rule[0] for rule in RULES]
    assert len(names) == len(set(names))
    assert names.index("alpn_alert") < names.index("other_tls")
    assert names.index("dns_timeout") < names.index("connect_timeout")
    assert names[-1] == "peer_closed"


def test_a_broken_str_does_not_break_classification():
    class Weird(ConnectionResetError):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert kind_of(Weird(104, "x")) == FaultKind.CONNECTION_RESET


# --- remembered verdicts: a storm's repeats skip the rules, nothing else changes


def _reset() -> BaseException:
    return linked(
        httpx.ReadError(""), httpcore.ReadError(""), ConnectionResetError(104, "reset by peer")
    )


def test_a_repeated_fault_reuses_its_verdict():
    first = classify(_reset(), HookFacts(phase="request"))
    again = classify(_reset(), HookFacts(phase="request"))
    assert first is not None and first.kind is FaultKind.CONNECTION_RESET
    assert again is first


def test_a_verdict_is_remembered_by_everything_that_decided_it():
    # The same classes with another message: the peer hanging up, or not a fault.
    hung_up = classify(
        httpx.RemoteProtocolError("Server disconnected without sending a response.")
    )
    other = classify(httpx.RemoteProtocolError("malformed chunk"))
    assert hung_up is not None and hung_up.kind is FaultKind.CONNECTION_RESET
    assert other is None
    # The same exception with other facts from the hook: the phase is the hook's.
    in_response = classify(_reset(), HookFacts(phase="response"))
    assert in_response is not None and in_response.phase == "response"
    assert classify(_reset(), HookFacts(phase="request")).phase == "request"  # type: ignore[union-attr]
    # The same class and message from another errno.
    refused = classify(linked(httpx.ConnectError("x"), OSError(111, "x")))
    reset = classify(linked(httpx.ConnectError("x"), OSError(104, "x")))
    assert refused is not None and refused.kind is FaultKind.CONNECT_REFUSED
    assert reset is not None and reset.kind is FaultKind.CONNECTION_RESET


def test_remembered_verdicts_are_bounded():
    from seedance_otel import _classify

    for i in range(_classify._VERDICTS_KEPT + 50):
        assert kind_of(ConnectionResetError(104, f"reset {i}")) is FaultKind.CONNECTION_RESET
    names = exception_names()
    remembered = _classify._verdicts[id(names)][1]
    assert 0 < len(remembered) <= _classify._VERDICTS_KEPT


def test_cancellations_from_different_cancel_scopes_share_a_verdict():
    # anyio names the cancel scope in the message; no rule reads it.
    def timed_out(scope: str) -> BaseException:
        return linked(
            httpx.ConnectTimeout(""), asyncio.CancelledError(f"Cancelled by cancel scope {scope}")
        )

    first = classify(timed_out("7f3a01"), HookFacts(phase="connect"))
    again = classify(timed_out("7f3b99"), HookFacts(phase="connect"))
    assert first is not None and first.kind is FaultKind.CONNECT_TIMEOUT
    assert again is first


def test_walk_chain_follows_lines_as_the_tree_walk_does():
    """The straight-line walk (most chains) gives what the general walk gives:
    causes before contexts, cycles cut, groups handed to the tree walk."""
    from seedance_otel._classify import _MAX_CHAIN, _walk_tree, walk_chain

    def line(n):
        items = [OSError(i) for i in range(n)]
        for outer, inner in zip(items, items[1:]):
            outer.__context__ = inner
        return items

    plain = line(3)
    caused = line(3)
    caused[0].__cause__ = ValueError("cause")  # the cause wins over the context
    cycle = line(3)
    cycle[2].__context__ = cycle[0]
    long = line(_MAX_CHAIN + 5)
    grouped = line(2)
    group = Exception("a group")  # as ExceptionGroup (3.11+) holds its members
    group.exceptions = (OSError("a"), ValueError("b"))  # type: ignore[attr-defined]
    grouped[1].__context__ = group
    for case in (plain, caused, cycle, long, grouped):
        walked = walk_chain(case[0])
        assert walked == _walk_tree(case[0])
    assert walk_chain(cycle[0]) == cycle
    assert len(walk_chain(long[0])) == _MAX_CHAIN
    assert [type(e) for e in walk_chain(caused[0])] == [OSError, ValueError]
    assert len(walk_chain(grouped[0])) == 5
