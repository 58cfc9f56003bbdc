"""The idle-timeout estimate on hand-built evidence: clean, sparse, noisy, mixed, borderline."""

from __future__ import annotations

import random

import pytest

from seedance_otel import FaultKind
from seedance_otel.diagnosis._estimate import (
    IdleSamples,
    collect_idle_samples,
    estimate_idle_timeout,
    idle_histogram,
    recommended_keepalive_s,
)
from seedance_otel.diagnosis._evidence import Evidence

from snapshot_factory import make_snapshot


def counts(rows: list[dict[str, float | int | None]], column: str) -> list[float]:
    """One count column of ``idle_histogram``'s rows (only ``to_s`` may be ``None``)."""
    values = [row[column] for row in rows]
    numbers = [value for value in values if value is not None]
    assert len(numbers) == len(values), (column, values)
    return numbers


def est(ok=(), resets=(), exact=(), upper=()):
    return estimate_idle_timeout(
        IdleSamples(
            reuse_ok_idle_s=tuple(sorted(ok)),
            reuse_ok_count=len(ok),
            reset_idle_s=tuple(sorted(resets)),
            close_exact_idle_s=tuple(sorted(exact)),
            close_upper_idle_s=tuple(sorted(upper)),
        )
    )


def test_clean_bracket():
    e = est(ok=[0.5, 1.0, 1.8], resets=[2.2, 3.0])
    assert e is not None
    assert e.basis == "bracket"
    assert e.low_s == 1.8 and e.high_s == 2.2
    assert e.estimate_s == pytest.approx(2.0)
    assert e.precise
    assert e.resets_explained == 2
    assert e.outlier_reset_idle_s == ()
    # 20 % below the longest idle that worked, rounded down to a tenth.
    assert e.recommended_keepalive_s == 1.4


def test_no_failures_no_estimate():
    assert est(ok=[0.5, 1.0]) is None
    assert est() is None


def test_tiny_idle_outlier_does_not_drag_the_estimate():
    """A reset after 4 ms idle (a busy connection) among successes up to 1.9 s."""
    e = est(ok=[0.3, 1.2, 1.9], resets=[0.004, 2.3, 2.6])
    assert e is not None
    assert e.low_s == 1.9 and e.high_s == 2.3
    assert e.outlier_reset_idle_s == (0.004,)
    assert e.resets_explained == 2


def test_outlier_with_only_the_longest_success_known():
    """A JSONL file carries only ``peer_reuse_ok_max_idle_s``: one success value."""
    e = est(ok=[1.9], resets=[0.01, 2.1, 2.5])
    assert e is not None
    assert e.estimate_s == pytest.approx(2.0)
    assert e.outlier_reset_idle_s == (0.01,)


def test_two_noise_resets_against_one_success_trust_the_success():
    # A tie in cost (two failures vs one success): the success wins.
    e = est(ok=[1.0], resets=[0.01, 0.02, 1.2])
    assert e is not None
    assert (e.low_s, e.high_s) == (1.0, 1.2)


def test_isolated_failure_dropped_without_successes():
    e = est(resets=[0.01, 5.2, 5.6, 6.1])
    assert e is not None
    assert e.basis == "upper_bound"
    assert e.estimate_s is None
    assert e.high_s == 5.2
    assert e.outlier_reset_idle_s == (0.01,)
    # Only bounded above: stay below gunicorn's 2 s, the shortest common default.
    assert e.safe_below_s == 2.0
    assert e.recommended_keepalive_s == 1.6


def test_two_failures_are_too_few_to_call_one_an_outlier():
    e = est(resets=[0.3, 5.2])
    assert e is not None
    assert e.high_s == 0.3


def test_single_failure():
    e = est(resets=[6.3])
    assert e is not None
    assert e.basis == "upper_bound"
    assert e.high_s == 6.3 and e.low_s is None
    assert not e.precise
    assert e.safe_below_s == 2.0
    assert e.recommended_keepalive_s == 1.6  # 20 % below 2 s, safe for every common default


def test_single_success_single_failure():
    e = est(ok=[7.0], resets=[9.0])
    assert e is not None
    assert e.estimate_s == pytest.approx(8.0)
    assert e.recommended_keepalive_s == 5.6


def test_failure_below_successes_is_noise_not_a_timeout():
    # Successes at 2 s and 3 s prove the peer tolerates 3 s of idle.
    assert est(ok=[1.0, 2.0, 3.0], resets=[1.5]) is None


def test_inconsistent_success_outvoted_by_failures():
    e = est(ok=[0.5, 2.0, 4.9, 30.0], resets=[5.2, 6.0, 7.0, 8.0])
    assert e is not None
    assert (e.low_s, e.high_s) == (4.9, 5.2)
    assert e.inconsistent_reuse_ok_idle_s == (30.0,)


def test_aiohttp_idle_closes_measure_the_timeout():
    e = est(ok=[1.0, 1.5], exact=[2.003, 2.004, 2.01])
    assert e is not None
    assert e.basis == "idle_close"
    assert e.estimate_s == pytest.approx(2.003)
    assert e.closes_explained == 3
    assert e.recommended_keepalive_s == 1.6  # 20 % below the measured timeout


def test_aiohttp_idle_closes_alone():
    e = est(exact=[8.01, 8.02])
    assert e is not None
    assert e.estimate_s == pytest.approx(8.01)
    assert e.low_s is None
    assert e.recommended_keepalive_s == 6.4


def test_httpx_idle_closes_are_upper_bounds_only():
    e = est(ok=[1.9], upper=[2.8, 3.5])
    assert e is not None
    assert e.basis == "bracket"
    assert (e.low_s, e.high_s) == (1.9, 2.8)
    assert e.estimate_s == pytest.approx(2.35)


def test_wide_bracket_is_not_precise():
    e = est(ok=[2.0], resets=[60.0])
    assert e is not None
    assert not e.precise
    assert e.recommended_keepalive_s == 1.6


def test_timeout_just_below_client_keepalive():
    """httpx's 5 s default against a 4.8 s peer: only 4.8-5.0 s idles fail."""
    ok = [0.2, 1.0, 2.5, 4.0, 4.6, 4.79]
    resets = [4.81, 4.86, 4.93, 4.99]
    e = est(ok=ok, resets=resets)
    assert e is not None
    assert e.estimate_s == pytest.approx(4.8, abs=0.02)
    assert e.recommended_keepalive_s == 3.8


@pytest.mark.parametrize(
    ("base", "expected"),
    [(1.0, 0.8), (2.0, 1.6), (4.79, 3.8), (60.0, 55.0), (350.0, 345.0), (0.05, 0.0), (0.3, 0.2)],
)
def test_recommended_keepalive(base, expected):
    assert recommended_keepalive_s(base) == expected


@pytest.mark.parametrize("timeout_s", [1.0, 2.0, 5.0, 8.0, 60.0, 350.0])
def test_noisy_synthetic_workloads(timeout_s):
    """Seeded random workloads: successes below, failures above, a few noise resets.

    Whatever the draw, the bracket holds the truth, the noise is set aside
    and the recommended keep-alive is below the timeout. How close the single
    value gets depends on how densely reuses sample the region around the
    timeout: for a workload idling between 60 % and 140 % of it, within 15 %.
    """
    rng = random.Random(int(timeout_s * 1000))
    close = total = 0
    for _ in range(100):
        ok = [rng.uniform(0.6, 0.97) * timeout_s for _ in range(rng.randint(3, 40))]
        ok += [rng.uniform(0.0, 0.6) * timeout_s for _ in range(rng.randint(0, 20))]
        resets = [rng.uniform(1.03, 1.4) * timeout_s for _ in range(rng.randint(2, 10))]
        noise = [rng.uniform(0.0, 0.01) for _ in range(rng.randint(0, 2))]
        # In-process (every recent success) and from a file (the longest only).
        for successes in (ok, [max(ok)]):
            e = est(ok=successes, resets=resets + noise)
            assert e is not None and e.estimate_s is not None
            assert e.low_s < timeout_s < e.high_s
            assert sorted(e.outlier_reset_idle_s) == sorted(noise)
            assert e.recommended_keepalive_s < timeout_s
            total += 1
            close += abs(e.estimate_s - timeout_s) <= 0.15 * timeout_s
    assert close >= 0.95 * total


def _snap(kind=FaultKind.CONNECTION_RESET, port=80, **kw):
    return make_snapshot(kind, server_port=port, **kw)


def test_collect_per_peer_from_snapshots_and_peer_stats():
    snaps = [
        _snap(
            port=1,
            connection_reused=True,
            connection_idle_s=2.2,
            peer_reuse_ok_max_idle_s=1.5,
            peer_reuse_ok_count=3,
        ),
        _snap(port=1, connection_reused=True, connection_idle_s=2.5),
        _snap(port=2, connection_reused=True, connection_idle_s=9.0),
        # Not idle evidence: a new connection, a mid-response reset, no idle time.
        _snap(port=2, connection_reused=False, connection_idle_s=None),
        _snap(port=2, connection_reused=True, connection_idle_s=0.5, phase="response"),
        _snap(port=2, connection_reused=True, connection_idle_s=None),
        _snap(
            FaultKind.PEER_CLOSED_IDLE,
            port=3,
            library="aiohttp",
            phase="idle",
            connection_idle_s=4.0,
        ),
        _snap(
            FaultKind.PEER_CLOSED_IDLE,
            port=3,
            library="httpx",
            phase="idle",
            connection_idle_s=6.0,
        ),
    ]
    peer_stats = {
        ("api.test", 2): {
            "reuse_ok_count": 10,
            "reuse_ok_max_idle_s": 7.5,
            "reuse_ok_recent_idle_s": [0.1, 3.0, 7.5],
        }
    }
    samples = collect_idle_samples(Evidence(snaps, peer_stats))
    assert set(samples) == {("api.test", 1), ("api.test", 2), ("api.test", 3)}
    one = samples[("api.test", 1)]
    assert one.reset_idle_s == (2.2, 2.5)
    assert one.reuse_ok_idle_s == (1.5,)
    assert one.reuse_ok_count == 3
    two = samples[("api.test", 2)]
    assert two.reset_idle_s == (9.0,)
    assert two.reuse_ok_idle_s == (0.1, 3.0, 7.5)  # the max is not counted twice
    assert two.reuse_ok_count == 10
    three = samples[("api.test", 3)]
    assert three.close_exact_idle_s == (4.0,)
    assert three.close_upper_idle_s == (6.0,)
    # Excluded indices (claimed by another explanation) are left out.
    assert ("api.test", 1) not in collect_idle_samples(Evidence(snaps), frozenset({0, 1}))


def test_histogram_shows_the_cliff_and_overflow():
    samples = IdleSamples(
        reuse_ok_idle_s=(0.1, 0.5, 0.9, 1.7),
        reuse_ok_count=4,
        reset_idle_s=(0.004, 2.1, 2.4, 40.0),
    )
    e = estimate_idle_timeout(samples)
    rows = idle_histogram(samples, e)
    assert sum(counts(rows, "ok")) == 4
    assert sum(counts(rows, "failed")) == 4
    assert rows[-1]["to_s"] is None and rows[-1]["failed"] == 1  # 40 s beyond the range
    assert len(rows) <= 14
    assert idle_histogram(IdleSamples(), None) == []
