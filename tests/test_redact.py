"""Secrets never reach a snapshot: the redaction corpus."""

from __future__ import annotations

from typing import Any

import pytest

from seedance_otel._redact import redact_message, redact_url

SECRET = "s3cr3tvalue"

URL_CASES = [
    # (input, expected)
    ("https://user:pw@example.com/a", "https://REDACTED:REDACTED@example.com/a"),
    ("https://user@example.com:8443/a?b=1", "https://REDACTED:REDACTED@example.com:8443/a?b=1"),
    ("https://example.com/a#frag", "https://example.com/a"),
    ("https://example.com/a?token=" + SECRET, "https://example.com/a?token=REDACTED"),
    (
        "https://example.com/a?page=2&api_key=" + SECRET,
        "https://example.com/a?page=2&api_key=REDACTED",
    ),
    (
        "https://example.com/a?AWSAccessKeyId=" + SECRET,
        "https://example.com/a?AWSAccessKeyId=REDACTED",
    ),
    ("https://example.com/a?Signature=" + SECRET, "https://example.com/a?Signature=REDACTED"),
    ("https://example.com/a?sig=" + SECRET, "https://example.com/a?sig=REDACTED"),
    (
        "https://s3.example.com/o?X-Amz-Signature="
        + SECRET
        + "&X-Amz-Credential="
        + SECRET
        + "&X-Amz-Security-Token="
        + SECRET,
        "https://s3.example.com/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED"
        "&X-Amz-Security-Token=REDACTED",
    ),
    (
        "https://storage.example.com/o?X-Goog-Signature=" + SECRET,
        "https://storage.example.com/o?X-Goog-Signature=REDACTED",
    ),
    ("https://example.com/a?PASSWORD=" + SECRET, "https://example.com/a?PASSWORD=REDACTED"),
    (
        "https://example.com/a?client_secret=" + SECRET,
        "https://example.com/a?client_secret=REDACTED",
    ),
    ("https://example.com/a?access_key=" + SECRET, "https://example.com/a?access_key=REDACTED"),
    (
        "https://example.com/a?Authorization=" + SECRET,
        "https://example.com/a?Authorization=REDACTED",
    ),
    (
        "https://example.com/a?refresh_token=" + SECRET + "#x",
        "https://example.com/a?refresh_token=REDACTED",
    ),
    ("http://[::1]:8080/a?x=1", "http://[::1]:8080/a?x=1"),
    ("https://example.com/a?q=hello", "https://example.com/a?q=hello"),
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES)
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    assert SECRET not in redact_url(url)


def test_unparseable_url_keeps_no_secret():
    out = redact_url("http://user:" + SECRET + "@[::1/x")
    assert SECRET not in out


@pytest.mark.parametrize(
    "message",
    [
        f"Connection timeout to host https://bob:{SECRET}@api.example.com/v1?token={SECRET}",
        f"Cannot connect to host https://api.example.com/v1?api_key={SECRET}#{SECRET}",
        f"error talking to api: password={SECRET}",
        f"bad request (api_key: {SECRET})",
        f"GET http://[::1]:8080/p?sig={SECRET} failed",
        f"rejected session_id={SECRET}; auth={SECRET}",
        f"see https://user:{SECRET}@[2001:db8::1]/x?token={SECRET} (redirect)",
    ],
)
def test_redact_message(message):
    out = redact_message(message)
    assert SECRET not in out
    assert "REDACTED" in out


def test_message_without_secrets_is_unchanged():
    text = "[Errno 104] Connection reset by peer"
    assert redact_message(text) == text


def test_long_messages_are_bounded():
    assert len(redact_message("x" * 10_000)) <= 1024


def _kept(redact: Any) -> Any:
    """What ``redact`` remembers (``functools.lru_cache``'s ``cache_info``)."""
    return redact.cache_info()


def test_repeated_inputs_are_answered_from_a_bounded_memory():
    """A storm repeats its messages and URLs; the answer stays the same, the memory bounded."""
    message = "Connect call failed ('127.0.0.1', 9) https://u:p@api.example.com/v1?token=abc#frag"
    first = redact_message(message)
    hits = _kept(redact_message).hits
    assert redact_message(message) == first
    assert _kept(redact_message).hits == hits + 1
    assert "abc" not in first and "u:p" not in first
    for i in range(600):
        redact_url(f"https://api.example.com/v1?token=secret{i}")
    assert _kept(redact_url).currsize <= 256
    assert redact_url("https://api.example.com/v1?token=secret599") == (
        "https://api.example.com/v1?token=REDACTED"
    )


def test_long_inputs_are_redacted_but_not_remembered():
    before = _kept(redact_message).currsize
    long_message = "password=hunter2 " + "x" * 5000
    assert "hunter2" not in redact_message(long_message)
    assert "hunter2" not in redact_message(long_message)
    assert _kept(redact_message).currsize == before
