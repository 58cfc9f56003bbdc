"""The redaction corpus: every secret shape is masked, the useful text survives."""

from __future__ import annotations

import pytest
from redaction_corpus import KEPT_MESSAGES, MESSAGE_CASES, URL_CASES, Case

from seedance_otel._redact import redact_message, redact_url

ALL_CASES = MESSAGE_CASES + URL_CASES


def test_the_corpus_is_large_enough():
    assert len(ALL_CASES) >= 100
    assert len({case.id for case in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_message_loses_every_secret(case: Case):
    text = case.text.format(port=8080) if case.id.startswith("url-") else case.text
    out = redact_message(text)
    for secret in case.secrets:
        assert secret not in out, out
    for kept in case.kept:
        assert kept in out, out


@pytest.mark.parametrize("case", URL_CASES, ids=lambda c: c.id)
def test_url_loses_every_secret(case: Case):
    out = redact_url(case.text.format(port=8080))
    for secret in case.secrets:
        assert secret not in out, out
    for kept in case.kept:
        assert kept in out, out
    assert out.startswith("http://")
    assert "127.0.0.1:8080" in out


@pytest.mark.parametrize("message", KEPT_MESSAGES)
def test_ordinary_messages_are_left_alone(message: str):
    assert redact_message(message) == message
