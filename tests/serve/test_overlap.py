"""Prediction's stages on threads: items keep their order, each stage's error reaches the caller,
and nothing runs on once the caller has stopped."""
from __future__ import annotations

import threading
import time

import pytest

from common.serve.overlap import InOrder, mapped_in_order, prefetched


def test_read_ahead_keeps_the_order_and_makes_each_item_off_the_callers_thread():
    makers = []

    def items():
        for i in range(20):
            makers.append(threading.current_thread().name)
            yield i

    assert list(prefetched(items())) == list(range(20))
    assert all(name.startswith("read-ahead") for name in makers)


def test_an_error_while_reading_ahead_surfaces_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("row 3 is bad")

    ahead = prefetched(items())
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(ValueError, match="row 3"):
        next(ahead)


def test_stopping_early_closes_the_source_after_the_item_in_the_making():
    closed = []

    def items():
        try:
            for i in range(100):
                time.sleep(0.001)
                yield i
        finally:
            closed.append(True)

    ahead = prefetched(items())
    assert next(ahead) == 0
    ahead.close()
    assert closed == [True]


def test_writes_run_in_order_one_at_a_time_and_a_failed_one_stops_the_next():
    written, running = [], []

    def write(i):
        running.append(i)
        assert len(running) == 1
        time.sleep(0.002)
        if i == 3:
            raise OSError("No space left on device")
        written.append(i)
        running.remove(i)

    def write_all():
        with InOrder() as writing:
            for i in range(10):
                writing.submit(write, i)
            writing.wait()

    with pytest.raises(OSError, match="No space"):
        write_all()
    assert written == [0, 1, 2]


def test_calls_run_side_by_side_in_their_items_order_never_more_at_once_than_the_workers():
    running, most, lock = set(), [0], threading.Lock()

    def call(i):
        with lock:
            running.add(i)
            most[0] = max(most[0], len(running))
        time.sleep(0.002 * (i % 3))  # later items often finish first
        with lock:
            running.discard(i)
        return i * i, threading.current_thread().name

    found = list(mapped_in_order(call, iter(range(30)), 3))
    assert [item for item, _ in found] == list(range(30))
    assert [result for _, (result, _) in found] == [i * i for i in range(30)]
    assert most[0] == 3
    assert all(name.startswith("predict") for _, (_, name) in found)


def test_one_worker_calls_on_the_callers_thread():
    found = list(mapped_in_order(lambda i: threading.current_thread().name, range(3), 1))
    assert found == [(i, threading.current_thread().name) for i in range(3)]


def test_an_error_in_a_call_surfaces_at_its_item_after_the_items_before_it():
    def call(i):
        if i == 4:
            raise ValueError("batch 4 is bad")
        return i

    results = mapped_in_order(call, range(10), 2)
    assert [next(results) for _ in range(4)] == [(i, i) for i in range(4)]
    with pytest.raises(ValueError, match="batch 4"):
        next(results)


def test_stopping_early_starts_no_further_call_and_reads_no_further_item():
    started, read = [], []

    def items():
        for i in range(100):
            read.append(i)
            yield i

    def call(i):
        started.append(i)
        time.sleep(0.002)
        return i

    results = mapped_in_order(call, items(), 2)
    assert next(results) == (0, 0)
    results.close()
    assert read == [0, 1] and set(started) <= {0, 1}  # the caller's item and the one beside it
