"""Stages of work side by side on threads, each stage's items kept in order: making the next
item while the caller works on this one (`prefetched`), and items worked on a few at once
(`side_by_side`: CSV pieces parsed, batches predicted). numpy, pyarrow, torch and file writes
release the GIL, so the threads take cores. Each stage's errors surface in the caller, at the
item they belong to. `usable_cores` says how many threads the machine gives this process."""
from __future__ import annotations

import collections
import concurrent.futures
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUP = Path("/proc/self/cgroup")
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


def usable_cores() -> int:
    """The cores this process may keep busy: those its CPU affinity allows (taskset, a
    container's cpuset), and no more whole cores than its cgroup's CPU quota pays for (`docker
    run --cpus 2`, a Kubernetes limit). os.cpu_count() counts the machine's cores whatever the
    process is allowed, and threads beyond the quota wait out each period throttled."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity to ask for (macOS, Windows)
        cores = os.cpu_count() or 1
    quota = cgroup_quota_cores()
    return max(1, min(cores, quota) if quota is not None else cores)


def cgroup_quota_cores() -> int | None:
    """Whole cores the CPU quotas of this process's cgroup and the cgroups above it (v2: cpu.max,
    "quota period" or "max period") allow, the tightest, at least 1; None without a quota or where
    the files cannot be read (cgroup v1, other systems)."""
    try:
        own = next(line[3:] for line in OWN_CGROUP.read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    folder = CGROUP_ROOT / own.strip().lstrip("/")
    groups = [folder, *(group for group in folder.parents if group == CGROUP_ROOT or CGROUP_ROOT in group.parents)]
    found = [cores for cores in (_quota_cores(group / "cpu.max") for group in groups) if cores is not None]
    return min(found) if found else None


def _quota_cores(cpu_max: Path) -> int | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        return None
