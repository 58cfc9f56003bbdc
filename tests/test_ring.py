"""The ring buffer: bounded, oldest first, sequence-numbered, every item accounted for."""

from __future__ import annotations

import threading

from seedance_otel._ring import RingBuffer


def _invariant(ring: RingBuffer[int]) -> None:
    a = ring.accounting()
    assert a.captured == a.exported + a.dropped + a.export_failed + a.pending


def test_contents_oldest_first_and_bounded():
    ring: RingBuffer[int] = RingBuffer(4)
    for i in range(10):
        assert ring.append(i) == i
    assert ring.contents() == [6, 7, 8, 9]
    _invariant(ring)


def test_reader_takes_in_order_and_counts_overwrites():
    ring: RingBuffer[int] = RingBuffer(4)
    for i in range(3):
        ring.append(i)
    batch = ring.take(2)
    assert batch.items == [0, 1] and batch.first_seq == 0
    _invariant(ring)
    ring.settle(exported=2)
    for i in range(3, 10):
        ring.append(i)
    # 2 was never read and got overwritten, as were 3..5.
    a = ring.accounting()
    assert a.dropped_by_reason == {"ring_overwrite": 4}
    assert a.pending == 4
    _invariant(ring)
    batch = ring.take(100)
    assert batch.items == [6, 7, 8, 9]
    ring.settle(failed=1, exported=3)
    a = ring.accounting()
    assert (a.captured, a.exported, a.export_failed, a.dropped, a.pending) == (10, 5, 1, 4, 0)


def test_drop_unread_and_taken():
    ring: RingBuffer[int] = RingBuffer(8)
    for i in range(5):
        ring.append(i)
    batch = ring.take(2)
    ring.drop_taken(len(batch.items), "after_shutdown")
    assert ring.drop_unread("after_shutdown") == 3
    a = ring.accounting()
    assert a.dropped_by_reason == {"after_shutdown": 5}
    assert a.pending == 0
    _invariant(ring)


def test_invariant_holds_under_concurrent_writers_and_reader():
    ring: RingBuffer[int] = RingBuffer(64)
    stop = threading.Event()
    violations: list[str] = []

    def writer() -> None:
        for i in range(20_000):
            ring.append(i)

    def reader() -> None:
        while not stop.is_set():
            batch = ring.take(16)
            ring.settle(exported=len(batch.items))

    def checker() -> None:
        for _ in range(2_000):
            a = ring.accounting()
            if a.captured != a.exported + a.dropped + a.export_failed + a.pending:
                violations.append(repr(vars(a)) if hasattr(a, "__dict__") else "violation")

    threads = [threading.Thread(target=writer) for _ in range(3)]
    side = [threading.Thread(target=reader), threading.Thread(target=checker)]
    for t in threads + side:
        t.start()
    for t in threads:
        t.join(30)
    side[1].join(30)
    stop.set()
    side[0].join(30)
    assert violations == []
    a = ring.accounting()
    assert a.captured == 60_000
    _invariant(ring)
