"""Prediction's stages side by side on threads, each stage's items kept in order: reading the
next batch (`prefetched`) and writing the last (`InOrder`) while the caller predicts the current
one. Each stage's errors surface in the caller, at the item they belong to."""
from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")
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
