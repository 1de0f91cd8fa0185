"""Stages of work on threads: items keep their order, each stage's error reaches the caller, and
nothing runs on once the caller has stopped."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import common.overlap as overlap
from common.overlap import prefetched, side_by_side, usable_cores


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


def test_side_by_side_keeps_the_order_runs_that_many_at_once_and_waits_for_them_when_closed():
    together = threading.Barrier(3, timeout=10)  # broken unless three calls run at once
    running, most, finished = [], [], []
    lock = threading.Lock()

    def work(i):
        with lock:
            running.append(i)
            most.append(len(running))
        if i < 3:
            together.wait()
        time.sleep(0.004 if i % 2 else 0.001)  # later items finish first
        with lock:
            running.remove(i)
        finished.append(i)
        return i * i

    assert list(side_by_side(work, iter(range(12)), 3)) == [i * i for i in range(12)]
    assert max(most) == 3
    finished.clear()
    done = side_by_side(lambda i: work(i + 3), iter(range(100)), 2)
    assert next(done) == 9
    done.close()
    assert not running and len(finished) < 10  # those under way finished; no more began


def test_an_error_side_by_side_surfaces_after_the_items_before_it():
    def work(i):
        if i == 3:
            raise ValueError("piece 3 is bad")
        time.sleep(0.002)
        return i

    done = side_by_side(work, iter(range(10)), 2)
    assert [next(done) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="piece 3"):
        next(done)


def test_an_error_making_the_items_comes_after_the_results_before_it():
    def items():
        yield from range(3)
        raise ValueError("row 4 is bad")

    done = side_by_side(lambda i: (time.sleep(0.002), i)[1], items(), 2)
    assert [next(done) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="row 4"):
        next(done)


@pytest.mark.parametrize("cpu_max, cores", [("max 100000", 6), ("200000 100000", 2), ("150000 100000", 1),
                                            ("50000 100000", 1), ("900000 100000", 6), (None, 6)])
def test_the_usable_cores_are_the_affinitys_within_the_cgroups_quota(tmp_path, monkeypatch, cpu_max, cores):
    """A container's `--cpus 2` (cgroup v2 cpu.max) caps the threads at whole cores it pays for;
    the affinity caps them whatever the quota; no cgroup file leaves the affinity alone."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    own = tmp_path / "proc_cgroup"
    own.write_text("0::/machine/job.scope\n")
    if cpu_max is not None:
        (tmp_path / "machine" / "job.scope").mkdir(parents=True)
        (tmp_path / "machine" / "job.scope" / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(overlap, "OWN_CGROUP", own)
    monkeypatch.setattr(overlap, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's, not this process's
    assert usable_cores() == cores


def test_a_quota_set_above_the_processs_own_cgroup_counts_too(tmp_path, monkeypatch):
    """A systemd slice or a pod holds the quota; the process's own group has none (or a looser one)."""
    (tmp_path / "pod" / "job").mkdir(parents=True)
    (tmp_path / "pod" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "pod" / "job" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cpu.max").write_text("800000 100000\n")
    own = tmp_path / "proc_cgroup"
    own.write_text("0::/pod/job\n")
    monkeypatch.setattr(overlap, "OWN_CGROUP", own)
    monkeypatch.setattr(overlap, "CGROUP_ROOT", tmp_path)
    assert overlap.cgroup_quota_cores() == 3


@pytest.mark.parametrize("own, quota, cores", [
    ("4:cpu,cpuacct:/docker/abc\n0::/\n", "250000", 2),  # a host's view of a container (docker --cpus 2.5)
    ("4:cpu,cpuacct:/docker/abc\n0::/\n", "-1", None),  # no quota
    ("2:cpuacct,cpu:/\n1:name=systemd:/\n", "400000", 4),  # inside the container, its group at the mount's root
])
def test_a_cgroup_v1_quota_counts_as_a_v2_one(tmp_path, monkeypatch, own, quota, cores):
    """cgroup v1 (older and hybrid hosts): the cpu controller's cfs quota and period, under its own mount."""
    controllers, path = own.split(":")[1], own.splitlines()[0].split(":")[2]
    group = tmp_path / controllers / path.lstrip("/")
    group.mkdir(parents=True, exist_ok=True)
    (group / "cpu.cfs_quota_us").write_text(quota + "\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "proc_cgroup").write_text(own)
    monkeypatch.setattr(overlap, "OWN_CGROUP", tmp_path / "proc_cgroup")
    monkeypatch.setattr(overlap, "CGROUP_ROOT", tmp_path)
    assert overlap.cgroup_quota_cores() == cores


@pytest.mark.parametrize("own, parent, sharing, threads", [
    (range(16), range(16), 4, 4),     # four processes share the machine's 16 cores
    (range(4, 8), range(16), 1, 4),   # each pinned to 4 of them: its own 4, not 4 / 4
    (range(8), range(16), 2, 4),      # pinned to a NUMA node of 8 that two of the four share
    (range(2), range(2), 4, 1),
])
def test_a_process_pinned_to_part_of_the_cores_shares_them_with_its_part_of_the_processes(monkeypatch, own, parent,
                                                                                         sharing, threads):
    from common.config import TrainConfig
    from common.train.run_context import find_context
    from common.train.run_plan import SMALL_STEP_MACS, cpu_threads

    affinity = {0: set(own), os.getppid(): set(parent)}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity[pid], raising=False)
    monkeypatch.setattr(overlap, "OWN_CGROUP", Path("/nonexistent/cgroup"))
    assert overlap.processes_sharing(4) == sharing
    context = find_context(TrainConfig(), num_processes=4, local_processes=4)
    assert cpu_threads(0, context.sharing, context.cores, SMALL_STEP_MACS) == threads
