"""False-finding rates over a seeded synthetic corpus: 1,000 workloads of each cause.

Each workload has one cause (see ``diagnosis_corpus``); a finding of another
cause is a false finding. The rates are printed (``pytest -s``) and held to
the figures the README quotes.
"""

from __future__ import annotations

from collections import Counter

import pytest
from diagnosis_corpus import close_after_n_workload, lifetime_workload, stale_keepalive_workload

from seedance_otel.diagnosis import diagnose

WORKLOADS = 1000


def rate(count: int) -> str:
    return f"{count}/{WORKLOADS} ({count / WORKLOADS:.1%})"


def test_pure_stale_keepalive_workloads_give_no_lifetime_or_unexplained_finding():
    wrong: Counter[str] = Counter()
    found = 0
    for seed in range(WORKLOADS):
        timeout_s, snaps = stale_keepalive_workload(seed)
        codes = {f.code for f in diagnose(snaps)}
        found += "stale_keepalive" in codes
        for code in codes - {"stale_keepalive"}:
            wrong[code] += 1
    print(f"\nstale keep-alive: found in {rate(found)}; false: {dict(wrong) or 'none'}")
    assert not wrong  # no lifetime, unexplained or request-limit finding, nor any other
    assert found == WORKLOADS


def test_pure_lifetime_workloads_give_no_stale_keepalive_finding():
    wrong: Counter[str] = Counter()
    found = 0
    for seed in range(WORKLOADS):
        limit_s, snaps = lifetime_workload(10_000 + seed)
        findings = diagnose(snaps)
        lifetime = [f for f in findings if f.code == "max_connection_lifetime"]
        reported = lifetime[0].params["max_connection_lifetime_s"] if lifetime else None
        # Snapshots hold ages to the microsecond, so the limit itself may read a hair low.
        if reported is not None and limit_s - 1e-5 <= reported <= limit_s * 1.1:
            found += 1
        for code in {f.code for f in findings} - {"max_connection_lifetime"}:
            wrong[code] += 1
    print(f"\nconnection lifetime: found in {rate(found)}; false: {dict(wrong) or 'none'}")
    assert not wrong  # no stale keep-alive finding, nor any other
    assert found == WORKLOADS


def test_close_after_n_workloads_find_n():
    wrong: Counter[str] = Counter()
    found = 0
    for seed in range(WORKLOADS):
        n, snaps = close_after_n_workload(20_000 + seed)
        findings = diagnose(snaps)
        limit = [f for f in findings if f.code == "max_requests_per_connection"]
        if limit and limit[0].params["requests_per_connection"] == n:
            found += 1
        for code in {f.code for f in findings} - {"max_requests_per_connection"}:
            wrong[code] += 1
    print(f"\nclose after N: N found in {rate(found)}; false: {dict(wrong) or 'none'}")
    assert found == WORKLOADS
    assert not wrong


@pytest.mark.parametrize(
    "make", [stale_keepalive_workload, lifetime_workload, close_after_n_workload]
)
def test_workloads_are_seeded(make):
    assert make(7) == make(7)
    assert make(7) != make(8)
