"""Estimate a peer's idle timeout from the reuses that worked and the ones that did not.

A server or load balancer that drops connections idle for more than ``T``
seconds leaves three kinds of evidence, each a one-sided bound:

* a **failed reuse** (``connection_reset`` on a reused connection) after
  ``connection_idle_s = x``: the connection was already dead, so ``T < x``;
* a **successful reuse** after ``x`` idle (``peer_stats()`` keeps the recent
  ones; every snapshot carries ``peer_reuse_ok_max_idle_s``): ``T > x``;
* a **peer close of an idle connection** (``peer_closed_idle``) after ``x``:
  ``T <= x``. A library that sees the FIN when it arrives
  (``Library.sees_idle_fin``) makes ``x`` the timeout itself (plus a network
  delay); one that notices only when it next looks at the pool makes ``x``
  merely an upper bound.

With clean data every success lies below every failure and ``T`` is
bracketed by the longest success and the shortest failure. Real data is not
clean: connections also get reset for reasons that have nothing to do with
idling (a deploy, a crash, a busy connection reset mid-stream), and such a
reset after a tiny idle must not drag the estimate down to zero. So the
bracket is found as a *cliff*: the cut between "reuses work" and "reuses
fail" that contradicts the fewest observations, where contradicting a
success costs :data:`SUCCESS_WEIGHT` failures. A success is the stronger
witness: a deterministic idle timer cannot let a connection idle longer than
``T`` through, while resets below ``T`` happen for many other reasons.
Failures left of the cut are reported as outliers, not used, except those
just below it (within :data:`NEAR_CLIFF`): the peer's timer starts a round
trip before ours and ticks coarsely, so a reset a hair below the longest
success is the same timeout racing the request, not another cause.

With failures only (no reuse that worked below them) the timeout is bounded
above and nothing more; the recommended keep-alive then stays below the
shortest common server and load-balancer default within that bound
(:data:`COMMON_IDLE_TIMEOUTS_S`), which is safe whichever of them the peer
runs.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from array import array
from collections.abc import Iterable, Sequence

from .._snapshot import FaultKind, ResetContextSnapshot
from ._common import PeerKey, nice_floor
from ._evidence import Evidence

__all__ = [
    "COMMON_IDLE_TIMEOUTS_S",
    "NEAR_CLIFF",
    "SUCCESS_WEIGHT",
    "IdleSamples",
    "IdleTimeoutEstimate",
    "collect_idle_samples",
    "estimate_idle_timeout",
    "idle_events",
    "idle_histogram",
    "is_idle_evidence",
    "is_stale_reuse_candidate",
    "recommended_keepalive_s",
    "reuse_successes",
    "safe_below_common_defaults",
]

SUCCESS_WEIGHT = 3
"""How many failures one contradicted success is worth when placing the cliff."""

ISOLATION_RATIO = 4.0
"""A few failures this many times shorter than all others are isolated outliers."""

MIN_FAILURES_FOR_ISOLATION = 3
"""Below this many failures no failure is dropped for being isolated: with two
samples there is no "rest" to be isolated from."""

# Phases in which a reused connection can be met dead by an idle timeout:
# the request was (being) sent and nothing came back. A reset after response
# bytes arrived (phase "response") is a peer failing mid-answer, not idling.
_IDLE_PHASES = frozenset({"request"})

NEAR_CLIFF = 0.05
"""Failures this close below the cliff (relative) are the timeout racing a request."""

COMMON_IDLE_TIMEOUTS_S: tuple[tuple[float, str], ...] = (
    (2.0, "gunicorn"),
    (5.0, "uvicorn, Node.js and Apache httpd"),
    (60.0, "AWS ALB"),
    (75.0, "nginx"),
    (350.0, "AWS NLB"),
)
"""Default idle (keep-alive) timeouts of common servers and load balancers."""


@dataclasses.dataclass(frozen=True)
class IdleSamples:
    """Idle-time evidence about one peer (seconds)."""

    reuse_ok_idle_s: tuple[float, ...] = ()
    """Idle times after which a reuse succeeded: the timeout is above each."""
    reuse_ok_count: int = 0
    """Successful reuses in total (most are summarised only by their maximum)."""
    reset_idle_s: tuple[float, ...] = ()
    """Idle times of reused connections that met a reset: the timeout is below each."""
    close_exact_idle_s: tuple[float, ...] = ()
    """Idle closes seen as they arrived (``sees_idle_fin``): close to the timeout itself."""
    close_upper_idle_s: tuple[float, ...] = ()
    """Idle closes noticed at the next checkout: upper bounds only."""

    @property
    def has_failures(self) -> bool:
        return bool(self.reset_idle_s or self.close_exact_idle_s or self.close_upper_idle_s)


@dataclasses.dataclass(frozen=True)
class IdleTimeoutEstimate:
    """Where a peer's idle timeout lies, and the keep-alive that stays clear of it."""

    estimate_s: float | None
    """Best single value; ``None`` when only an upper bound is known."""
    low_s: float | None
    """Longest idle that still worked (the timeout is above it); ``None`` if none."""
    high_s: float | None
    """Shortest idle that failed or was closed (the timeout is at or below it)."""
    basis: str
    """``idle_close`` (measured closes), ``bracket`` (successes and failures)
    or ``upper_bound`` (failures only)."""
    recommended_keepalive_s: float
    """Client keep-alive below the timeout with a margin; 0 means "do not keep alive"."""
    cliff_s: float
    """Failures at or above this idle time are explained by the timeout."""
    resets_explained: int
    closes_explained: int
    reuse_ok_used: int
    safe_below_s: float | None = None
    """With an upper bound only: the common default timeout the recommendation
    stays below (see :data:`COMMON_IDLE_TIMEOUTS_S`); ``None`` otherwise."""
    outlier_reset_idle_s: tuple[float, ...] = ()
    """Resets left of the cliff: not explained by the idle timeout."""
    outlier_close_idle_s: tuple[float, ...] = ()
    inconsistent_reuse_ok_idle_s: tuple[float, ...] = ()
    """Successes right of the cliff (another backend with a longer timeout?)."""

    @property
    def precise(self) -> bool:
        """The bracket is narrow enough (within ±25 %) to quote a single value."""
        if self.basis == "idle_close":
            return True
        if self.low_s is None or self.high_s is None or self.low_s <= 0:
            return False
        return self.high_s <= self.low_s * 1.67


def is_stale_reuse_candidate(snapshot: ResetContextSnapshot) -> bool:
    """A reset of a reused connection, with its idle time, before any response."""
    return (
        snapshot.kind is FaultKind.CONNECTION_RESET
        and snapshot.connection_reused is True
        and snapshot.connection_idle_s is not None
        and snapshot.phase in _IDLE_PHASES
    )


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if 0 <= number < math.inf:
            return number
    return None


def reuse_successes(evidence: Evidence) -> dict[PeerKey, tuple[tuple[float, ...], int]]:
    """Per peer, the distinct idle times after which a reuse worked, and how many worked.

    From ``peer_stats`` (recent idle times and the maximum, in-process) and
    from the ``peer_reuse_ok_max_idle_s`` each snapshot carries (the only
    success evidence a JSONL file has); equal values are counted once.
    """
    seen: dict[PeerKey, set[float]] = {}
    counts: dict[PeerKey, int] = {}
    for key, stats in evidence.peer_stats.items():
        values = seen.setdefault(key, set())
        for value in stats.get("reuse_ok_recent_idle_s") or ():
            number = _number(value)
            if number is not None:
                values.add(number)
        if stats.get("reuse_ok_count"):
            number = _number(stats.get("reuse_ok_max_idle_s"))
            if number is not None:
                values.add(number)
        count = stats.get("reuse_ok_count")
        if isinstance(count, int) and not isinstance(count, bool):
            counts[key] = max(counts.get(key, 0), count)
    for key in evidence.peers:
        for index in evidence.of_peer(key):
            snap = evidence.snapshots[index]
            if snap.peer_reuse_ok_count is None:
                continue
            if snap.peer_reuse_ok_count > counts.get(key, 0):
                counts[key] = snap.peer_reuse_ok_count
            if snap.peer_reuse_ok_count and snap.peer_reuse_ok_max_idle_s is not None:
                seen.setdefault(key, set()).add(snap.peer_reuse_ok_max_idle_s)
    return {
        key: (tuple(sorted(values)), max(counts.get(key, 0), len(values)))
        for key, values in seen.items()
    } | {key: ((), count) for key, count in counts.items() if key not in seen}


def is_idle_evidence(snapshot: ResetContextSnapshot) -> bool:
    """A stale reuse or an idle close: what an idle timeout leaves behind."""
    return snapshot.connection_idle_s is not None and (
        is_stale_reuse_candidate(snapshot) or snapshot.kind is FaultKind.PEER_CLOSED_IDLE
    )


def idle_events(evidence: Evidence) -> dict[PeerKey, array[int]]:
    """Per peer, the indices of its idle evidence (:func:`is_idle_evidence`), found once
    for the keep-alive, request-limit and age-limit rules alike."""
    out: dict[PeerKey, array[int]] = {}
    candidates = heapq.merge(
        evidence.of_kind(FaultKind.CONNECTION_RESET),
        evidence.of_kind(FaultKind.PEER_CLOSED_IDLE),
    )
    snapshots = evidence.snapshots
    for index in candidates:
        snap = snapshots[index]
        if is_idle_evidence(snap):
            key = (snap.server_address or "", snap.server_port or 0)
            events = out.get(key)
            if events is None:
                out[key] = array("q", (index,))
            else:
                events.append(index)
    return out


def collect_idle_samples(
    evidence: Evidence, exclude: Iterable[int] = frozenset()
) -> dict[PeerKey, IdleSamples]:
    """Per peer with failure evidence, its idle samples (``exclude``: indices claimed
    by another explanation, such as resets of connections recycled by age)."""
    excluded = frozenset(exclude)
    successes = evidence.once(reuse_successes)
    out: dict[PeerKey, IdleSamples] = {}
    for key, events in sorted(evidence.once(idle_events).items()):
        resets: list[float] = []
        exact: list[float] = []
        upper: list[float] = []
        for index in events:
            snap = evidence.snapshots[index]
            if index in excluded or snap.connection_idle_s is None:
                continue
            if snap.kind is FaultKind.CONNECTION_RESET:
                resets.append(snap.connection_idle_s)
            elif snap.kind is FaultKind.PEER_CLOSED_IDLE:
                library = evidence.library(snap.library)
                sees_fin = library is not None and library.sees_idle_fin
                (exact if sees_fin else upper).append(snap.connection_idle_s)
        if not (resets or exact or upper):
            continue
        ok, ok_count = successes.get(key, ((), 0))
        out[key] = IdleSamples(
            reuse_ok_idle_s=ok,
            reuse_ok_count=ok_count,
            reset_idle_s=tuple(sorted(resets)),
            close_exact_idle_s=tuple(sorted(exact)),
            close_upper_idle_s=tuple(sorted(upper)),
        )
    return out


def _best_cut(successes: Sequence[float], failures: Sequence[float]) -> float:
    """The cliff: a value ``c`` with "successes below, failures at or above".

    Tries every cut between consecutive distinct values and keeps the one
    with the least cost (``SUCCESS_WEIGHT`` per success at or above it, 1 per
    failure below it); on a tie the higher cut, which trusts the successes.
    Returns ``math.inf`` when no failure is worth explaining.
    """
    values = sorted(set(successes) | set(failures))
    ok_at: dict[float, int] = {}
    fail_at: dict[float, int] = {}
    for value in successes:
        ok_at[value] = ok_at.get(value, 0) + 1
    for value in failures:
        fail_at[value] = fail_at.get(value, 0) + 1
    # Cut i sits just below values[i]; cut len(values) is above everything.
    ok_right = len(successes)
    fail_left = 0
    best_cost = SUCCESS_WEIGHT * ok_right
    best_index = 0
    for index, value in enumerate(values, start=1):
        ok_right -= ok_at.get(value, 0)
        fail_left += fail_at.get(value, 0)
        cost = SUCCESS_WEIGHT * ok_right + fail_left
        if cost <= best_cost:
            best_cost, best_index = cost, index
    return values[best_index] if best_index < len(values) else math.inf


def _isolated_low(failures: Sequence[float]) -> float:
    """The value below which the lowest few failures stand apart from the rest.

    With no success to contradict it, one reset after 10 ms idle among resets
    after 5-8 s would otherwise become the upper bound. Failures are dropped
    only if they are a small minority (at most a quarter, at least one) and
    :data:`ISOLATION_RATIO` times shorter than the next failure.
    """
    ordered = sorted(failures)
    if len(ordered) < MIN_FAILURES_FOR_ISOLATION:
        return -math.inf
    allowed = max(1, len(ordered) // 4)
    best_ratio, best_split = 0.0, 0
    for split in range(1, allowed + 1):
        below, above = ordered[split - 1], ordered[split]
        ratio = above / below if below > 0 else math.inf
        if ratio > best_ratio:
            best_ratio, best_split = ratio, split
    if best_ratio >= ISOLATION_RATIO:
        return ordered[best_split]
    return -math.inf


def recommended_keepalive_s(base_s: float) -> float:
    """A client keep-alive safely below ``base_s`` (the longest idle known to work).

    The margin is 20 %, at least 50 ms and at most 5 s. The peer starts its
    timer at its last write and we at the end of our last read, so its clock
    runs ahead of ours by a round trip plus scheduling delay; its timer may be
    coarse (load balancers check every second or so); and ``base_s`` is only
    the longest idle *observed* to work. 20 % covers those for the short
    timeouts where they matter; the 5 s cap keeps long timeouts (60 s, 350 s)
    useful. Rounded down to a value people write in configuration.
    """
    margin = min(max(0.2 * base_s, 0.05), 5.0)
    return nice_floor(base_s - margin)


def safe_below_common_defaults(high_s: float) -> tuple[float, str] | None:
    """The shortest common default idle timeout at or below ``high_s`` (2 % slack)."""
    within = [entry for entry in COMMON_IDLE_TIMEOUTS_S if entry[0] <= high_s * 1.02]
    return min(within) if within else None


def estimate_idle_timeout(samples: IdleSamples) -> IdleTimeoutEstimate | None:
    """Bracket and estimate the peer's idle timeout; ``None`` without failure evidence."""
    if not samples.has_failures:
        return None
    successes = samples.reuse_ok_idle_s
    closes = samples.close_exact_idle_s + samples.close_upper_idle_s
    failures = samples.reset_idle_s + closes
    cut = _best_cut(successes, failures)
    if math.isinf(cut):
        return None
    floor_ = max(cut, _isolated_low([f for f in failures if f >= cut]))
    resets_in = [v for v in samples.reset_idle_s if v >= floor_]
    exact_in = [v for v in samples.close_exact_idle_s if v >= floor_]
    upper_in = [v for v in samples.close_upper_idle_s if v >= floor_]
    kept = resets_in + exact_in + upper_in
    if not kept:
        return None
    high = min(kept)
    below = [v for v in successes if v < cut]
    low = max(below) if below else None
    # Failures a hair below the cliff are the same timeout racing a request.
    edge = floor_ * (1 - NEAR_CLIFF)
    edge_resets = [v for v in samples.reset_idle_s if edge <= v < floor_]
    edge_closes = [v for v in closes if edge <= v < floor_]
    estimate: float | None
    if exact_in:
        # A close seen on arrival happens at the timeout plus a delivery
        # delay, so the shortest one (or a shorter failure) is the best value.
        basis = "idle_close"
        estimate = high
    elif low is not None:
        basis = "bracket"
        estimate = (low + high) / 2
    else:
        basis = "upper_bound"
        estimate = None
    # The keep-alive must stay below what is known to work: a measured close
    # is the timeout itself; otherwise the longest success is the safe base;
    # with an upper bound only, the shortest common default within it.
    safe_below: float | None = None
    if basis == "idle_close" and estimate is not None:
        base = estimate
    elif low is not None:
        base = low
    else:
        common = safe_below_common_defaults(high)
        safe_below = common[0] if common is not None else None
        base = min(high, safe_below) if safe_below is not None else high
    return IdleTimeoutEstimate(
        estimate_s=estimate,
        low_s=low,
        high_s=high,
        basis=basis,
        recommended_keepalive_s=recommended_keepalive_s(base),
        cliff_s=min(floor_, edge) if (edge_resets or edge_closes) else floor_,
        resets_explained=len(resets_in) + len(edge_resets),
        closes_explained=len(exact_in) + len(upper_in) + len(edge_closes),
        reuse_ok_used=len(below),
        safe_below_s=safe_below,
        outlier_reset_idle_s=tuple(v for v in samples.reset_idle_s if v < edge),
        outlier_close_idle_s=tuple(v for v in closes if v < edge),
        inconsistent_reuse_ok_idle_s=tuple(v for v in successes if v >= cut),
    )


_STEPS_S = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
_MAX_BUCKETS = 12


def idle_histogram(
    samples: IdleSamples, estimate: IdleTimeoutEstimate | None
) -> list[dict[str, float | int | None]]:
    """Counts of successful and failed reuses (and idle closes) by idle bucket.

    The range reaches 2.5 times the estimate (or the shortest failure), so
    the cliff stays visible whatever the outliers; longer idles share a last,
    open-ended bucket (``to_s`` is ``None``).
    """
    values = [*samples.reuse_ok_idle_s, *samples.reset_idle_s]
    values += [*samples.close_exact_idle_s, *samples.close_upper_idle_s]
    if not values:
        return []
    reference = None
    if estimate is not None:
        reference = estimate.estimate_s or estimate.high_s
    top = max(values) if reference is None else min(max(values), 2.5 * reference)
    top = max(top, 1e-3)
    step = next((s for s in _STEPS_S if top / s <= _MAX_BUCKETS), _STEPS_S[-1])
    count = max(1, math.ceil(top / step + 1e-9))
    if count * step <= top:
        count += 1
    rows: list[dict[str, float | int | None]] = [
        {"from_s": round(i * step, 6), "to_s": round((i + 1) * step, 6), "ok": 0, "failed": 0}
        for i in range(count)
    ]
    has_closes = bool(samples.close_exact_idle_s or samples.close_upper_idle_s)
    if has_closes:
        for row in rows:
            row["closed"] = 0
    overflow: dict[str, float | int | None] = {
        "from_s": round(count * step, 6),
        "to_s": None,
        "ok": 0,
        "failed": 0,
    }
    if has_closes:
        overflow["closed"] = 0

    def bucket(value: float) -> dict[str, float | int | None]:
        index = int(value // step) if 0 <= value < math.inf else count
        return rows[index] if index < count else overflow

    def bump(row: dict[str, float | int | None], field: str) -> None:
        current = row[field]
        row[field] = (current if isinstance(current, int) else 0) + 1

    for value in samples.reuse_ok_idle_s:
        bump(bucket(value), "ok")
    for value in samples.reset_idle_s:
        bump(bucket(value), "failed")
    for value in (*samples.close_exact_idle_s, *samples.close_upper_idle_s):
        bump(bucket(value), "closed")
    if any(overflow[f] for f in ("ok", "failed", "closed") if f in overflow):
        rows.append(overflow)
    return rows
