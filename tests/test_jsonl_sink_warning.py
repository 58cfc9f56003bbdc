"""A JSONL sink on a path it cannot write says so once, naming the path and the error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from seedance_otel.exporting.sinks import ExportOutcome, JsonlSink

from snapshot_factory import make_snapshot


def warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and str(path) in r.getMessage()
    ]


def test_an_unwritable_path_warns_once_with_path_and_error(tmp_path, caplog):
    path = tmp_path / "missing-dir" / "snapshots.jsonl"
    sink = JsonlSink(str(path))
    with caplog.at_level(logging.INFO, logger="seedance_otel"):
        outcomes = [sink.export([make_snapshot()]) for _ in range(5)]
    assert outcomes == [ExportOutcome.FAILED] * 5
    [message] = warnings_about(caplog, path)
    assert "No such file or directory" in message


def test_it_warns_again_after_recovering_and_failing_anew(tmp_path, caplog):
    directory = tmp_path / "out"
    path = directory / "snapshots.jsonl"
    sink = JsonlSink(str(path))
    with caplog.at_level(logging.INFO, logger="seedance_otel"):
        assert sink.export([make_snapshot()]) == ExportOutcome.FAILED
        directory.mkdir()
        assert sink.export([make_snapshot()]) == ExportOutcome.EXPORTED
        path.unlink()
        path.mkdir()  # a directory where the file was: IsADirectoryError
        assert sink.export([make_snapshot()]) == ExportOutcome.FAILED
        assert sink.export([make_snapshot()]) == ExportOutcome.FAILED
    messages = warnings_about(caplog, path)
    assert len(messages) == 2
    assert "Is a directory" in messages[1]
