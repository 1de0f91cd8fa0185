"""Stages of work side by side on threads, each stage's items kept in order: making the next
item while the caller works on this one (`prefetched`), and items worked on a few at once
(`side_by_side`: CSV pieces parsed, batches predicted). numpy, pyarrow, torch and file writes
release the GIL, so the threads take cores. Each stage's errors surface in the caller, at the
item they belong to. `usable_cores` says how many threads the machine gives this process."""
from __future__ import annotations

import collections
import concurrent.futures
import math
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


def processes_sharing(local_processes: int) -> int:
    """How many of the machine's `local_processes` share this process's cores: all of them,
    unless a launcher pinned it to fewer cores than the process that started it (`srun
    --cpu-bind`, a NUMA node each), where its cores hold that share of them: 1 for cores of its
    own, 2 for a node of half the cores that two of four share. All where either affinity cannot
    be asked."""
    try:
        own, parent = os.sched_getaffinity(0), os.sched_getaffinity(os.getppid())
    except (AttributeError, OSError):
        return local_processes
    if not own < parent:
        return local_processes
    return max(1, min(local_processes, math.ceil(len(own) * local_processes / len(parent))))


def cgroup_quota_cores() -> int | None:
    """Whole cores the CPU quotas of this process's cgroup and the cgroups above it allow, the
    tightest, at least 1; None without a quota or where the files cannot be read (other
    systems). cgroup v2 keeps a quota in cpu.max ("quota period", or "max period" for none); v1,
    still the rule on older hosts and hybrid ones, in the cpu controller's cpu.cfs_quota_us
    (-1 for none) and cpu.cfs_period_us, under its own mount (cpu, or cpu,cpuacct)."""
    try:
        lines = OWN_CGROUP.read_text().splitlines()
    except OSError:
        return None
    found: list[int] = []
    for line in lines:
        _, controllers, own = line.split(":", 2) if line.count(":") >= 2 else ("", "-", "")
        if line.startswith("0::"):
            found += _quotas(CGROUP_ROOT, own, _v2_quota_cores)
        elif "cpu" in controllers.split(","):
            found += _quotas(CGROUP_ROOT / controllers, own, _v1_quota_cores)
    return min(found) if found else None


def _quotas(root: Path, own: str, quota_of: Callable[[Path], int | None]) -> list[int]:
    folder = root / own.strip().lstrip("/")
    groups = [folder, *(group for group in folder.parents if group == root or root in group.parents)]
    return [cores for cores in map(quota_of, groups) if cores is not None]


def _v2_quota_cores(group: Path) -> int | None:
    try:
        quota, period = (group / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        return None


def _v1_quota_cores(group: Path) -> int | None:
    try:
        quota, period = (int((group / name).read_text()) for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        return None if quota < 0 else max(1, quota // period)
    except (OSError, ValueError):
        return None
