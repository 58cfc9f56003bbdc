"""``seedance-otel dashboards install`` against a local stand-in for Grafana's HTTP API.

The stand-in (dashboards_fake_grafana.py) answers as Grafana documents it and
rejects requests of the wrong shape, so these tests check both what the
command sends (paths, auth headers, bodies) and what it makes of every
answer: success, re-install over an older version, missing data sources,
401, 403, 409, 412, and a Grafana that is not there. Failures must be one
line on stderr and a non-zero exit code, and never echo a credential.
"""

from __future__ import annotations

import argparse
import base64

import pytest

from seedance_otel import dashboards
from seedance_otel.dashboards import cli as dashboards_cli

from dashboards_fake_grafana import PASSWORD, TOKEN, USER, FakeGrafana
from prom_server import free_port

ALL_DATASOURCES = {"seedance-prometheus", "seedance-loki", "seedance-jaeger"}
PREFIX = "seedance-otel dashboards: "


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("GRAFANA_URL", "GRAFANA_TOKEN", "GRAFANA_USER", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def grafana():
    with FakeGrafana(ALL_DATASOURCES) as server:
        yield server
    assert not server.problems, server.problems


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="seedance-otel")
    dashboards_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboards", "install", *argv])
    return int(args.func(args))


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith(PREFIX), err
    return err


def test_install_with_a_token(grafana, capsys):
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 0
    assert grafana.calls() == [
        ("GET", "/api/datasources/uid/seedance-loki"),
        ("GET", "/api/datasources/uid/seedance-prometheus"),
        ("GET", "/api/folders/seedance-otel"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
    ]
    assert {r["auth"] for r in grafana.requests} == {f"Bearer {TOKEN}"}
    assert grafana.folders == {"seedance-otel": "seedance-otel"}
    assert set(grafana.dashboards) == {"seedance-overview", "seedance-peer"}
    for uid, saved in grafana.dashboards.items():
        assert saved["folderUid"] == "seedance-otel"
        assert saved["model"]["panels"] == dashboards.load_dashboard(f"{uid}.json")["panels"]
    out, err = capsys.readouterr()
    assert err == ""
    assert out.split() == [
        f"{grafana.url}/d/seedance-overview/seedance-otel-connection-faults",
        f"{grafana.url}/d/seedance-peer/seedance-otel-peer-drill-down",
    ]


def test_reinstall_overwrites_older_versions_by_uid(grafana, capsys):
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 0
    grafana.requests.clear()
    assert run("--grafana-url", grafana.url + "/", "--token", TOKEN) == 0
    assert ("POST", "/api/folders") not in grafana.calls()  # the folder is found by uid
    assert {saved["version"] for saved in grafana.dashboards.values()} == {2}
    assert capsys.readouterr().err == ""


def test_basic_auth_and_folder_from_the_environment(grafana, monkeypatch, capsys):
    monkeypatch.setenv("GRAFANA_URL", grafana.url)
    monkeypatch.setenv("GRAFANA_USER", USER)
    monkeypatch.setenv("GRAFANA_PASSWORD", PASSWORD)
    assert run("--folder", "Network Faults") == 0
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert {r["auth"] for r in grafana.requests} == {basic}
    assert grafana.folders == {"network-faults": "Network Faults"}
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"network-faults"}


def test_bad_credentials_fail_in_one_line_without_the_secret(grafana, capsys):
    assert run("--grafana-url", grafana.url, "--token", "wrong-token") == 1
    err = one_line(capsys.readouterr().err)
    assert "401" in err and "credentials" in err and "wrong-token" not in err
    assert grafana.dashboards == {}
    assert run("--grafana-url", grafana.url, "--user", USER, "--password", "nope") == 1
    err = one_line(capsys.readouterr().err)
    assert "401" in err and "nope" not in err


def test_missing_datasource_warns_and_installs(capsys):
    with FakeGrafana({"seedance-prometheus"}) as grafana:
        assert run("--grafana-url", grafana.url, "--token", TOKEN) == 0
        assert set(grafana.dashboards) == {"seedance-overview", "seedance-peer"}
        assert not grafana.problems
    out, err = capsys.readouterr()
    warning = err
    assert warning.count("\n") == 1 and warning.startswith(PREFIX + "warning: ")
    assert "seedance-loki (loki)" in warning and "seedance-prometheus" not in warning
    assert len(out.split()) == 2


def test_missing_datasource_fails_before_uploading_when_required(capsys):
    with FakeGrafana({"seedance-prometheus"}) as grafana:
        assert run("--grafana-url", grafana.url, "--token", TOKEN, "--require-datasources") == 1
        assert all(method == "GET" for method, _ in grafana.calls())
        assert grafana.dashboards == {} and grafana.folders == {}
    err = one_line(capsys.readouterr().err)
    assert "seedance-loki" in err


def test_editor_token_cannot_read_datasources_installs_anyway(grafana, capsys):
    grafana.datasource_status = 403
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot check data sources (403" in err
    assert set(grafana.dashboards) == {"seedance-overview", "seedance-peer"}


def test_version_conflict_412(grafana, capsys):
    grafana.save_status = (
        412,
        {
            "message": "The dashboard has been changed by someone else",
            "status": "version-mismatch",
        },
    )
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 1
    err = one_line(capsys.readouterr().err)
    assert "412" in err and "version-mismatch" in err and "seedance-otel: connection faults" in err


def test_permission_denied_on_save(grafana, capsys):
    grafana.save_status = (403, {"message": "Access denied"})
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 1
    err = one_line(capsys.readouterr().err)
    assert "403" in err and "permission denied" in err


def test_folder_title_taken_under_another_uid(grafana, capsys):
    grafana.folders["k3S1cklGk"] = "seedance-otel"
    assert run("--grafana-url", grafana.url, "--token", TOKEN) == 0
    assert ("POST", "/api/folders") in grafana.calls()  # 409, then found by title
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"k3S1cklGk"}
    assert capsys.readouterr().err == ""


def test_unreachable_grafana(capsys):
    port = free_port()  # nothing listens there any more
    assert (
        run("--grafana-url", f"http://127.0.0.1:{port}", "--token", TOKEN, "--timeout", "3") == 1
    )
    err = one_line(capsys.readouterr().err)
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in err and TOKEN not in err


def test_no_url_is_a_usage_error(capsys):
    assert run("--token", TOKEN) == 2
    err = one_line(capsys.readouterr().err)
    assert "GRAFANA_URL" in err


def test_not_an_http_url(capsys):
    assert run("--grafana-url", "127.0.0.1:3000", "--token", TOKEN) == 1
    one_line(capsys.readouterr().err)


def test_token_and_user_together_is_a_usage_error(capsys):
    assert run("--grafana-url", "http://127.0.0.1:1", "--token", TOKEN, "--user", USER) == 2
    one_line(capsys.readouterr().err)
