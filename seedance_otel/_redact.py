"""Keep secrets out of snapshots: URLs and error messages are scrubbed before storage.

URLs lose their userinfo (replaced by ``REDACTED:REDACTED`` as the semantic
conventions for ``url.full`` ask), their fragment, the values of secret query
parameters (``&`` or ``;`` separated; see :func:`is_secret_name`), secrets
inside encoded URL or query values of other parameters (``redirect_uri=``),
secret matrix parameters in the path (``;jsessionid=``) and any token of a
known shape anywhere in path or query (:data:`_TOKEN_SHAPES`).

Error messages get the same treatment for every URL in them, and lose the
value of every ``name=value`` / ``name: value`` pair with a secret name (quoted
or not, JSON and YAML alike), credentials after an HTTP auth scheme (``Bearer
X``, ``Basic X``, ``token X``), cookie headers, ``user:password@host`` without
a scheme, PEM private keys and tokens of a known shape.

Deliberately left alone: a secret with neither a secret name nor a known
shape (a bare word in a message, a path segment such as ``/reset/8f3a...``),
host names, ports and the rest of the path. Headers and bodies are never
read at all.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

__all__ = ["REDACTED", "is_secret_name", "redact_message", "redact_url"]

REDACTED = "REDACTED"

# Query parameter names that are secret on their own (exact match, any case):
# the semantic conventions' list for ``url.query`` plus common short names.
_EXACT_SECRET_NAMES = frozenset(
    k.lower()
    for k in (
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "key",
        "code",
        "jwt",
        "pwd",
        "otp",
        "hmac",
        "ticket",
        "bearer",
        "pass",
        "pin",
    )
)
# Name parts (split at punctuation and camelCase) that make a name secret;
# ``code`` only counts on its own in a query (``?code=`` is OAuth's).
_SECRET_PARTS = frozenset(
    ("key", "apikey", "pwd", "otp", "jwt", "hmac", "sig", "ticket", "bearer", "privatekey")
)
# Substrings that make a name secret wherever they appear.
_SECRET_WORDS = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|api[-_ +]?key|access[-_]?key|private[-_]?key"
    r"|auth|signature|credential|session|cookie|jwt",
    re.IGNORECASE,
)
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

# Tokens recognisable by their shape alone, after the public secret-scanning
# rule sets (gitleaks, GitHub secret scanning): provider key prefixes, JWTs,
# AWS key ids. Each needs enough characters after the prefix that ordinary
# words do not match.
_TOKEN_SHAPES = re.compile(
    r"""
      \bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}     # OpenAI, Anthropic
    | \b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}               # Stripe
    | \bAIza[0-9A-Za-z_\-]{30,}                                   # Google API key
    | \bya29\.[0-9A-Za-z_\-]{20,}                                 # Google OAuth token
    | \b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b  # AWS
    | \bgh[pousr]_[A-Za-z0-9]{30,}                                # GitHub
    | \bgithub_pat_[A-Za-z0-9_]{30,}
    | \bglpat-[A-Za-z0-9_\-]{20,}                                 # GitLab
    | \bxox[abposr]-[A-Za-z0-9\-]{10,}                            # Slack
    | \bhf_[A-Za-z0-9]{30,}                                       # Hugging Face
    | \bnpm_[A-Za-z0-9]{36}\b                                     # npm
    | \bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}              # SendGrid
    | \beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*  # JWT
    """,
    re.VERBOSE,
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
)
# A URL in free text; the host may be a bracketed IPv6 literal.
_URL_IN_TEXT = re.compile(
    r"""[A-Za-z][A-Za-z0-9+.\-]*://(?:\[[0-9A-Za-z:.%]*\]|[^\s'"<>\[\]()])+"""
)
# ``user:password@host`` without a scheme (a DSN or proxy given bare).
_USERINFO_IN_TEXT = re.compile(r"(?<![\w/@:.%+\-])[\w.%+\-]+:[^\s@/'\"]+@(?=[\w\[])")
# Case-sensitive as sent in headers, except ``token``/``bearer`` (often lowercased).
_AUTH_SCHEMES = r"[Bb]earer|Basic|Digest|[Tt]oken|Negotiate|NTLM|AWS4-HMAC-SHA256"
_SCHEME_CREDENTIALS = re.compile(
    rf"\b(?P<scheme>{_AUTH_SCHEMES})(?P<space>\s+)(?P<value>(?!{REDACTED}\b)[^\s'\",;]+)"
)
# Headers whose whole value is a credential list: masked to the end of the line.
_COOKIE_HEADER = re.compile(r"\b(?P<name>(?i:(?:set-)?cookie\s*:)|Digest)(?P<sep>\s*)[^\r\n]+")
# A candidate ``name<sep>value``; whether the name is secret is decided in
# Python (:func:`is_secret_name`), so one definition serves URLs and messages.
_KEY_VALUE_IN_TEXT = re.compile(
    r"""(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<close>\\*["']|)(?P<sep>\s*[=:]\s*)(?P<value>"""
    # Quoted, also with quotes escaped by repr() layers (\'x\', \\\'x\\\'): up
    # to the first matching quote followed by a delimiter, so escaped quotes
    # inside the value end nothing.
    r"""(?P<q>\\*["'])[^\r\n]*?(?P=q)(?=[\s,;&)}\]]|$)"""
    r"""|\\*["'][^\s,;&)}\]]*"""  # an unterminated quote: up to a delimiter
    r"""|[^\s&'",;}\]\\]+)"""
)
# Cheap substring tests: a message without any of these skips the regexes.
_HINTS: tuple[str, ...] = (
    *("pass", "secret", "token", "key", "sig", "credential", "auth", "session", "cookie"),
    *("bearer", "basic", "digest", "pwd", "jwt", "otp", "hmac", "ticket", "@", "-----begin"),
)


def is_secret_name(name: str, *, in_query: bool = False) -> bool:
    """Whether a parameter or field called ``name`` holds a secret.

    Secret: an exact name of :data:`_EXACT_SECRET_NAMES` (``code`` only in a
    query), a name containing one of :data:`_SECRET_WORDS`, or a name with a
    part (split at punctuation and camelCase) in :data:`_SECRET_PARTS`
    (``x-api-key``, ``privateKey``, ``api+key``).
    """
    text = unquote_plus(name).strip().strip("\"'")
    lowered = text.lower()
    if lowered in _EXACT_SECRET_NAMES:
        return in_query or lowered != "code"
    if _SECRET_WORDS.search(lowered):
        return True
    return any(part.lower() in _SECRET_PARTS for part in _NAME_PARTS.findall(text))


def _redact_shapes(text: str) -> str:
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _redact_nested(value: str) -> str:
    """A query value that itself holds a URL or a query (``redirect_uri=``), redacted."""
    decoded = unquote_plus(value)
    if "://" in decoded or "=" in decoded:
        cleaned = redact_message(decoded, limit=sys.maxsize)
        if cleaned != decoded:
            return quote(cleaned, safe=":/")
    return value


def _redact_query(query: str) -> str:
    if not query:
        return query
    out = []
    for piece in re.split(r"([&;])", query):
        if piece in ("&", ";"):
            out.append(piece)
            continue
        key, sep, value = piece.partition("=")
        if sep and is_secret_name(key, in_query=True):
            out.append(f"{key}={REDACTED}")
        elif sep:
            out.append(f"{key}={_redact_nested(value)}")
        else:
            out.append(piece)
    return _redact_shapes("".join(out))


def _redact_path(path: str) -> str:
    """Secret matrix parameters (``;jsessionid=X``) and known token shapes in the path."""
    if ";" in path:

        def matrix(match: re.Match[str]) -> str:
            if is_secret_name(match.group(1), in_query=True):
                return f";{match.group(1)}={REDACTED}"
            return match.group(0)

        path = re.sub(r";([^/;=]+)=([^/;]*)", matrix, path)
    return _redact_shapes(path)


_REMEMBERED = 256
"""Distinct inputs whose redaction is kept, per function (then the least
recently used goes): a fault storm repeats a handful of messages and URLs,
and redacting one runs several regular expressions (2-4 us of a full
capture's 13-25 us, measured)."""
_REMEMBERED_UP_TO = 2048
"""Longer inputs are redacted every time, so what is kept stays under about
1 MiB per function (input and answer, 256 times)."""

_Redact = TypeVar("_Redact", bound=Callable[..., str])


def _remembered(redact: _Redact) -> _Redact:
    """``redact``, answering a short input it has seen lately from memory.

    Redaction is a pure function of its arguments, so a remembered answer is
    the one it would give again.
    """
    cached = functools.lru_cache(maxsize=_REMEMBERED)(redact)

    @functools.wraps(redact)
    def remembered(text: str, *args: Any, **kwargs: Any) -> str:
        if type(text) is str and len(text) <= _REMEMBERED_UP_TO:
            return cached(text, *args, **kwargs)
        return redact(text, *args, **kwargs)

    remembered.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return cast(_Redact, remembered)


@_remembered
def redact_url(url: str) -> str:
    """``url`` without userinfo, secret query values, fragment or known token shapes.

    Anything that cannot be parsed is reduced to its scheme and host or, failing
    that, to ``REDACTED``: a malformed URL may still hold a secret.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}:{REDACTED}@" + netloc.rpartition("@")[2]
        return urlunsplit(
            (parts.scheme, netloc, _redact_path(parts.path), _redact_query(parts.query), "")
        )
    except ValueError:
        host = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)?([^/@?#]*@)?([^/?#@]*)", url)
        if host and host.group(3):
            return (host.group(1) or "") + quote(host.group(3), safe=":[].-")
        return REDACTED


def _mask_scheme(match: re.Match[str]) -> str:
    return f"{match.group('scheme')}{match.group('space')}{REDACTED}"


def _mask_key_values(text: str) -> str:
    """Mask the value of every secret ``name=value`` / ``"name": "value"`` pair.

    A scan rather than one ``re.sub``: when a candidate's name is not secret,
    the scan resumes right after the name, so a secret pair inside its value
    (``error: password=x``) is still found.
    """
    out: list[str] = []
    pos = 0
    search_from = 0
    while True:
        match = _KEY_VALUE_IN_TEXT.search(text, search_from)
        if match is None:
            break
        if not is_secret_name(match.group("key")):
            search_from = match.end("key")
            continue
        value = match.group("value")
        end = match.end("value")
        scheme = re.match(rf"(?:{_AUTH_SCHEMES})$", value)
        if scheme:  # ``Authorization: Bearer X``: the credential is the next word
            following = re.match(r"\s+[^\s'\",;]+", text[end:])
            if following:
                end += following.end()
                value = f"{value} {REDACTED}"
            else:
                value = REDACTED
        elif not value.strip("\"'").startswith(REDACTED):
            quote_char = match.group("q") or ""
            value = f"{quote_char}{REDACTED}{quote_char}"
        out.append(text[pos : match.start("value")])
        out.append(value)
        pos = search_from = end
    out.append(text[pos:])
    return "".join(out)


@_remembered
def redact_message(message: str, limit: int = 1024) -> str:
    """An error message with every URL in it redacted and secrets masked (see module doc)."""
    text = message
    # Cheap substring tests first: most messages ("Connection reset by peer")
    # hold neither a URL nor a secret word, and the regexes are not free.
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    lowered = text.lower()
    if any(hint in lowered for hint in _HINTS):
        if "-----begin" in lowered:
            text = _PRIVATE_KEY.sub(REDACTED, text)
        if "cookie" in lowered or "digest" in lowered:
            text = _COOKIE_HEADER.sub(
                lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text
            )
        text = _SCHEME_CREDENTIALS.sub(_mask_scheme, text)
        text = _mask_key_values(text)
        if "@" in text:
            text = _USERINFO_IN_TEXT.sub(f"{REDACTED}:{REDACTED}@", text)
    text = _redact_shapes(text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text
