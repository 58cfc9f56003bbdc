"""``seedance-otel diagnose FILE [--json]``: output, JSON, malformed lines, exit statuses."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from typing import Any

import pytest

from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel.diagnosis import read_snapshots
from seedance_otel.diagnosis.cli import register

from snapshot_factory import make_snapshot


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="seedance-otel")
    register(main.add_subparsers(dest="command"))
    return main


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    args = parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def reset(idle: float, ok_max: float | None = 1.8, **kw) -> ResetContextSnapshot:
    fields: dict[str, Any] = dict(
        connection_reused=True,
        connection_idle_s=idle,
        connection_age_s=idle + 0.01,
        connection_requests=1,
        peer_reuse_ok_max_idle_s=ok_max,
        peer_reuse_ok_count=4 if ok_max else 0,
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    fields.update(kw)
    return make_snapshot(**fields)


def jsonl(*snaps: ResetContextSnapshot) -> str:
    return "".join(json.dumps(s.to_dict()) + "\n" for s in snaps)


def test_text_report_with_histogram(tmp_path):
    path = tmp_path / "snaps.jsonl"
    path.write_text(jsonl(reset(0.004), reset(2.3), reset(2.5), reset(2.9)))
    status, out, err = run("diagnose", str(path))
    assert status == 1
    assert err == ""
    assert out.startswith(f"4 snapshots from {path}.")
    assert "SEVERITY" in out and "stale_keepalive" in out and "api.test:443" in out
    assert "keepalive_expiry=1.4" in out
    assert "idle before reuse at api.test:443:" in out
    assert "---- peer idle timeout ~2.05 s (between 1.8 s and 2.3 s) ----" in out
    # The cliff: the success above the marker, the resets below it.
    lines = out.splitlines()
    marker = next(i for i, line in enumerate(lines) if "---- peer idle timeout" in line)
    assert any("#" in line for line in lines[marker - 3 : marker])
    after = next(line for line in lines[marker + 1 :] if line.rstrip().endswith(" 1"))
    assert "x" in after and "#" not in after


def test_json_output(tmp_path):
    path = tmp_path / "snaps.jsonl"
    path.write_text(jsonl(reset(2.3), reset(2.5)) + "garbage\n")
    status, out, _ = run("diagnose", str(path), "--json")
    assert status == 1
    document = json.loads(out)
    assert document["snapshots"] == 2
    assert document["exit_status"] == 1
    assert document["malformed_lines"] == [
        {"line": 3, "reason": document["malformed_lines"][0]["reason"]}
    ]
    [finding] = document["findings"]
    assert finding["code"] == "stale_keepalive"
    assert finding["severity"] == "warning"
    assert finding["params"]["bracket_low_s"] == 1.8
    assert finding["evidence"]["idle_histogram"]


def test_nested_snapshot_key_and_malformed_lines(tmp_path):
    good = reset(2.3).to_dict()
    lines = [
        json.dumps({"snapshot": good, "resource": {"service.name": "api"}}),
        "",
        '{"kind": "connection_reset", "timestamp_ns": 1',  # truncated mid-line
        json.dumps({"kind": "no_such_kind"}),
        json.dumps({**good, "connection_idle_s": "long"}),
        json.dumps([1, 2]),
        json.dumps({"hello": "world"}),
        # What ``seedance-otel receive --jsonl`` writes: the snapshot plus its service.
        json.dumps({"service.name": "checkout", **reset(2.6).to_dict()}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = read_snapshots(path.read_text().splitlines())
    assert len(source.snapshots) == 2
    assert [m.line for m in source.malformed] == [3, 4, 5, 6, 7]
    status, out, _ = run("diagnose", str(path))
    assert status == 1
    assert "5 malformed lines skipped:" in out
    assert "line 3: not JSON" in out
    assert "line 5: connection_idle_s: str" in out
    assert "stale_keepalive" in out


def test_nothing_to_fix_exits_zero(tmp_path):
    path = tmp_path / "calm.jsonl"
    closes = [
        reset(
            v,
            None,
            kind=FaultKind.PEER_CLOSED_IDLE,
            library="aiohttp",
            phase="idle",
            error_type="EOF",
            error_message="",
            trace_id=None,
        )
        for v in (8.01, 8.02)
    ]
    path.write_text(jsonl(*closes))
    status, out, _ = run("diagnose", str(path))
    assert status == 0  # only an info: the pool noticed the closes in time
    assert "info" in out and "keepalive_timeout=6.4" in out
    healthy = tmp_path / "healthy.jsonl"
    healthy.write_text(jsonl(make_snapshot(FaultKind.READ_TIMEOUT)))
    status, out, _ = run("diagnose", str(healthy))
    assert status == 0
    assert "1 snapshot from" in out and "Nothing to fix" in out


@pytest.mark.parametrize("name", ["empty.jsonl", "blank.jsonl", "/dev/null"])
def test_no_snapshot_at_all_exits_two(tmp_path, name):
    """The README promises 2 for a file with no snapshot, an empty one included."""
    path = tmp_path / name if not name.startswith("/") else name
    if not name.startswith("/"):
        path.write_text("" if name == "empty.jsonl" else "\n  \n")
    status, out, err = run("diagnose", str(path))
    assert status == 2 and out == ""
    assert "no snapshot in it" in err


def line_with(**fields: object) -> str:
    """A snapshot's JSON line with raw ``fields`` text spliced in (JSON cannot say NaN)."""
    data = make_snapshot().to_dict()
    for name in fields:
        data.pop(name, None)
    text = json.dumps(data)[:-1]
    return text + "".join(f', "{name}": {value}' for name, value in fields.items()) + "}\n"


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        ("connection_idle_s", "NaN", "NaN is not a number"),
        ("connection_idle_s", "Infinity", "Infinity is not a number"),
        ("connection_age_s", "-Infinity", "-Infinity is not a number"),
        ("connection_idle_s", "9" * 401, "connection_idle_s: an integer out of range"),
        ("connection_requests", "9" * 401, "connection_requests: an integer out of range"),
        ("connection_idle_s", "-2.5", "connection_idle_s: negative"),
        ("peer_reuse_ok_max_idle_s", "-1", "peer_reuse_ok_max_idle_s: negative"),
    ],
)
def test_bad_numbers_are_malformed_lines_not_tracebacks(tmp_path, field, raw, reason):
    path = tmp_path / "bad.jsonl"
    fields = dict(connection_reused="true", connection_idle_s="2.3", connection_age_s="2.4")
    fields.update(connection_requests="1", peer_reuse_ok_max_idle_s="1.8")
    fields["peer_reuse_ok_count"] = "3"
    good = line_with(**fields)
    fields[field] = raw
    path.write_text(good + line_with(**fields) + good)
    status, out, _ = run("diagnose", str(path))
    assert status == 1
    assert "2 snapshots from" in out
    assert f"line 2: {reason}" in out
    status, out, _ = run("diagnose", str(path), "--json")
    document = json.loads(out)
    assert [m["line"] for m in document["malformed_lines"]] == [2]


def test_terminal_escapes_from_the_file_are_shown_escaped(tmp_path):
    path = tmp_path / "ansi.jsonl"
    hostile = "\x1b[2J\x1b]0;owned\x07api\r"
    snaps = [reset(v, server_address=hostile) for v in (2.3, 2.6)]
    snaps.append(make_snapshot(FaultKind.TLS_ERROR, phase="tls", error_message="\x1b[31mred"))
    path.write_text(jsonl(*snaps) + "\x1b[1mnot json\n")
    status, out, _ = run("diagnose", str(path))
    assert status == 1
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07api\\x0d" in out
    assert "\\x1b[31mred" in out
    status, out, _ = run("diagnose", str(path), "--json")
    assert "\x1b" not in out  # JSON escapes control characters itself...
    peers = [p for f in json.loads(out)["findings"] for p in f["evidence"]["peers"]]
    assert f"{hostile}:443" in peers  # ...and a reader gets the text back exactly


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(tmp_path, monkeypatch):
    from seedance_otel.diagnosis import cli

    monkeypatch.setattr(cli._Progress, "INTERVAL_S", 0.0)
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl(*[reset(2.0 + i / 10_000) for i in range(25_000)]))
    args = parser().parse_args(["diagnose", str(path)])
    terminal = FakeTerminal()
    status = args.func(args, stdout=io.StringIO(), stderr=terminal)
    assert status == 1
    shown = terminal.getvalue()
    assert "20,000 lines read" in shown
    assert "diagnosing 25,000 snapshots" in shown and "stale_keepalive" in shown
    assert shown.endswith("\r\x1b[K")  # the status line is cleared at the end
    _, _, err = run("diagnose", str(path))  # not a terminal: no status line
    assert err == ""


def test_errors_exit_two(tmp_path):
    status, out, err = run("diagnose", str(tmp_path / "missing.jsonl"))
    assert status == 2 and out == ""
    assert "cannot read" in err and "missing.jsonl" in err
    status, _, err = run("diagnose", str(tmp_path))  # a directory
    assert status == 2 and "cannot read" in err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\nnor this\n")
    status, _, err = run("diagnose", str(junk))
    assert status == 2
    assert "none of its 2 lines is a snapshot (line 1: not JSON" in err
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["diagnose"])
    assert exc.value.code == 2


def test_stdin():
    status, out, _ = run("diagnose", "-", "--json", stdin=jsonl(reset(2.3)))
    assert status == 1
    assert json.loads(out)["source"] == "-"


def test_real_process_exit_status(tmp_path):
    """The handler's status becomes the process's (as ``seedance-otel diagnose`` will)."""
    path = tmp_path / "snaps.jsonl"
    path.write_text(jsonl(reset(2.3)))
    code = (
        "import argparse, sys\n"
        "from seedance_otel.diagnosis.cli import register\n"
        "p = argparse.ArgumentParser(prog='seedance-otel')\n"
        "register(p.add_subparsers(dest='command'))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "sys.exit(a.func(a))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "diagnose", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["findings"][0]["code"] == "stale_keepalive"
    done = subprocess.run(
        [sys.executable, "-c", code, "diagnose", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
