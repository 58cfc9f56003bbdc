"""``seedance-otel dashboards`` under bad input and hostile servers: one line, non-zero, no leak.

Every case must end in one line on stderr and a non-zero exit: no traceback,
no false success, no unbounded wait, and never a credential in the output or
sent to a server other than the one named by ``--grafana-url``.
"""

from __future__ import annotations

import argparse
import base64
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seedance_otel.dashboards import cli as dashboards_cli

from dashboards_fake_grafana import TOKEN
from faultservers import RawServer

PREFIX = "seedance-otel dashboards: error: "
PASSWORD = "pw-d0-not-print"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("GRAFANA_URL", "GRAFANA_TOKEN", "GRAFANA_USER", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="seedance-otel")
    dashboards_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboards", *argv])
    return int(args.func(args))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith(PREFIX), err
    assert "Traceback" not in err
    return err


def reply(status: str, body: bytes, headers: str = "") -> Callable[[socket.socket, bytes], None]:
    def answer(conn: socket.socket, head: bytes) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return answer


@pytest.fixture
def elsewhere() -> Iterator[RawServer]:
    """Another origin: it must never see a request carrying our credentials."""
    with RawServer(reply("200 OK", b"{}", "Content-Type: application/json\r\n")) as server:
        yield server


@pytest.mark.parametrize(
    "status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect"]
)
@pytest.mark.parametrize("auth", ["token", "basic"])
def test_a_redirect_to_another_origin_gets_no_credentials(capsys, elsewhere, status, auth):
    target = f"{elsewhere.url}/api/datasources/uid/seedance-loki"
    with RawServer(reply(status, b"", f"Location: {target}\r\n")) as grafana:
        credentials = (
            ["--token", TOKEN] if auth == "token" else ["--user", "admin", "--password", PASSWORD]
        )
        assert run("install", "--grafana-url", grafana.url, *credentials) == 1
    err = one_error_line(capsys)
    assert "redirect" in err and elsewhere.url in err
    assert TOKEN not in err and PASSWORD not in err
    assert elsewhere.heads == []
    [head] = grafana.heads
    assert b"Authorization: " in head


def test_credentials_in_the_url_are_refused_unsent_and_unprinted(capsys, elsewhere):
    port = elsewhere.url.rsplit(":", 1)[1]
    assert run("install", "--grafana-url", f"http://admin:{PASSWORD}@127.0.0.1:{port}") == 1
    err = one_error_line(capsys)
    assert PASSWORD not in err and "--user/--password" in err
    assert elsewhere.heads == []


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "abc", "1e9"])
def test_a_bad_timeout_is_a_usage_error(capsys, timeout):
    assert run("install", "--grafana-url", "http://127.0.0.1:1", "--timeout", timeout) == 2
    assert "--timeout" in one_error_line(capsys)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:abc",
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:3000/a b",
        "http://127.0.0.1:3000/\x07",
        "http://127.0.0.1:3000/\r\nX-Injected: 1",
        "ftp://127.0.0.1/",
        "http://",
    ],
)
def test_a_bad_url_is_one_line(capsys, url):
    assert run("install", "--grafana-url", url, "--token", TOKEN) == 1
    err = one_error_line(capsys)
    assert "--grafana-url" in err and TOKEN not in err


@pytest.mark.parametrize(
    "credentials",
    [
        ["--token", "abc\r\nX-Evil: 1" + TOKEN],
        ["--token", "caf\u00e9" + TOKEN],
        ["--user", "admin\n", "--password", PASSWORD],
        ["--user", "admin", "--password", PASSWORD + "\r\n"],
    ],
)
def test_a_credential_with_control_characters_is_refused_unechoed(capsys, elsewhere, credentials):
    assert run("install", "--grafana-url", elsewhere.url, *credentials) == 1
    err = one_error_line(capsys)
    assert TOKEN not in err and PASSWORD not in err
    assert elsewhere.heads == []


def test_html_200_to_everything_is_not_a_success(capsys):
    page = b"<html><body>Welcome</body></html>"
    with RawServer(reply("200 OK", page, "Content-Type: text/html\r\n")) as server:
        assert run("install", "--grafana-url", server.url, "--token", TOKEN) == 1
    err = one_error_line(capsys)
    assert "not JSON" in err and "text/html" in err
    assert capsys.readouterr().out == ""


def test_a_json_200_without_a_dashboard_url_is_not_a_success(capsys):
    with RawServer(reply("200 OK", b"{}", "Content-Type: application/json\r\n")) as server:
        assert run("install", "--grafana-url", server.url, "--token", TOKEN) == 1
    assert "without a dashboard URL" in one_error_line(capsys)


def test_a_trickling_server_is_cut_off_at_the_deadline(capsys):
    trickle = 200  # bytes, one every 0.2 s: 40 s if the client waited for all of them
    sent: list[int] = []

    def answer(conn: socket.socket, head: bytes) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {trickle}\r\n\r\n".encode())
        for _ in range(trickle):
            if server.stopping.wait(0.2):
                return
            conn.sendall(b" ")
            sent.append(1)

    with RawServer(answer) as server:
        code = run("install", "--grafana-url", server.url, "--token", TOKEN, "--timeout", "1")
        bytes_sent = len(sent)
    assert code == 1
    assert "did not answer within 1 s" in one_error_line(capsys)
    assert bytes_sent < trickle  # the client gave up while the server was still sending


def test_export_to_a_path_with_a_nul_byte_is_one_line(capsys):
    assert run("export", "bad\x00dir") == 1
    one_error_line(capsys)


def test_export_over_a_file_is_one_line(capsys, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run("export", str(blocker / "sub")) == 1
    one_error_line(capsys)


def test_basic_credentials_still_work_with_a_grafana_that_answers(capsys):
    seen = []

    def answer(conn: socket.socket, head: bytes) -> None:
        seen.append(head)
        reply("401 Unauthorized", b'{"message":"invalid"}', "Content-Type: application/json\r\n")(
            conn, head
        )

    with RawServer(answer) as server:
        assert run("install", "--grafana-url", server.url, "--user", "u", "--password", "p") == 1
    expected = base64.b64encode(b"u:p")
    assert expected in seen[0]
    assert "401" in one_error_line(capsys)
