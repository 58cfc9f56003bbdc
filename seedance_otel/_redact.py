"""Keep secrets out of snapshots: URLs and error messages are scrubbed before storage.

What is removed: userinfo (replaced by ``REDACTED:REDACTED`` as the semantic
conventions for ``url.full`` ask), the values of query parameters whose names
are secret (the semconv list plus any name containing password, secret, token,
api_key/apikey, access_key, auth or signature, case-insensitively), and
fragments. Headers and bodies are never read at all.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = ["redact_message", "redact_url"]

REDACTED = "REDACTED"

_SEMCONV_SECRET_KEYS = frozenset(
    k.lower()
    for k in (
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
    )
)
# One list of secret-looking key names, for query parameters and for
# ``key=value`` pairs in messages alike.
_SECRET_WORDS = (
    r"pass(?:word|wd)?|secret|token|api[-_]?key|access[-_]?key|auth|signature|credential|session"
)
_SECRET_KEY_PATTERN = re.compile(_SECRET_WORDS, re.IGNORECASE)
# A URL in free text; the host may be a bracketed IPv6 literal.
_URL_IN_TEXT = re.compile(
    r"""[A-Za-z][A-Za-z0-9+.\-]*://(?:\[[0-9A-Za-z:.%]*\]|[^\s'"<>\[\]()])+"""
)
_KEY_VALUE_IN_TEXT = re.compile(
    rf"""(?P<key>[A-Za-z0-9_\-]*(?:{_SECRET_WORDS}|sig)[A-Za-z0-9_\-]*)(?P<sep>\s*[=:]\s*)(?P<value>[^\s&'",;]+)""",
    re.IGNORECASE,
)


def _is_secret_key(key: str) -> bool:
    name = unquote(key).strip().lower()
    return name in _SEMCONV_SECRET_KEYS or bool(_SECRET_KEY_PATTERN.search(name))


def _redact_query(query: str) -> str:
    if not query:
        return query
    parts = []
    for pair in query.split("&"):
        key, sep, _value = pair.partition("=")
        if sep and _is_secret_key(key):
            parts.append(f"{key}={REDACTED}")
        else:
            parts.append(pair)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """``url`` without userinfo, secret query values or fragment.

    Anything that cannot be parsed is reduced to its scheme and host or, failing
    that, to ``REDACTED``: a malformed URL may still hold a secret.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}:{REDACTED}@" + netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, _redact_query(parts.query), ""))
    except ValueError:
        host = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)?([^/@?#]*@)?([^/?#]*)", url)
        if host and host.group(3):
            return (host.group(1) or "") + quote(host.group(3), safe=":[].-")
        return REDACTED


_SECRET_HINTS = ("pass", "secret", "token", "key", "sig", "credential", "auth", "session")


def _mask_key_value(match: re.Match[str]) -> str:
    if match.group("value") == REDACTED:
        return match.group(0)
    return f"{match.group('key')}{match.group('sep')}{REDACTED}"


def redact_message(message: str, limit: int = 1024) -> str:
    """An error message with every URL in it redacted and ``secret=value`` masked."""
    text = message
    # Cheap substring tests first: most messages ("Connection reset by peer")
    # hold neither a URL nor a secret word, and the regexes are not free.
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    lowered = text.lower()
    if any(word in lowered for word in _SECRET_HINTS):
        text = _KEY_VALUE_IN_TEXT.sub(_mask_key_value, text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text
