"""Prediction's stages side by side on threads, each stage's items kept in order: reading the
next batch (`prefetched`), predicting batches on several threads at once (`mapped_in_order`) and
writing the last (`InOrder`). Each stage's errors surface in the caller, at the item they belong to."""
from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


def prefetched(items: Iterator[T]) -> Generator[T, None, None]:
    """`items`, each next one made on a thread while the caller works on the one it was given.
    Closing it (or an error in the caller) waits for the item in the making, then closes `items`."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
    ahead: concurrent.futures.Future[Any] = pool.submit(next, items, _DONE)
    try:
        while (item := ahead.result()) is not _DONE:
            ahead = pool.submit(next, items, _DONE)
            yield cast(T, item)
    finally:
        concurrent.futures.wait([ahead])
        pool.shutdown()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def mapped_in_order(call: Callable[[T], R], items: Iterable[T], workers: int) -> Generator[tuple[T, R], None, None]:
    """(item, call(item)) for each item, in the items' order, with up to `workers` calls running
    at once on threads: at most that many items are held, whatever their number. Closing it (or
    an error) cancels the calls not yet started and waits for those running."""
    if workers <= 1:
        for item in items:
            yield item, call(item)
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="predict")
    running: collections.deque[tuple[T, concurrent.futures.Future[R]]] = collections.deque()
    try:
        for item in items:
            running.append((item, pool.submit(call, item)))
            if len(running) == workers:  # the others go on while the caller takes the oldest
                oldest, result = running.popleft()
                yield oldest, result.result()
        while running:
            oldest, result = running.popleft()
            yield oldest, result.result()
    finally:
        for _, result in running:
            result.cancel()
        pool.shutdown(wait=True)


class InOrder:
    """Calls run one at a time on a thread, in the order submitted; at most one waits behind the
    one running, so the caller never gets more than a batch ahead of the writes."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write-behind")
        self.pending: concurrent.futures.Future | None = None

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self.wait()  # the last call's error is raised here, before more is written
        self.pending = self.pool.submit(call, *args)

    def wait(self, quietly: bool = False) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if quietly:  # already on an error's way out: that error is the one to report
            concurrent.futures.wait([pending])
        else:
            pending.result()

    def __enter__(self) -> InOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait(quietly=True)
        self.pool.shutdown()
