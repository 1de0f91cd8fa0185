"""Stages of work side by side on threads, each stage's items kept in order: making the next
item while the caller works on this one (`prefetched`), and items worked on a few at once
(`side_by_side`: CSV pieces parsed, batches predicted). numpy, pyarrow, torch and file writes
release the GIL, so the threads take cores. Each stage's errors surface in the caller, at the
item they belong to."""
from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Generator, Iterator
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


def side_by_side(call: Callable[[T], R], items: Iterator[T], workers: int) -> Generator[R, None, None]:
    """`call(item)` of each item, in order, `workers` at a time on threads, one more waiting
    behind them. An error making the items comes after the results of those made before it.
    Closing it (or an error in the caller) waits for the calls under way."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        ahead: collections.deque[concurrent.futures.Future[R]] = collections.deque()
        source_error: Exception | None = None
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except Exception as err:  # raised below, once the items before it are through
                    source_error = err
                    break
                ahead.append(pool.submit(call, item))
                if len(ahead) > workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
            if source_error is not None:
                raise source_error
        finally:
            for waiting in ahead:
                waiting.cancel()
