"""The scripts' C allocator: a step's freed blocks are kept for the next step, not faulted in again."""
from __future__ import annotations

import platform
import resource

import numpy as np
import pytest

from common import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def faults_of_steps(steps: int) -> int:
    """Minor page faults over `steps` rounds of what a step does to memory: a few blocks of a few
    MB written, then all freed. glibc's own thresholds give the freed heap back each round."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        blocks = [np.ones(3 << 18, dtype=np.float32) for _ in range(3)]  # 3 x 3 MB
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_a_steps_freed_blocks_are_reused_without_faulting(monkeypatch):
    for name in allocator.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert allocator.keep_step_memory()
    faults_of_steps(3)  # the heap grows to its size once
    pages_per_step = 3 * (3 << 20) // resource.getpagesize()
    assert faults_of_steps(20) < pages_per_step  # not one step's pages in twenty steps


def test_a_threshold_the_environment_gives_is_left_as_given(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not allocator.keep_step_memory()
