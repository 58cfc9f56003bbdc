"""A seeded synthetic corpus of workloads, one cause each, for false-finding rates.

Each generator simulates one peer and its clients request by request and
returns the snapshots the instrumentation would have recorded, carrying the
success evidence each snapshot carries (longest idle that worked so far,
successful reuses so far). What the peer does is the only cause in the
workload, so any other finding is a false one:

* :func:`stale_keepalive_workload`: an idle timeout ``T``. Requests after
  ``T`` idle fail (the peer's timer runs ahead of the client's by up to a
  round trip, so some requests a hair below ``T`` fail and some a hair above
  it still work). With its FINs visible, an aiohttp-like client sees each
  close as it arrives (exact) and an httpx-like one at its next checkout
  (upper bound), and only the races fail; with its FINs lost (a middlebox),
  every reuse after ``T`` meets a reset.
* :func:`lifetime_workload`: a load balancer that ends connections older
  than ``L``, whatever their idle time, under busy traffic.
* :func:`close_after_n_workload`: a peer that ends each connection after
  ``N`` requests without announcing it.

Every workload is built from its own seed: the same seed, the same snapshots.
"""

from __future__ import annotations

import dataclasses
import random

from seedance_otel import FaultKind, ResetContextSnapshot

from snapshot_factory import make_snapshot

LIBRARIES = ("aiohttp", "httpx")
_RTT_S = 0.002


@dataclasses.dataclass
class _Peer:
    """The success evidence a client accumulates about one peer."""

    library: str
    ok_max: float | None = None
    ok_count: int = 0
    snapshots: list[ResetContextSnapshot] = dataclasses.field(default_factory=list)
    clock_s: float = 0.0

    def worked(self, idle_s: float) -> None:
        self.ok_count += 1
        self.ok_max = idle_s if self.ok_max is None else max(self.ok_max, idle_s)

    def record(self, kind: FaultKind, idle_s: float, age_s: float, requests: int) -> None:
        fields = dict(
            library=self.library,
            timestamp_ns=int(self.clock_s * 1e9),
            connection_reused=True,
            connection_idle_s=round(idle_s, 6),
            connection_age_s=round(age_s, 6),
            connection_requests=requests,
            peer_reuse_ok_max_idle_s=self.ok_max,
            peer_reuse_ok_count=self.ok_count,
            server_address="lb.corpus.test",
            server_port=443,
        )
        if kind is FaultKind.PEER_CLOSED_IDLE:
            fields.update(phase="idle", error_type="EOF", error_message="")
        self.snapshots.append(make_snapshot(kind, **fields))


def stale_keepalive_workload(seed: int) -> tuple[float, list[ResetContextSnapshot]]:
    """(the idle timeout, the snapshots) of one pure idle-timeout workload."""
    rng = random.Random(seed)
    timeout_s = rng.choice((1.0, 2.0, 4.6, 5.0, 15.0, 30.0, 60.0, 75.0, 350.0)) * rng.uniform(
        0.9, 1.1
    )
    peer = _Peer(rng.choice(LIBRARIES))
    lost_fins = rng.random() < 0.5
    long_share = rng.uniform(0.1, 0.5)
    for _ in range(rng.randint(8, 40)):
        age, requests = 0.0, 0
        for _ in range(rng.randint(1, 30)):
            requests += 1
            age += rng.uniform(0.001, 0.05)  # the response
            if rng.random() < long_share:
                gap = timeout_s * rng.uniform(0.95, 3.0)
            else:
                gap = timeout_s * rng.uniform(0.0, 0.999)
            peer.clock_s += gap
            # The peer's timer started up to a round trip before the client's.
            dead = gap > timeout_s - rng.uniform(0.0, _RTT_S)
            if not dead:
                age += gap
                peer.worked(gap)
                continue
            close_seen_at = timeout_s + rng.uniform(0.0, _RTT_S)
            if lost_fins or gap < close_seen_at:
                # The request left before the FIN arrived (or the FIN never did).
                peer.record(FaultKind.CONNECTION_RESET, gap, age + gap, requests)
            elif peer.library == "aiohttp":
                peer.record(
                    FaultKind.PEER_CLOSED_IDLE, close_seen_at, age + close_seen_at, requests
                )
            else:
                peer.record(FaultKind.PEER_CLOSED_IDLE, gap, age + gap, requests)
            break
    return timeout_s, peer.snapshots


def lifetime_workload(seed: int) -> tuple[float, list[ResetContextSnapshot]]:
    """(the age limit, the snapshots) of one pure connection-lifetime workload."""
    rng = random.Random(seed)
    limit_s = rng.uniform(5.0, 600.0)
    busiest_gap_s = rng.uniform(0.05, min(2.0, 0.05 * limit_s))
    peer = _Peer(rng.choice(LIBRARIES))
    for _ in range(rng.randint(6, 30)):
        age, requests = 0.0, 0
        while True:
            requests += 1
            age += rng.uniform(0.001, 0.05)
            gap = rng.uniform(0.0, busiest_gap_s)
            peer.clock_s += gap
            if age + gap <= limit_s:
                age += gap
                peer.worked(gap)
                continue
            idle_at_close = limit_s - age
            if peer.library == "aiohttp" and rng.random() < 0.5:
                # The close came while the connection idled: aiohttp sees the FIN.
                peer.record(FaultKind.PEER_CLOSED_IDLE, idle_at_close, limit_s, requests)
            else:
                peer.record(FaultKind.CONNECTION_RESET, gap, age + gap, requests)
            break
    return limit_s, peer.snapshots


def close_after_n_workload(seed: int) -> tuple[int, list[ResetContextSnapshot]]:
    """(N, the snapshots) of one workload against a peer that closes after N requests."""
    rng = random.Random(seed)
    n = rng.randint(2, 50)
    mean_gap_s = rng.uniform(0.01, 5.0)
    close_at_once = rng.random() < 0.5  # after the Nth response, or at the next request
    peer = _Peer(rng.choice(LIBRARIES))
    for _ in range(rng.randint(5, 20)):
        age = 0.0
        for requests in range(1, n + 1):
            age += rng.uniform(0.001, 0.05)
            gap = min(rng.expovariate(1 / mean_gap_s), 20 * mean_gap_s)
            peer.clock_s += gap
            if requests < n:
                age += gap
                peer.worked(gap)
                continue
            if close_at_once and peer.library == "aiohttp":
                seen = rng.uniform(0.0001, 0.002)
                peer.record(FaultKind.PEER_CLOSED_IDLE, seen, age + seen, n)
            elif close_at_once:
                peer.record(FaultKind.PEER_CLOSED_IDLE, gap, age + gap, n)
            else:
                peer.record(FaultKind.CONNECTION_RESET, gap, age + gap, n)
    return n, peer.snapshots
