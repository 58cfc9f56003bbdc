"""Secrets in the shapes public secret-scanning rule sets look for, in messages and URLs.

Each case is ``(id, text, secrets, kept)``: ``secrets`` must not appear in the
redacted text (nor in any exported byte, see ``test_redaction_sinks.py``);
``kept`` must survive (redaction must not eat the useful part). The shapes
follow gitleaks' and GitHub secret scanning's published rules: HTTP auth
schemes, JWTs, AWS key ids and signatures, OpenAI/Anthropic/Google/GitHub/
Slack/Stripe key prefixes, passwords in JSON, YAML, query strings and DSNs.

Every secret is unique and derived from the case id, so a leak names its case.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    secrets: tuple[str, ...]
    kept: tuple[str, ...] = ()


def _hex(seed: str, n: int) -> str:
    out = ""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).hexdigest()
        counter += 1
    return out[:n]


def _alnum(seed: str, n: int, alphabet: str = "") -> str:
    chars = alphabet or "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = bytes.fromhex(_hex(seed, n * 2))
    return "".join(chars[b % len(chars)] for b in digest[:n])


def _upper(seed: str, n: int) -> str:
    return _alnum(seed, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _word(seed: str) -> str:
    """A password-like value: letters and digits, unique per seed."""
    return "pw" + _alnum(seed, 12)


def _jwt(seed: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64(f'{{"sub":"{_alnum(seed, 10)}","iat":1700000000}}'.encode())
    return (
        f"{header}.{payload}.{_alnum(seed + 'sig', 43, 'abcdefghijklmnopqrstuvwxyz0123456789_-')}"
    )


def _message_cases() -> list[Case]:
    cases: list[Case] = []

    def add(id_: str, template: str, secret: str, kept: tuple[str, ...] = ()) -> None:
        cases.append(Case(f"msg-{id_}", template.format(s=secret), (secret,), kept))

    # HTTP auth schemes, as headers echoed in errors.
    add("authz-bearer", "401 from upstream; Authorization: Bearer {s}", _alnum("a1", 32), ("401",))
    add("bearer-bare", "sent Bearer {s} and got reset", _alnum("a2", 40), ("got reset",))
    add("bearer-lower", "retrying with bearer {s}", _alnum("a3", 24), ("retrying",))
    add(
        "authz-basic",
        "Authorization: Basic {s}",
        base64.b64encode(b"admin:" + _word("a4").encode()).decode(),
    )
    add(
        "basic-bare",
        "proxy wants Basic {s}",
        base64.b64encode(b"u:" + _word("a5").encode()).decode(),
    )
    add("token-scheme", "Authorization: token {s}", _hex("a6", 40))
    add("token-word", "invalid token {s} for host", _alnum("a7", 30), ("for host",))
    add("digest", 'Digest username="bob", response="{s}"', _hex("a8", 32))
    add(
        "aws4",
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature={s}",
        _hex("a9", 64),
        ("SignedHeaders=host",),
    )
    add("x-api-key-header", "x-api-key: {s}", _alnum("a10", 40))
    add(
        "proxy-authz",
        "Proxy-Authorization: Basic {s}",
        base64.b64encode(b"p:" + _word("a11").encode()).decode(),
    )
    # Passwords and tokens as key=value, quoted, JSON, YAML.
    add("password-eq", "login failed: password={s}", _word("b1"), ("login failed",))
    add("password-squote", "password='{s}'", _word("b2"))
    add("password-dquote", 'password="{s}"', _word("b3"))
    add("password-spaces", "password = {s}", _word("b4"))
    add("passwd", "passwd: {s}", _word("b5"))
    add("pwd", "pwd={s}", _word("b6"))
    add(
        "json-access-token",
        '{{"access_token": "{s}", "expires_in": 3600}}',
        _alnum("b7", 40),
        ("expires_in",),
    )
    add("json-password", '{{"user": "bob", "password": "{s}"}}', _word("b8"), ('"user": "bob"',))
    add("json-client-secret", '{{"client_secret":"{s}"}}', _alnum("b9", 32))
    add("json-refresh", "{{'refresh_token': '{s}'}}", _alnum("b10", 48))
    add("yaml-password", "config error at line 3: password: {s}", _word("b11"), ("line 3",))
    add("yaml-secret", "secret_key: {s}", _alnum("b12", 40))
    add("api-key-colon", "bad request (api_key: {s})", _alnum("b13", 32), ("bad request",))
    add("apikey-eq", "apikey={s}", _alnum("b14", 32))
    add("private-key-eq", "privateKey={s}", _alnum("b15", 40))
    add("session-id", "rejected session_id={s}; retry", _hex("b16", 32), ("retry",))
    add("auth-eq", "auth={s}", _alnum("b17", 20))
    add("credential", "credentials={s}", _alnum("b18", 24))
    add("signature", "signature mismatch: signature={s}", _hex("b19", 64))
    add("nested-after-label", "error: password={s}", _word("b20"), ("error",))
    add("escaped-quote", r'password="a\"{s}"', _word("b21"))
    add("passphrase", "passphrase: {s}", _word("b22"))
    add("hmac", "hmac={s}", _hex("b23", 64))
    add("otp", "otp: {s}", _alnum("b24", 8, "0123456789") + "x")
    add("ticket", "ticket={s}", _alnum("b25", 30))
    add("jwt-key", "jwt={s}", _alnum("b26", 30))
    add("env-style", "OPENAI_API_KEY={s}", _alnum("b27", 40))
    add("aws-secret", "aws_secret_access_key = {s}", _alnum("b28", 40))
    add("db-password-env", "DB_PASSWORD={s} not accepted", _word("b29"), ("not accepted",))
    # Quotes escaped once more, as a repr() inside an exception message has them.
    add("repr-escaped", "bytearray(b\"{{\\'refresh_token\\': \\'{s}\\'}}\")", _alnum("b30", 40))
    add("repr-inner-quote", 'b\'password="a\\\\"{s}" tail\'', _word("b31"), ("tail",))
    # Cookies.
    add("cookie", "Cookie: sid={s}; theme=dark", _alnum("c1", 32))
    add("set-cookie", "Set-Cookie: session={s}; Path=/; HttpOnly", _alnum("c2", 32))
    # Credentials in a DSN or host spec without a scheme.
    add(
        "userinfo-bare",
        "cannot reach admin:{s}@db.internal:5432",
        _word("d1"),
        ("db.internal:5432",),
    )
    add("userinfo-proxy", "proxy bob:{s}@127.0.0.1:3128 refused", _word("d2"), ("127.0.0.1:3128",))
    # DSNs with a scheme.
    add("dsn-postgres", "connect postgresql://app:{s}@127.0.0.1:5432/app failed", _word("d3"))
    add("dsn-redis", "redis://:{s}@127.0.0.1:6379/0 unreachable", _word("d4"), ("unreachable",))
    add("dsn-mongo", "mongodb+srv://root:{s}@cluster0.example.net/db", _word("d5"))
    add("dsn-amqp", "amqp://guest:{s}@127.0.0.1:5672/vhost", _word("d6"))
    # Tokens by shape alone.
    add("openai", "model call failed with key {s}", "sk-" + _alnum("e1", 48))
    add("openai-proj", "key {s} rejected", "sk-proj-" + _alnum("e2", 56), ("rejected",))
    add("anthropic", "using {s}", "sk-ant-api03-" + _alnum("e3", 80))
    add("google-api", "quota for {s}", "AIza" + _alnum("e4", 35))
    add("google-oauth", "token ya29 {s}", "ya29." + _alnum("e5", 60))
    add("aws-akid", "access denied for {s}", "AKIA" + _upper("e6", 16))
    add("aws-asia", "temporary key {s}", "ASIA" + _upper("e7", 16))
    add("github-pat", "clone failed {s}", "ghp_" + _alnum("e8", 36))
    add("github-fine", "clone failed {s}", "github_pat_" + _alnum("e9", 82))
    add("gitlab", "push failed {s}", "glpat-" + _alnum("e10", 20))
    add(
        "slack",
        "post failed {s}",
        "xoxb-" + _alnum("e11", 10, "0123456789") + "-" + _alnum("e11b", 24),
    )
    add("stripe", "charge failed {s}", "sk_live_" + _alnum("e12", 24))
    add("huggingface", "download {s}", "hf_" + _alnum("e13", 34))
    add("npm", "publish {s}", "npm_" + _alnum("e14", 36))
    add("sendgrid", "mail {s}", "SG." + _alnum("e15", 22) + "." + _alnum("e15b", 43))
    add("jwt-bare", "expired {s}", _jwt("e16"))
    add("jwt-in-json", '{{"id_token": "{s}"}}', _jwt("e17"))
    cases.append(
        Case(
            "msg-pem",
            "bad key -----BEGIN RSA PRIVATE KEY----- "
            + _alnum("e18", 64)
            + " -----END RSA PRIVATE KEY-----",
            (_alnum("e18", 64),),
            ("bad key",),
        )
    )
    # Several at once.
    one, two = _word("f1"), _alnum("f2", 32)
    cases.append(
        Case("msg-two", f"password={one} and Authorization: Bearer {two}", (one, two), ("and",))
    )
    return cases


def _url_cases() -> list[Case]:
    cases: list[Case] = []
    base = "http://127.0.0.1:{port}"

    def add(id_: str, template: str, secret: str, kept: tuple[str, ...] = ()) -> None:
        cases.append(Case(f"url-{id_}", base + template.format(s=secret), (secret,), kept))

    for name in (
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "code",
        "jwt",
        "pwd",
        "otp",
        "hmac",
        "ticket",
        "bearer",
        "sig",
        "signature",
        "password",
        "client_secret",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
        "AWSAccessKeyId",
        "session",
        "sessionid",
        "auth",
        "id_token",
        "refresh_token",
        "private_key",
        "x-api-key",
        "PASSWORD",
        "Authorization",
    ):
        add(f"q-{name}", f"/v1/items?page=2&{name}={{s}}", _alnum("q" + name, 24), ("page=2",))
    add("semicolon-query", "/v1?a=1;token={s}", _alnum("u1", 24), ("a=1",))
    add("api-plus-key", "/v1?api+key={s}", _alnum("u2", 24))
    add("api-encoded-key", "/v1?api%5Fkey={s}", _alnum("u3", 24))
    add(
        "redirect-uri",
        "/oauth/authorize?client_id=app&redirect_uri="
        + quote("https://app.example/cb?token=", safe="")
        + "{s}",
        _alnum("u4", 24),
        ("client_id=app",),
    )
    add("fragment", "/cb#access_token={s}", _alnum("u5", 24))
    add("path-openai", "/v1/keys/{s}", "sk-" + _alnum("u6", 48), ("/v1/keys/",))
    add("path-jsessionid", "/app;jsessionid={s}/page", _hex("u7", 32), ("/page",))
    add("path-jwt", "/verify/{s}", _jwt("u8"), ("/verify/",))
    add("path-google", "/maps/{s}/tile", "AIza" + _alnum("u9", 35), ("/tile",))
    add("path-github", "/hooks/{s}", "ghp_" + _alnum("u10", 36))
    add("query-value-shape", "/search?q={s}", "sk-" + _alnum("u11", 40))
    add("query-value-aws", "/x?id={s}", "AKIA" + _upper("u12", 16))
    # Userinfo.
    cases.append(
        Case(
            "url-userinfo",
            "http://admin:{pw}@127.0.0.1:{{port}}/db".format(pw=_word("u13")),
            (_word("u13"),),
            ("/db",),
        )
    )
    cases.append(
        Case(
            "url-userinfo-user-only",
            "http://{tok}@127.0.0.1:{{port}}/x".format(tok=_alnum("u14", 40)),
            (_alnum("u14", 40),),
        )
    )
    return cases


MESSAGE_CASES: list[Case] = _message_cases()
URL_CASES: list[Case] = _url_cases()
"""URL templates: ``{port}`` is filled in with a real server's port."""

KEPT_MESSAGES = [
    "Connection reset by peer",
    "[Errno 104] Connection reset by peer",
    "Server disconnected without sending a response.",
    "Cannot connect to host 127.0.0.1:8080 ssl:default [Connect call failed]",
    "exit code: 1",
    "monkey=3 keyboard=qwerty",
    "status=503 retry_after=2",
    "http://127.0.0.1:8080/a?q=hello&page=2",
    "user@example.com not found",
]
"""Messages redaction must leave exactly as they are."""
