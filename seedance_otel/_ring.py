"""The in-process ring buffer of snapshots, and the accounting of every one of them.

Bounded, sequence-numbered and lossy by design: the writer (a hook on the hot
path) never waits for the reader (the shipper); when the reader falls behind,
the oldest unread snapshot is overwritten and counted as dropped. Sequence
numbers let the reader take exactly the snapshots it has not seen, a batch at
a time, without copying the whole ring.

The counters live here, under the same lock as the slots, so that
``captured == exported + dropped + export_failed + pending`` holds at every
instant anyone can observe. The lock is held only for a few list operations,
never across I/O, so ``append`` is O(1) from any thread or event loop.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

__all__ = ["Accounting", "Batch", "RingBuffer"]

T = TypeVar("T")

RING_OVERWRITE = "ring_overwrite"


class Batch(Generic[T]):
    """Items handed to the reader, oldest first."""

    __slots__ = ("first_seq", "items")

    def __init__(self, first_seq: int, items: list[T]) -> None:
        self.first_seq = first_seq
        self.items = items


class Accounting:
    """A consistent reading of the ring's counters."""

    __slots__ = ("captured", "dropped_by_reason", "export_failed", "exported", "pending")

    def __init__(
        self,
        captured: int,
        exported: int,
        export_failed: int,
        pending: int,
        dropped_by_reason: dict[str, int],
    ) -> None:
        self.captured = captured
        self.exported = exported
        self.export_failed = export_failed
        self.pending = pending
        self.dropped_by_reason = dropped_by_reason

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())


class RingBuffer(Generic[T]):
    """Fixed-capacity ring with one consuming reader and any number of writers."""

    __slots__ = (
        "_capacity",
        "_dropped",
        "_export_failed",
        "_exported",
        "_in_flight",
        "_lock",
        "_next_seq",
        "_read_seq",
        "_slots",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._slots: list[T | None] = [None] * self._capacity
        self._next_seq = 0
        """Sequence number of the next append == items ever appended."""
        self._read_seq = 0
        """First sequence number the reader has not taken."""
        self._in_flight = 0
        """Taken by the reader, not yet settled."""
        self._exported = 0
        self._export_failed = 0
        self._dropped: dict[str, int] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def append(self, item: T) -> int:
        """Store ``item`` and return its sequence number. O(1); never blocks on I/O."""
        with self._lock:
            seq = self._next_seq
            self._slots[seq % self._capacity] = item
            self._next_seq = seq + 1
        return seq

    def contents(self) -> list[T]:
        """What the ring holds now, oldest first, whether shipped or not."""
        with self._lock:
            end = self._next_seq
            cap = self._capacity
            return [self._slots[s % cap] for s in range(max(0, end - cap), end)]  # type: ignore[misc]

    def _count_overwrites(self) -> None:
        """Move unread items that were overwritten into ``dropped`` (lock held)."""
        oldest_kept = self._next_seq - self._capacity
        if oldest_kept > self._read_seq:
            lost = oldest_kept - self._read_seq
            self._dropped[RING_OVERWRITE] = self._dropped.get(RING_OVERWRITE, 0) + lost
            self._read_seq = oldest_kept

    def take(self, max_items: int) -> Batch[T]:
        """Hand the reader up to ``max_items`` unread items, oldest first.

        They count as pending (in flight) until :meth:`settle` says what became
        of them.
        """
        with self._lock:
            self._count_overwrites()
            start = self._read_seq
            stop = min(self._next_seq, start + max_items)
            cap = self._capacity
            items = [self._slots[s % cap] for s in range(start, stop)]
            self._read_seq = stop
            self._in_flight += stop - start
        return Batch(start, items)  # type: ignore[arg-type]

    def settle(self, *, exported: int = 0, failed: int = 0) -> None:
        """Record the fate of items previously taken: exported or failed."""
        with self._lock:
            self._in_flight -= exported + failed
            self._exported += exported
            self._export_failed += failed

    def drop_taken(self, count: int, reason: str) -> None:
        """Taken items that will never be exported (e.g. exporter gone)."""
        with self._lock:
            self._in_flight -= count
            self._dropped[reason] = self._dropped.get(reason, 0) + count

    def drop_unread(self, reason: str) -> int:
        """Give up on everything not yet taken; returns how many."""
        with self._lock:
            self._count_overwrites()
            lost = self._next_seq - self._read_seq
            if lost:
                self._dropped[reason] = self._dropped.get(reason, 0) + lost
                self._read_seq = self._next_seq
            return lost

    def unread(self) -> int:
        with self._lock:
            return self._next_seq - max(self._read_seq, self._next_seq - self._capacity)

    def accounting(self) -> Accounting:
        """All counters read under one lock, so the invariant holds exactly."""
        with self._lock:
            end = self._next_seq
            oldest_kept = end - self._capacity
            dropped = dict(self._dropped)
            read_seq = self._read_seq
            if oldest_kept > read_seq:
                dropped[RING_OVERWRITE] = dropped.get(RING_OVERWRITE, 0) + oldest_kept - read_seq
                read_seq = oldest_kept
            return Accounting(
                captured=end,
                exported=self._exported,
                export_failed=self._export_failed,
                pending=end - read_seq + self._in_flight,
                dropped_by_reason=dropped,
            )

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held by a
        thread that does not exist here) and nothing of the parent's to ship."""
        self._lock = threading.Lock()
        self._reset()
