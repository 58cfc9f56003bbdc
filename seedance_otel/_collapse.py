"""Fault storms: beyond a per-key rate, identical faults become counts, not snapshots.

When an upstream goes down every request fails the same way, thousands of
times a second, and the application is already in trouble. Building,
shipping and diagnosing each of those faults in full adds nothing after the
first few. So, per key (server, fault kind, library, phase, error type), the
first ``per_key_per_s`` faults of each one-second window become full
snapshots; the others are only counted, and the count travels on the next
full snapshot of that key (``collapsed_count``, with ``collapsed_since_ns``,
the time of the first fault it stands for).

If no further fault of that key comes, the count is not left behind: once the
key has been quiet for a window, :meth:`Collapser.summaries` turns it into a
summary snapshot (the last collapsed fault, with the key's fields taken from
the key's last full snapshot and every per-connection detail left out), which
the runtime publishes from the shipper's thread and before every flush.

Every snapshot therefore stands for ``1 + (collapsed_count or 0)`` faults:
metrics count that many, diagnosis weighs by it, and ``stats()`` keeps the
exact sum (``collapsed`` counts faults carried by published snapshots,
``collapse_pending`` those still waiting for their carrier).
"""

from __future__ import annotations

import dataclasses
import threading
import time

from ._snapshot import ResetContextSnapshot

__all__ = ["Carried", "Collapser", "FaultKey"]

FaultKey = tuple[str | None, int | None, str, str, str, str]
"""(server address, server port, kind (a ``FaultKind``, or its value), library, phase,
error type)."""

WINDOW_NS = 1_000_000_000
MAX_KEYS = 4096
"""Keys tracked at once. Past this, new keys are not rate-limited (memory stays
bounded; a storm spreading over more keys than this is not one storm)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Carried:
    """What a full snapshot carries for the faults collapsed before it."""

    count: int
    since_ns: int


class _KeyState:
    __slots__ = ("first_ns", "full", "last_mono_ns", "last_ns", "pending", "template", "window")

    def __init__(self, mono_ns: int) -> None:
        self.window = mono_ns
        """When the current window started (monotonic)."""
        self.full = 0
        """Full snapshots admitted in the current window."""
        self.pending = 0
        self.first_ns = 0
        """Wall-clock time of the first fault still owed."""
        self.last_ns = 0
        """Wall-clock time of the last fault counted."""
        self.last_mono_ns = mono_ns
        self.template: ResetContextSnapshot | None = None


class Collapser:
    """Per-key admission and the counts it owes; thread-safe."""

    def __init__(self, per_key_per_s: int, max_keys: int = MAX_KEYS) -> None:
        self.per_key_per_s = per_key_per_s
        self._max_keys = max_keys
        self._keys: dict[FaultKey, _KeyState] = {}
        self._lock = threading.Lock()
        self.collapsed = 0
        """Faults carried by snapshots already published."""
        self.pending = 0
        """Faults counted and not yet carried."""
        self._closed = False

    def admit(self, key: FaultKey, mono_ns: int, wall_ns: int) -> Carried | None:
        """``None``: this fault is only counted. Otherwise it becomes a full
        snapshot carrying what the result says (``count`` 0: nothing)."""
        with self._lock:
            if self._closed:
                return _NOTHING
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self._max_keys:
                    self._forget_quiet(mono_ns)
                    if len(self._keys) >= self._max_keys:
                        return _NOTHING
                state = self._keys[key] = _KeyState(mono_ns)
            if mono_ns - state.window >= WINDOW_NS:
                state.window, state.full = mono_ns, 0
            state.last_mono_ns = mono_ns
            if state.full >= self.per_key_per_s:
                if not state.pending:
                    state.first_ns = wall_ns
                state.last_ns = wall_ns
                state.pending += 1
                self.pending += 1
                return None
            state.full += 1
            if not state.pending:
                return _NOTHING
            carried = Carried(state.pending, state.first_ns)
            self.pending -= state.pending
            self.collapsed += state.pending
            state.pending = 0
            return carried

    def give_back(self, key: FaultKey, carried: Carried) -> None:
        """The full snapshot that was to carry ``carried`` was not built (a
        hook's reader failed): the faults it stood for are owed again, to the
        key's next full snapshot or summary, rather than lost."""
        if not carried.count:
            return
        with self._lock:
            state = self._keys.get(key)
            if state is None:  # forgotten meanwhile: owed under a fresh state
                state = self._keys[key] = _KeyState(time.monotonic_ns())
            if not state.pending or carried.since_ns < state.first_ns:
                state.first_ns = carried.since_ns
            if not state.pending:
                # When the last of them came is not known: the first's time
                # never claims a fault later than one seen.
                state.last_ns = carried.since_ns
            state.pending += carried.count
            self.pending += carried.count
            self.collapsed -= carried.count

    def close(self) -> None:
        """Shutting down: no fault is counted from now on (each becomes a full
        snapshot, settled like any other after shutdown), so none can be left
        owed after the last summaries."""
        with self._lock:
            self._closed = True

    def remember(self, key: FaultKey, snapshot: ResetContextSnapshot) -> None:
        """The key's last full snapshot: the template of its summary, if one is owed."""
        with self._lock:
            state = self._keys.get(key)
            if state is not None:
                state.template = snapshot

    def summaries(
        self, mono_ns: int | None = None, *, all_pending: bool = False
    ) -> list[ResetContextSnapshot]:
        """Summary snapshots for keys quiet for a window with counts still owed
        (every key with counts owed when ``all_pending``: before a flush)."""
        mono_ns = time.monotonic_ns() if mono_ns is None else mono_ns
        out: list[ResetContextSnapshot] = []
        with self._lock:
            for state in self._keys.values():
                if not state.pending or state.template is None:
                    continue
                if not all_pending and mono_ns - state.last_mono_ns < WINDOW_NS:
                    continue
                out.append(_summary(state.template, state))
                self.pending -= state.pending
                self.collapsed += state.pending - 1
                state.pending = 0
        return out

    def _forget_quiet(self, mono_ns: int) -> None:
        """Drop keys quiet for a window that owe nothing (the lock is held)."""
        quiet = [
            key
            for key, state in self._keys.items()
            if not state.pending and mono_ns - state.last_mono_ns >= WINDOW_NS
        ]
        for key in quiet:
            del self._keys[key]

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._keys.clear()
        self.collapsed = self.pending = 0
        self._closed = False


_NOTHING = Carried(0, 0)


def _summary(template: ResetContextSnapshot, state: _KeyState) -> ResetContextSnapshot:
    """The last collapsed fault, standing for all of them. It keeps the key's
    fields from the key's last full snapshot and leaves out every detail of one
    connection or request: those were never recorded for these faults."""
    return dataclasses.replace(
        template,
        timestamp_ns=state.last_ns,
        collapsed_count=state.pending - 1 or None,
        collapsed_since_ns=state.first_ns if state.pending > 1 else None,
        trace_id=None,
        span_id=None,
        trace_sampled=None,
        peer_address=None,
        peer_addresses_tried=None,
        peer_port=None,
        local_port=None,
        socket_cookie=None,
        connection_reused=None,
        connection_idle_s=None,
        connection_age_s=None,
        connection_requests=None,
        http_method=None,
        url=None,
        dns_duration_s=None,
    )
